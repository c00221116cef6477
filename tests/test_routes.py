"""Route table and path normalisation (pure logic)."""

import pytest

from proxy.routes import InvalidPath, RequestHead, RouteTable, Target, normalize_path


@pytest.mark.parametrize(("raw", "expected"), [
    (b"/", b"/"),
    (b"/user/abc/tree", b"/user/abc/tree"),
    (b"/user/abc/", b"/user/abc/"),
    (b"/user/a/../b/", b"/user/b/"),
    (b"/user/a/%2e%2e/b/", b"/user/b/"),
    (b"/user/a/%2E%2e/b", b"/user/b"),
    (b"/user/a/.%2e/b", b"/user/b"),
    (b"/user/./a", b"/user/a"),
    (b"//user//a", b"/user/a"),
    (b"/user/a/..", b"/user/"),
    (b"/user/a/.", b"/user/a/"),
    (b"/a/%2e%2ex/b", b"/a/%2e%2ex/b"),  # not a dot segment: left alone
    (b"/files/report.v2.ipynb", b"/files/report.v2.ipynb"),
])
def test_normalize_path(raw, expected):
    assert normalize_path(raw) == expected


@pytest.mark.parametrize("raw", [b"/..", b"/a/../..", b"/%2e%2e/x", b"relative", b"*"])
def test_normalize_path_refuses(raw):
    with pytest.raises(InvalidPath):
        normalize_path(raw)


def make_table():
    table = RouteTable()
    table.add("/", "http://127.0.0.1:1")
    table.add("/user/abc", "http://127.0.0.1:2")
    table.add("/user/abcd/", "http://127.0.0.1:3")
    table.add("/api/deep/er/still", "http://127.0.0.1:4")
    return table


@pytest.mark.parametrize(("path", "port"), [
    (b"/user/abc", 2),
    (b"/user/abc/", 2),
    (b"/user/abc/tree/x.ipynb", 2),
    (b"/user/abcd", 3),
    (b"/user/abcd/api", 3),
    (b"/user/ab", 1),
    (b"/user/abcde/x", 1),
    (b"/user", 1),
    (b"/", 1),
    (b"/api/deep/er/still/more", 4),
    (b"/api/deep/er", 1),
])
def test_longest_match_by_whole_segments(path, port):
    assert make_table().longest_match(path).target.port == port


def test_no_default_route_means_no_match():
    table = RouteTable()
    table.add("/user/x", "http://127.0.0.1:5")
    assert table.longest_match(b"/other") is None
    assert table.longest_match(b"/user/x/y").target.port == 5


def test_add_replace_remove_list():
    table = make_table()
    assert len(table) == 4
    table.add("/user/abc", "http://127.0.0.1:9")
    assert table.longest_match(b"/user/abc/x").target.port == 9
    removed = table.remove("/user/abc/")
    assert removed.target.port == 9
    assert table.longest_match(b"/user/abc/x").target.port == 1
    assert table.remove("/user/abc") is None
    table.remove("/api/deep/er/still")
    assert [r.prefix for r in table.routes()] == [b"/", b"/user/abcd"]
    assert table.get("/") is table.default
    table.remove("/")
    assert table.default is None


def test_injected_headers_and_targets():
    table = RouteTable()
    route = table.add("/user/x", "unix:/run/x.sock", headers={"Authorization": "token s3cret"})
    assert route.target.unix_path == "/run/x.sock"
    assert route.headers == [(b"Authorization", b"token s3cret")]
    assert b"authorization" in route.header_names


@pytest.mark.parametrize("bad", ["ftp://h:1", "http://", "http://h:1/path", "unix:relative.sock", "h:1"])
def test_bad_targets_name_the_value(bad):
    with pytest.raises(ValueError, match="target"):
        Target(bad)


def test_bad_injected_header_is_refused():
    with pytest.raises(ValueError, match="header"):
        RouteTable().add("/x", "http://h:1", headers={"X-Bad": "a\r\nInjected: 1"})


def test_request_head_helpers():
    head = RequestHead(b"GET", b"/user/x/api/status", b"", "1.1",
                       [(b"Host", b"h"), (b"Cookie", b"a=1; nbpool-user=abc.def; c=3")], "10.0.0.1", None)
    assert head.cookie("nbpool-user") == "abc.def"
    assert head.cookie("missing") is None
    assert head.wants_json()
