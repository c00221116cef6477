// The follow page: the instructor's current notebook, live and read-only, for anyone (attendees on a phone, people
// waiting in line). Fed by server-sent events, each the whole notebook or {"waiting": true, …}; when the stream
// keeps failing (a proxy that buffers, an old browser), the same JSON is polled instead.
//
// The notebook is content nbpool does not control: every string reaches the page by textContent only, never as
// HTML (no markdown rendering: headings are only shown in bold). Cells are keyed by id and updated in place, so an
// event for a notebook of hundreds of cells, on fifty phones at once, touches only what changed.
(function () {
  var root = document.getElementById("follow");
  if (!root) return;
  var EVENTS = root.getAttribute("data-events-url");
  var API = root.getAttribute("data-api-url");

  var nameBox = document.getElementById("follow-notebook");
  var connBox = document.getElementById("follow-conn");
  var updatedBox = document.getElementById("follow-updated");
  var waitingBox = document.getElementById("follow-waiting");
  var list = document.getElementById("follow-cells");
  var jump = document.getElementById("follow-jump");
  var baseTitle = document.title;

  var SOURCE_CHARS = 200000;   // what one cell may put in the DOM, at most
  var OUTPUT_CHARS = 100000;
  var MAX_CELLS = 3000;
  var READING_MS = 10000;      // after the reader scrolls, the page leaves the scrolling to them this long
  var POLL_MS = 1500;

  var cells = {};              // key (the cell's id) -> its record
  var currentKey = null;       // the highlighted cell's key
  var notebook = null;         // the notebook shown (null: none, waiting)
  var lastText = null;         // the last event's text: the same again changes nothing
  var userScrolledAt = -Infinity;
  var reduceMotion = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;

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

  function show(node, on) {
    if (node.hidden === !!on) node.hidden = !on;
  }

  function text(value, max) {
    // A notebook string for display (nbformat also allows a list of lines), never more than max characters.
    if (value === null || value === undefined) return "";
    if (Array.isArray(value)) value = value.join("");
    value = String(value);
    return value.length > max ? value.slice(0, max - 1) + "…" : value;
  }

  function num(value) {
    return typeof value === "number" && isFinite(value) ? value : null;
  }

  function two(n) {
    return (n < 10 ? "0" : "") + n;
  }

  function hhmmss(epoch) {
    var d = new Date(epoch * 1000);
    return two(d.getHours()) + ":" + two(d.getMinutes()) + ":" + two(d.getSeconds());
  }

  // --- markdown, as plain text ---------------------------------------------------------------------

  var FENCE = /^\s{0,3}(```|~~~)/;
  var HEADING = /^\s{0,3}(#{1,6})(?:\s+|$)(.*)$/;

  function renderMarkdown(box, source) {
    // Lines as text; "# Title" lines in bold (their level as a heading's), fenced code kept apart. Never HTML.
    while (box.firstChild) box.removeChild(box.firstChild);
    var lines = source.split(/\r\n|\r|\n/);
    var buffer = [], inFence = false;
    function flush(kind) {
      while (buffer.length && !buffer[0].trim()) buffer.shift();
      while (buffer.length && !buffer[buffer.length - 1].trim()) buffer.pop();
      if (buffer.length) box.appendChild(el(kind === "code" ? "pre" : "p", kind === "code" ? "follow-md-code" : "follow-md-text",
                                            buffer.join("\n")));
      buffer = [];
    }
    lines.forEach(function (line) {
      if (FENCE.test(line)) {
        flush(inFence ? "code" : "text");
        inFence = !inFence;
        return;
      }
      var h = inFence ? null : HEADING.exec(line);
      if (!h) {
        buffer.push(line);
        return;
      }
      flush("text");
      var level = h[1].length;
      var title = h[2].replace(/\s+#+\s*$/, "").trim();
      if (!title) return;
      var node = el("p", "follow-md-h follow-md-h" + level, title);
      node.setAttribute("role", "heading");
      node.setAttribute("aria-level", String(Math.min(6, level + 1)));  // (the page's h1 is the notebook's name)
      box.appendChild(node);
    });
    flush(inFence ? "code" : "text");
  }

  // --- cells ---------------------------------------------------------------------------------------

  function makeCell(key, id, type) {
    var c = {key: key, type: type, source: null, output: null, count: undefined};
    c.root = el("li", "follow-cell cell-" + type);
    c.root.setAttribute("data-id", id);
    c.root.setAttribute("data-type", type);
    if (type === "code") {
      c.label = el("div", "follow-in");
      c.label.setAttribute("aria-hidden", "true");
      c.src = el("pre", "follow-source");
      c.out = el("pre", "follow-output");
      c.out.hidden = true;
      c.root.appendChild(c.label);
      c.root.appendChild(c.src);
      c.root.appendChild(c.out);
    } else if (type === "markdown") {
      c.md = el("div", "follow-md");
      c.root.appendChild(c.md);
    } else {
      c.src = el("pre", "follow-source follow-raw");
      c.root.appendChild(c.src);
    }
    return c;
  }

  function updateCell(c, cell) {
    var source = text(cell.source, SOURCE_CHARS);
    if (c.source !== source) {
      c.source = source;
      if (c.type === "markdown") renderMarkdown(c.md, source);
      else setText(c.src, source);
    }
    if (c.type !== "code") return;
    var count = num(cell.execution_count);
    if (c.count !== count) {
      c.count = count;
      setText(c.label, "In [" + (count === null ? " " : count) + "]:");
      c.root.setAttribute("aria-label", count === null ? "Code cell, not run" : "Code cell " + count);
    }
    var output = text(cell.outputs_text, OUTPUT_CHARS);
    if (c.output !== output) {
      c.output = output;
      setText(c.out, output);
      show(c.out, output.length > 0);
    }
  }

  function clearCells() {
    while (list.firstChild) list.removeChild(list.firstChild);
    cells = {};
    currentKey = null;
  }

  function showWaiting(message) {
    clearCells();
    notebook = null;
    setText(nameBox, "");
    show(nameBox, false);
    setText(updatedBox, "");
    setText(waitingBox, message || "Waiting for the instructor…");
    show(waitingBox, true);
    show(list, false);
    show(jump, false);
    if (document.title !== baseTitle) document.title = baseTitle;
  }

  function showNotebook(data) {
    var name = text(data.notebook, 300);
    var newNotebook = name !== notebook;
    notebook = name;
    setText(nameBox, name || "Untitled notebook");
    setAttrTitle(nameBox, name);
    show(nameBox, true);
    show(waitingBox, false);
    show(list, true);
    var title = (name ? name.split("/").pop() + " · " : "") + baseTitle;
    if (document.title !== title) document.title = title;
    var updated = num(data.updated);
    setText(updatedBox, updated === null ? "" : "updated " + hhmmss(updated));

    // The cells: created, changed or kept by key; the ones gone removed first, then the rest put in order.
    var seen = {}, keys = [], order = [];
    data.cells.slice(0, MAX_CELLS).forEach(function (cell, i) {
      if (!cell || typeof cell !== "object") cell = {};
      var id = typeof cell.id === "string" || typeof cell.id === "number" ? String(cell.id).slice(0, 200) : "";
      var key = id && !seen.hasOwnProperty("=" + id) ? "=" + id : "#" + i;  // (a cell without an id: its place)
      seen[key] = true;
      var type = cell.cell_type === "code" || cell.cell_type === "markdown" ? cell.cell_type : "raw";
      var c = cells.hasOwnProperty(key) ? cells[key] : null;
      if (c && (c.type !== type || c.root.getAttribute("data-id") !== id)) {
        if (c.root.parentNode) c.root.parentNode.removeChild(c.root);
        if (currentKey === key) currentKey = null;
        c = null;
      }
      if (!c) c = cells[key] = makeCell(key, id, type);
      updateCell(c, cell);
      keys.push(key);
      order.push(c.root);
    });
    Object.keys(cells).forEach(function (key) {
      if (seen.hasOwnProperty(key)) return;
      var root = cells[key].root;
      if (root.parentNode) root.parentNode.removeChild(root);
      delete cells[key];
      if (currentKey === key) currentKey = null;
    });
    var child = list.firstChild;
    order.forEach(function (node) {
      if (child === node) child = child.nextSibling;
      else list.insertBefore(node, child);
    });
    while (child) {
      var next = child.nextSibling;
      list.removeChild(child);
      child = next;
    }

    // The current cell: highlighted, and brought into view when it changes.
    var current = num(data.current), key = null;
    if (current !== null && current >= 0 && current < keys.length) key = keys[Math.floor(current)];
    var moved = key !== currentKey;
    if (moved) {
      if (currentKey !== null && cells.hasOwnProperty(currentKey)) {
        cells[currentKey].root.classList.remove("current");
        cells[currentKey].root.removeAttribute("aria-current");
      }
      currentKey = key;
      if (key !== null) {
        cells[key].root.classList.add("current");
        cells[key].root.setAttribute("aria-current", "step");
      }
    }
    if (newNotebook) userScrolledAt = -Infinity;  // another notebook: where the reader was means nothing now
    if (moved || newNotebook) {
      if (key !== null) reveal(cells[key].root, false);
      else if (newNotebook) window.scrollTo(0, 0);
    }
    checkJump();
  }

  function setAttrTitle(node, value) {
    if (node.getAttribute("title") !== value) node.setAttribute("title", value);
  }

  // --- keeping the current cell in view ------------------------------------------------------------

  function reveal(node, asked) {
    if (!asked && Date.now() - userScrolledAt < READING_MS) return;
    var box = node.getBoundingClientRect();
    var high = window.innerHeight || document.documentElement.clientHeight;
    var near = Math.abs(box.top) < high * 3;
    node.scrollIntoView({block: box.height < high * 0.7 ? "center" : "start",
                         behavior: near && !reduceMotion ? "smooth" : "auto"});
  }

  // The reader's own scrolling: wheel, touch, keys, a drag of the scroll bar. (Not "scroll" events: the page's
  // own scrolling, and the browser keeping the view steady as cells change above it, make those too.)
  function reading() {
    userScrolledAt = Date.now();
  }
  window.addEventListener("wheel", reading, {passive: true});
  window.addEventListener("touchmove", reading, {passive: true});
  window.addEventListener("mousedown", function (e) {
    if (e.target === document.documentElement || e.target === document.body) reading();  // (a scroll bar)
  });
  window.addEventListener("keydown", function (e) {
    if (/^(PageUp|PageDown|ArrowUp|ArrowDown|Home|End| |Spacebar)$/.test(e.key) && e.target === document.body) reading();
  });

  var jumpQueued = false;

  function checkJump() {
    // The "back to the current cell" button: shown while the current cell is out of view.
    if (currentKey === null || !cells.hasOwnProperty(currentKey)) {
      show(jump, false);
      return;
    }
    var box = cells[currentKey].root.getBoundingClientRect();
    var high = window.innerHeight || document.documentElement.clientHeight;
    var above = box.bottom < 0, below = box.top > high;
    setText(jump, (above ? "↑" : "↓") + " Back to the current cell");
    show(jump, above || below);
  }

  window.addEventListener("scroll", function () {
    if (jumpQueued) return;
    jumpQueued = true;
    window.requestAnimationFrame(function () {
      jumpQueued = false;
      checkJump();
    });
  }, {passive: true});
  window.addEventListener("resize", checkJump);

  jump.addEventListener("click", function () {
    if (currentKey === null || !cells.hasOwnProperty(currentKey)) return;
    userScrolledAt = -Infinity;
    reveal(cells[currentKey].root, true);
  });

  // --- events and the stream -----------------------------------------------------------------------

  function handle(raw) {
    if (raw === lastText) return;
    var data;
    try { data = JSON.parse(raw); } catch (e) { return; }
    lastText = raw;
    apply(data);
  }

  function apply(data) {
    if (!data || typeof data !== "object") return;
    if (data.waiting === true || !Array.isArray(data.cells)) {
      showWaiting(text(data.message || data.error, 500));
      return;
    }
    showNotebook(data);
  }

  function setConn(value) {
    root.setAttribute("data-conn", value);
    connBox.setAttribute("data-conn", value);
    setText(connBox, value === "live" || value === "polling" ? "● live" :
                     value === "connecting" ? "connecting…" : "reconnecting…");
  }

  var source = null;       // the EventSource, while one is open
  var failures = 0;        // the stream's errors since its last event
  var polling = false, pollTimer = null, pollFailures = 0;
  var streamRetry = 30000; // while polling, the stream is tried again after this long

  function connect() {
    if (typeof window.EventSource !== "function" || !EVENTS) {
      startPolling();
      return;
    }
    var es = source = new EventSource(EVENTS);
    es.onmessage = function (e) {
      failures = 0;
      streamRetry = 30000;
      if (polling) stopPolling();
      setConn("live");
      handle(e.data);
    };
    es.onerror = function () {
      if (es !== source) return;
      failures += 1;
      if (es.readyState === EventSource.CLOSED || failures >= 3) {
        // The browser gave up, or the stream keeps dropping: poll the JSON, and try the stream again later.
        es.close();
        source = null;
        startPolling();
        setTimeout(connect, streamRetry);
        streamRetry = Math.min(streamRetry * 2, 300000);
      } else if (!polling) {
        setConn("reconnecting");  // the browser retries by itself
      }
    };
  }

  function startPolling() {
    if (polling) return;
    polling = true;
    poll();
  }

  function stopPolling() {
    polling = false;
    clearTimeout(pollTimer);
    pollTimer = null;
  }

  function poll() {
    pollTimer = null;
    if (!polling) return;
    if (document.hidden) {  // a phone in a pocket asks nothing (it asks again when shown)
      pollTimer = setTimeout(poll, POLL_MS);
      return;
    }
    fetch(API, {credentials: "same-origin", cache: "no-store", headers: {"Accept": "application/json"}})
      .then(function (r) {
        return r.text().then(function (body) {
          if (!polling) return;
          if (r.status === 200) {
            pollFailures = 0;
            setConn("polling");
            handle(body);
          } else if (r.status === 404) {
            var data = null;
            try { data = JSON.parse(body); } catch (e) { data = null; }
            pollFailures = 0;
            setConn("polling");
            var message = data && typeof data === "object" && typeof data.error === "string" ? data.error : "";
            handle(JSON.stringify({waiting: true, message: message}));
          } else {
            throw new Error(String(r.status));
          }
        });
      })
      .catch(function () {
        pollFailures += 1;
        if (pollFailures >= 2) setConn("reconnecting");
      })
      .then(function () {
        if (polling && pollTimer === null) pollTimer = setTimeout(poll, POLL_MS);
      });
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && polling && pollTimer !== null) {
      clearTimeout(pollTimer);
      poll();
    }
  });

  setConn("connecting");
  connect();
})();
