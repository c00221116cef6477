// The teaching team's class view: one tile per attendee session, live from a stream of server-sent
// events, each a full snapshot. Every string in a snapshot comes from the attendees (names, cell
// text, error messages, the note on a raised hand): it reaches the page by textContent and
// setAttribute only, never as HTML. Tiles are keyed by session id and updated in place, so a
// snapshot a second for a hundred attendees touches only what changed. No CDN, no library.
(function () {
  var root = document.getElementById("classview");
  if (!root) return;
  var EVENTS = root.getAttribute("data-events-url");
  var API = root.getAttribute("data-api-url");
  var HAND = root.getAttribute("data-hand-url");

  var tilesBox = document.getElementById("cv-tiles");
  var emptyBox = document.getElementById("cv-empty");
  var progressBox = document.getElementById("cv-progress");
  var conn = document.getElementById("cv-conn");
  var baseTitle = document.title;

  var STATES = {hand: "✋ Hand up", stuck: "⚠ Stuck", working: "● Working", idle: "○ Idle", done: "✓ Done"};
  var COUNTS = ["hands", "stuck", "working", "idle", "done", "total"];
  var tiles = {};         // session id -> its tile's record
  var notebooks = {};     // notebook path -> its progress card's record
  var skew = null;        // the server's clock minus ours, in seconds
  var lastNow = -Infinity; // the "now" of the snapshot shown
  var lastSeen = 0;       // our clock (ms) when it came
  var state = "connecting";

  // --- small helpers -------------------------------------------------------------------------------

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }

  function setText(node, text) {
    text = text === null || text === undefined ? "" : String(text);
    if (node.textContent !== text) node.textContent = text;
  }

  function setAttr(node, name, value) {
    value = String(value);
    if (node.getAttribute(name) !== value) node.setAttribute(name, value);
  }

  function setClass(node, cls) {
    if (node.className !== cls) node.className = cls;
  }

  function show(node, on) {
    if (node.hidden === !!on) node.hidden = !on;
  }

  function str(value, max) {
    // A server string for display: never more than max characters (a pasted megabyte stays out of the DOM).
    if (value === null || value === undefined) return "";
    value = String(value);
    return value.length > max ? value.slice(0, max - 1) + "…" : value;
  }

  function num(value) {
    return typeof value === "number" && isFinite(value) ? value : null;
  }

  function serverNow() {
    return Date.now() / 1000 + (skew || 0);
  }

  function span(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    if (seconds < 60) return seconds + " s";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min";
    var h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60);
    return h + " h" + (m ? " " + m + " min" : "");
  }

  function size(b) {
    if (b >= 1073741824) return (b / 1073741824).toFixed(1) + " GiB";
    return Math.round(b / 1048576) + " MiB";
  }

  function basename(path) {
    var parts = String(path).split("/");
    return parts[parts.length - 1] || String(path);
  }

  // --- tiles ---------------------------------------------------------------------------------------

  function makeTile(id) {
    var t = {id: id, stateKey: null, hand: null, lowered: null, lowering: false};
    t.root = el("li", "tile");
    t.root.setAttribute("data-id", id);

    var head = el("div", "tile-head");
    t.name = el("h2", "tile-name");
    t.state = el("span", "tile-state");
    head.appendChild(t.name);
    head.appendChild(t.state);
    t.root.appendChild(head);

    // The raised hand: in the DOM only while a hand is up (tests and styles can rely on .tile-hand).
    t.handBox = el("div", "tile-hand");
    var line = el("p", "tile-hand-line");
    var icon = el("span", "tile-hand-icon", "✋");
    icon.setAttribute("aria-hidden", "true");
    t.handText = el("span", "tile-hand-text");
    line.appendChild(icon);
    line.appendChild(t.handText);
    var foot = el("div", "tile-hand-foot");
    t.handFor = el("span", "tile-hand-for");
    t.lower = el("button", "tile-lower", "Lower");
    t.lower.type = "button";
    t.lower.addEventListener("click", function () { lower(t); });
    foot.appendChild(t.handFor);
    foot.appendChild(t.lower);
    t.handError = el("p", "tile-hand-error");
    t.handError.hidden = true;
    t.handBox.appendChild(line);
    t.handBox.appendChild(foot);
    t.handBox.appendChild(t.handError);
    t.head = head;

    t.stuck = el("p", "tile-stuck");
    t.root.appendChild(t.stuck);

    t.where = el("p", "tile-where");
    t.notebook = el("span", "tile-notebook");
    t.section = el("span", "tile-section");
    t.where.appendChild(t.notebook);
    t.where.appendChild(t.section);
    t.root.appendChild(t.where);

    t.cell = el("p", "tile-cell");
    t.root.appendChild(t.cell);
    t.outcome = el("p", "tile-outcome");
    t.root.appendChild(t.outcome);

    t.stats = el("p", "tile-stats");
    t.busy = el("span", "tile-busy");
    t.runs = el("span", "tile-runs");
    t.errors = el("span", "tile-errors");
    t.success = el("span", "tile-success");
    [t.busy, t.runs, t.errors, t.success].forEach(function (n) { t.stats.appendChild(n); });
    t.root.appendChild(t.stats);

    t.mem = el("div", "tile-mem");
    t.memText = el("span", "tile-mem-text");
    t.memBar = el("span", "tile-mem-bar");
    t.memFill = el("span", "tile-mem-fill");
    t.memBar.setAttribute("aria-hidden", "true");
    t.memBar.appendChild(t.memFill);
    t.mem.appendChild(t.memText);
    t.mem.appendChild(t.memBar);
    t.root.appendChild(t.mem);
    return t;
  }

  function updateTile(t, s, now) {
    var key = STATES.hasOwnProperty(s.state) ? s.state : "idle";
    if (t.stateKey !== key) {
      t.stateKey = key;
      setClass(t.root, "tile state-" + key);
      t.root.setAttribute("data-state", key);
    }
    var name = str(s.name, 300) || str(s.id, 40);
    setText(t.name, str(name, 90));
    setAttr(t.name, "title", name);
    setText(t.state, STATES[key]);

    // Hand: hidden at once after "Lower" succeeds, until the server's snapshots catch up (a few seconds at most).
    var hand = s.hand && typeof s.hand === "object" ? s.hand : null;
    if (hand && t.lowered !== null) {
      if (num(hand.raised_at) === t.lowered.raisedAt && Date.now() < t.lowered.until) hand = null;
      else t.lowered = null;
    }
    t.hand = hand;
    if (hand) {
      setText(t.handText, str(hand.text, 280) || "Hand up");
      if (t.handBox.parentNode !== t.root) t.head.parentNode.insertBefore(t.handBox, t.head.nextSibling);
    } else if (t.handBox.parentNode) {
      t.handBox.parentNode.removeChild(t.handBox);
      t.handError.hidden = true;
    }

    show(t.stuck, !!s.stuck);
    if (s.stuck) setText(t.stuck, "Stuck" + (s.stuck_reason ? " — " + str(s.stuck_reason, 200) : ""));

    if (s.notebook) {
      setText(t.notebook, str(basename(s.notebook), 120));
      setAttr(t.notebook, "title", str(s.notebook, 500));
    } else {
      setText(t.notebook, "no notebook open yet");
      setAttr(t.notebook, "title", "");
    }
    show(t.section, !!s.section);
    setText(t.section, str(s.section, 160));

    var cell = s.cell && typeof s.cell === "object" ? s.cell : null;
    if (cell) {
      var first = str(cell.first_line, 240);
      setText(t.cell, "[" + (num(cell.index) === null ? "?" : cell.index) + "] " + first);
      setAttr(t.cell, "title", first);
      setClass(t.cell, "tile-cell");
    } else {
      setText(t.cell, "no cell run yet");
      setAttr(t.cell, "title", "");
      setClass(t.cell, "tile-cell is-none");
    }

    if (s.outcome === "error") {
      var what = str(s.error, 80) || "Error";
      setText(t.outcome, "✗ " + what + (s.error_line ? ": " + str(s.error_line, 240) : ""));
      setAttr(t.outcome, "title", str(s.error_line, 500));
      setClass(t.outcome, "tile-outcome is-error");
      show(t.outcome, true);
    } else if (s.outcome === "ok") {
      setText(t.outcome, "✓ ran without error");
      setAttr(t.outcome, "title", "");
      setClass(t.outcome, "tile-outcome is-ok");
      show(t.outcome, true);
    } else {
      show(t.outcome, false);
    }

    setText(t.busy, s.busy ? "running" : "kernel idle");
    setClass(t.busy, "tile-busy " + (s.busy ? "is-busy" : "is-idle"));
    var runs = num(s.cells_run) || 0;
    setText(t.runs, runs === 1 ? "1 cell run" : runs + " cells run");
    var errors = num(s.errors_in_a_row) || 0;
    show(t.errors, errors > 0);
    setText(t.errors, errors === 1 ? "1 error in a row" : errors + " errors in a row");
    var since = num(s.since_success_s);
    t.successAt = since === null ? null : now - since;
    show(t.success, runs > 0);

    var used = num(s.memory_bytes), limit = num(s.memory_limit_bytes);
    show(t.mem, used !== null);
    if (used !== null) {
      if (limit !== null && limit > 0) {
        var frac = used / limit;
        var level = frac > 0.95 ? "is-high" : frac > 0.8 ? "is-warn" : "is-ok";
        setText(t.memText, (frac > 0.8 ? "⚠ " : "") + "memory " + size(used) + " of " + size(limit) +
                           " (" + Math.round(frac * 100) + "%)");
        setClass(t.mem, "tile-mem " + level);
        t.memFill.style.width = Math.min(100, Math.max(0, frac * 100)).toFixed(1) + "%";
        show(t.memBar, true);
      } else {
        setText(t.memText, "memory " + size(used));
        setClass(t.mem, "tile-mem");
        show(t.memBar, false);
      }
    }
    tickTile(t);
  }

  function tickTile(t) {
    if (t.hand) {
      var raised = num(t.hand.raised_at);
      setText(t.handFor, raised === null ? "" : "for " + span(serverNow() - raised));
    }
    if (!t.success.hidden) {
      setText(t.success, t.successAt === null ? "no success yet" : "last success " + span(serverNow() - t.successAt) + " ago");
    }
  }

  function lower(t) {
    if (t.lowering || !t.hand) return;
    var raisedAt = num(t.hand.raised_at);
    t.lowering = true;
    t.lower.disabled = true;
    setText(t.lower, "Lowering…");
    t.handError.hidden = true;
    fetch(HAND + encodeURIComponent(t.id), {method: "DELETE", credentials: "same-origin",
                                            headers: {"Accept": "application/json"}})
      .then(function (r) {
        if (!r.ok && r.status !== 404) throw new Error(r.status === 401 || r.status === 403
          ? "not signed in any more: reload the page" : "the server answered " + r.status);
        t.lowered = {raisedAt: raisedAt, until: Date.now() + 8000};
        t.hand = null;
        if (t.handBox.parentNode) t.handBox.parentNode.removeChild(t.handBox);
      })
      .catch(function (err) {
        setText(t.handError, "Could not lower the hand — " + (err && err.message ? err.message : "no answer"));
        t.handError.hidden = false;
      })
      .then(function () {
        t.lowering = false;
        t.lower.disabled = false;
        setText(t.lower, "Lower");
      });
  }

  function renderTiles(sessions, now) {
    var seen = {};
    var order = [];
    sessions.forEach(function (s) {
      if (!s || typeof s !== "object" || s.id === null || s.id === undefined) return;
      var id = String(s.id);
      if (seen.hasOwnProperty(id)) return;
      seen[id] = true;
      var t = tiles.hasOwnProperty(id) ? tiles[id] : (tiles[id] = makeTile(id));
      updateTile(t, s, now);
      order.push(t.root);
    });
    // Put the tiles in the snapshot's order, moving only those out of place.
    var child = tilesBox.firstChild;
    order.forEach(function (node) {
      if (child === node) child = child.nextSibling;
      else tilesBox.insertBefore(node, child);
    });
    while (child) {
      var next = child.nextSibling;
      tilesBox.removeChild(child);
      child = next;
    }
    Object.keys(tiles).forEach(function (id) { if (!seen.hasOwnProperty(id)) delete tiles[id]; });
    show(emptyBox, order.length === 0);
    show(tilesBox, order.length > 0);
  }

  // --- counts and progress -------------------------------------------------------------------------

  function renderCounts(counts, sessions) {
    if (!counts || typeof counts !== "object") {
      counts = {hands: 0, stuck: 0, working: 0, idle: 0, done: 0, total: sessions.length};
      sessions.forEach(function (s) {
        var k = s && s.state === "hand" ? "hands" : s && s.state;
        if (counts.hasOwnProperty(k) && k !== "total") counts[k] += 1;
      });
    }
    COUNTS.forEach(function (k) {
      var n = num(counts[k]) || 0;
      var node = document.getElementById("count-" + k);
      setText(node, n);
      setClass(node.parentNode, node.parentNode.className.replace(/ is-zero/g, "") + (n ? "" : " is-zero"));
    });
    var hands = num(counts.hands) || 0;
    var title = hands ? "(" + hands + " ✋) " + baseTitle : baseTitle;
    if (document.title !== title) document.title = title;
  }

  function makeNotebook() {
    var p = {rows: []};
    p.root = el("article", "nb");
    var head = el("div", "nb-head");
    p.name = el("h2", "nb-name");
    p.count = el("span", "nb-count");
    head.appendChild(p.name);
    head.appendChild(p.count);
    p.list = el("ol", "nb-sections");
    p.root.appendChild(head);
    p.root.appendChild(p.list);
    return p;
  }

  function makeRow() {
    var r = {};
    r.root = el("li", "nb-row");
    r.title = el("span", "nb-title");
    r.track = el("span", "nb-track");
    r.bar = el("span", "nb-bar");
    r.n = el("span", "nb-n");
    r.bar.appendChild(r.n);
    r.track.appendChild(r.bar);
    r.root.appendChild(r.title);
    r.root.appendChild(r.track);
    return r;
  }

  function updateNotebook(p, nb) {
    var path = str(nb.path, 500);
    setText(p.name, str(path, 120));
    setAttr(p.name, "title", path);
    var people = num(nb.attendees) || 0;
    setText(p.count, people === 1 ? "1 attendee" : people + " attendees");
    var sections = Array.isArray(nb.sections) ? nb.sections.slice(0, 60) : [];
    var top = 1;
    sections.forEach(function (sec) { top = Math.max(top, num(sec && sec.attendees) || 0); });
    while (p.rows.length < sections.length) {
      var r = makeRow();
      p.rows.push(r);
      p.list.appendChild(r.root);
    }
    while (p.rows.length > sections.length) p.list.removeChild(p.rows.pop().root);
    sections.forEach(function (sec, i) {
      var r = p.rows[i];
      sec = sec && typeof sec === "object" ? sec : {};
      var n = num(sec.attendees) || 0;
      var title = str(sec.title, 160) || "cell " + (num(sec.first_cell) === null ? "?" : sec.first_cell);
      setText(r.title, title);
      setAttr(r.title, "title", title);
      setText(r.n, n);
      setAttr(r.root, "aria-label", title + ": " + (n === 1 ? "1 attendee" : n + " attendees"));
      setClass(r.root, n ? "nb-row" : "nb-row is-zero");
      r.bar.style.width = (n ? 100 * n / top : 0).toFixed(1) + "%";
    });
  }

  function renderProgress(list) {
    list = Array.isArray(list) ? list : [];
    var seen = {};
    var child = progressBox.firstChild;
    list.forEach(function (nb) {
      if (!nb || typeof nb !== "object") return;
      var key = String(nb.path);
      if (seen.hasOwnProperty(key)) return;
      seen[key] = true;
      var p = notebooks.hasOwnProperty(key) ? notebooks[key] : (notebooks[key] = makeNotebook());
      updateNotebook(p, nb);
      if (child === p.root) child = child.nextSibling;
      else progressBox.insertBefore(p.root, child);
    });
    while (child) {
      var next = child.nextSibling;
      progressBox.removeChild(child);
      child = next;
    }
    Object.keys(notebooks).forEach(function (k) { if (!seen.hasOwnProperty(k)) delete notebooks[k]; });
    show(progressBox, Object.keys(seen).length > 0);
  }

  // --- snapshots and the stream --------------------------------------------------------------------

  function apply(data, fromApi) {
    if (!data || typeof data !== "object") return;
    var now = num(data.now);
    if (now === null) now = Date.now() / 1000;
    if (fromApi && now < lastNow) return;  // the stream has already shown something newer
    // The server's clock against ours: the least-delayed snapshot gives the best estimate, so keep the
    // largest, unless either clock jumped.
    var estimate = now - Date.now() / 1000;
    skew = skew === null || Math.abs(estimate - skew) > 5 ? estimate : Math.max(skew, estimate);
    lastNow = now;
    lastSeen = Date.now();
    var sessions = Array.isArray(data.sessions) ? data.sessions : [];
    var summary = data.summary && typeof data.summary === "object" ? data.summary : {};
    renderCounts(summary.counts, sessions);
    renderProgress(summary.notebooks);
    renderTiles(sessions, now);
  }

  function setConn(value) {
    state = value;
    root.setAttribute("data-conn", value);
    conn.setAttribute("data-conn", value);
    showConn();
  }

  function showConn() {
    var text;
    if (state === "live") text = "● live";
    else if (state === "connecting") text = "connecting…";
    else {
      text = "reconnecting…";
      if (lastSeen) text += " (last update " + span((Date.now() - lastSeen) / 1000) + " ago)";
    }
    setText(conn, text);
  }

  var retry = 1000, opened = null;

  function connect() {
    var es = new EventSource(EVENTS);
    // "live" once a snapshot comes, or once the stream has stayed open a moment (a server that opens
    // the stream and closes it at once must not make the page flicker between live and reconnecting).
    es.onopen = function () {
      clearTimeout(opened);
      opened = setTimeout(function () { if (es.readyState === EventSource.OPEN) setConn("live"); }, 2500);
    };
    es.onmessage = function (e) {
      var data;
      try { data = JSON.parse(e.data); } catch (err) { return; }
      retry = 1000;
      setConn("live");
      apply(data, false);
    };
    es.onerror = function () {
      clearTimeout(opened);
      setConn("reconnecting");
      if (es.readyState !== EventSource.CLOSED) return;  // the browser retries by itself
      // The browser gave up (an error status, or not an event stream): look at the JSON once, then retry.
      es.close();
      load();
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 30000);
    };
  }

  function load() {
    return fetch(API, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) {
        if (r.status === 401 || r.status === 403) {
          // Signed out mid-class: the reload goes to the sign-in. (Never before the first snapshot: no loop.)
          if (lastSeen) window.location.reload();
          else setText(conn, "not signed in — reload the page");
          return null;
        }
        return r.ok ? r.json() : null;
      })
      .then(function (data) { if (data) apply(data, true); })
      .catch(function () {});
  }

  setInterval(function () {
    Object.keys(tiles).forEach(function (id) { tickTile(tiles[id]); });
    if (state !== "live") showConn();
  }, 1000);

  load();
  connect();
})();
