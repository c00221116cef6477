// The teaching team's class view: one tile per attendee session, live from a stream of server-sent
// events, each a full snapshot. Every string in a snapshot comes from the attendees (names, cell
// text, error messages, the note on a raised hand): it reaches the page by textContent and
// setAttribute only, never as HTML. Tiles are keyed by session id and updated in place, so a
// snapshot a second for a hundred attendees touches only what changed. No CDN, no library.
//
// Each tile also offers "Watch" (read-only) and "Help" (edit and run): nbpool answers with a one-use link that
// opens the attendee's notebook in this browser. When every notebook shares nbpool's origin (path mode) opening it
// ends this browser's class view, so the link is shown in a dialog to copy (another browser, a private window)
// or to open here.
(function () {
  var root = document.getElementById("classview");
  if (!root) return;
  var EVENTS = root.getAttribute("data-events-url");
  var API = root.getAttribute("data-api-url");
  var HAND = root.getAttribute("data-hand-url");
  var HELP = root.getAttribute("data-help-base") || "/api/class/";
  var PATH_MODE = root.getAttribute("data-path-mode") === "true";

  var tilesBox = document.getElementById("cv-tiles");
  var emptyBox = document.getElementById("cv-empty");
  var progressBox = document.getElementById("cv-progress");
  var conn = document.getElementById("cv-conn");
  var baseTitle = document.title;

  var NAME_KEY = "nbpool-helper-name";
  var NAME_CHARS = 40;
  var nameInput = document.getElementById("cv-helper-name");
  var dialog = document.getElementById("cv-link-dialog");

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

  function clock(epoch) {
    // A server time (epoch seconds) as this browser's local hh:mm.
    var d = new Date((epoch - (skew || 0)) * 1000);
    function two(n) { return (n < 10 ? "0" : "") + n; }
    return two(d.getHours()) + ":" + two(d.getMinutes());
  }

  function safeUrl(value) {
    // A link from nbpool's answer, only if it is an http(s) address (never a javascript: one).
    if (typeof value !== "string" || !value) return null;
    try {
      var u = new URL(value, window.location.href);
      return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
    } catch (e) {
      return null;
    }
  }

  function answer(r) {
    // A fetch's JSON answer; a failure (4xx, 5xx) throws the server's {"error": …}, else its status.
    return r.text().then(function (text) {
      var data = null;
      try { data = JSON.parse(text); } catch (e) { data = null; }
      if (r.ok) return data;
      var said = data && typeof data === "object" ? (data.error || data.message) : null;
      var message = said ? str(said, 300) : r.status === 401 || r.status === 403
        ? "not signed in any more: reload the page" : "the server answered " + r.status;
      throw new Error(message);
    });
  }

  function problem(err) {
    return err && err.message ? err.message : "no answer";
  }

  function basename(path) {
    var parts = String(path).split("/");
    return parts[parts.length - 1] || String(path);
  }

  // --- tiles ---------------------------------------------------------------------------------------

  function button(cls, text, id) {
    var b = el("button", cls, text);
    b.type = "button";
    b.setAttribute("data-id", id);
    return b;
  }

  function makeTile(id) {
    var t = {id: id, stateKey: null, cls: null, hand: null, lowered: null, lowering: false, instructor: false,
             nameText: id, asking: false, ending: false, ended: null, helpers: [], helperIds: [], helperSig: null,
             noteTimer: null};
    t.root = el("li", "tile");
    t.root.setAttribute("data-id", id);

    t.role = el("p", "tile-instructor", "Instructor");
    t.role.hidden = true;
    t.root.appendChild(t.role);

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

    // Watching and helping: who has access now, and the buttons.
    t.help = el("div", "tile-help");
    t.helperList = el("ul", "tile-helpers");
    t.helperList.setAttribute("aria-label", "Helpers with access");
    t.helperList.hidden = true;
    t.actions = el("div", "tile-actions");
    t.watch = button("tile-act watch-button", "Watch", id);
    t.helpButton = button("tile-act help-button", "Help", id);
    t.end = button("tile-act end-help-button", "End help", id);
    t.end.hidden = true;
    t.watch.addEventListener("click", function () { ask(t, "watch"); });
    t.helpButton.addEventListener("click", function () { ask(t, "help"); });
    t.end.addEventListener("click", function () { endHelp(t); });
    t.actions.appendChild(t.watch);
    t.actions.appendChild(t.helpButton);
    t.actions.appendChild(t.end);
    t.helpError = el("p", "tile-help-error");
    t.helpError.setAttribute("role", "alert");
    t.helpError.hidden = true;
    t.helpNote = el("p", "tile-help-note");
    t.helpNote.setAttribute("role", "status");
    t.helpNote.hidden = true;
    t.help.appendChild(t.helperList);
    t.help.appendChild(t.actions);
    t.help.appendChild(t.helpError);
    t.help.appendChild(t.helpNote);
    t.root.appendChild(t.help);
    return t;
  }

  function updateTile(t, s, now) {
    var key = STATES.hasOwnProperty(s.state) ? s.state : "idle";
    var instructor = s.instructor === true;
    var cls = "tile state-" + key + (instructor ? " is-instructor" : "");
    if (t.cls !== cls) {
      t.cls = cls;
      t.stateKey = key;
      t.instructor = instructor;
      setClass(t.root, cls);
      t.root.setAttribute("data-state", key);
      if (instructor) t.root.setAttribute("data-instructor", "true");
      else t.root.removeAttribute("data-instructor");
    }
    var name = str(s.name, 300) || str(s.id, 40);
    t.nameText = str(name, 90);
    setText(t.name, t.nameText);
    setAttr(t.name, "title", name);
    setText(t.state, STATES[key]);
    show(t.role, instructor);
    // The instructor's own session: no watching, helping or hand buttons on it.
    show(t.watch, !instructor);
    show(t.helpButton, !instructor);
    show(t.lower, !instructor);
    setAttr(t.watch, "title", "Watch " + t.nameText + "'s notebook (read-only)");
    setAttr(t.helpButton, "title", "Help in " + t.nameText + "'s notebook (edit and run)");
    renderHelpers(t, Array.isArray(s.helpers) ? s.helpers : []);

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
    if (t.ended && Date.now() >= t.ended.until) renderHelpers(t, t.helpers);
  }

  // --- watching and helping ------------------------------------------------------------------------

  function renderHelpers(t, list) {
    t.helpers = list;
    // Hidden at once after "End help" succeeds, until the server's snapshots catch up.
    if (t.ended && Date.now() >= t.ended.until) t.ended = null;
    var items = [];
    list.slice(0, 30).forEach(function (h) {
      if (!h || typeof h !== "object") return;
      var id = str(h.id, 100);
      if (t.ended && t.ended.ids.hasOwnProperty(id)) return;
      items.push({id: id, name: str(h.name, NAME_CHARS) || "Helper", mode: h.mode === "help" ? "help" : "watch",
                  joined: h.joined === true, expires: num(h.expires)});
    });
    t.helperIds = items.map(function (h) { return h.id; });
    var sig = JSON.stringify(items);
    if (sig !== t.helperSig) {
      t.helperSig = sig;
      while (t.helperList.firstChild) t.helperList.removeChild(t.helperList.firstChild);
      items.forEach(function (h) {
        var li = el("li", "tile-helper mode-" + h.mode + (h.joined ? " is-joined" : " is-pending"));
        li.setAttribute("data-id", h.id);
        li.setAttribute("data-mode", h.mode);
        li.setAttribute("data-joined", h.joined ? "true" : "false");
        var icon = el("span", "tile-helper-icon", h.mode === "help" ? "✎" : "👁");
        icon.setAttribute("aria-hidden", "true");
        var who = el("span", "tile-helper-name", h.name);
        var what = el("span", "tile-helper-what", h.joined ? (h.mode === "help" ? " helping" : " watching")
                                                           : (h.mode === "help" ? ": help" : ": watch") + " link not opened yet");
        li.appendChild(icon);
        li.appendChild(who);
        li.appendChild(what);
        if (h.expires !== null) {
          li.setAttribute("title", (h.joined ? "access until " : "the link works until ") + clock(h.expires));
        }
        t.helperList.appendChild(li);
      });
    }
    show(t.helperList, items.length > 0);
    show(t.end, items.length > 0);
    show(t.actions, !t.instructor || items.length > 0);
  }

  function helperName() {
    var value = nameInput ? nameInput.value : "";
    value = value.replace(/[\u0000-\u001f\u007f-\u009f]/g, "").replace(/\s+/g, " ").trim().slice(0, NAME_CHARS);
    return value || "Helper";
  }

  function say(t, node, text) {
    // One message under the buttons at a time: an error, or a note.
    t.helpError.hidden = true;
    t.helpNote.hidden = true;
    clearTimeout(t.noteTimer);
    if (!node) return;
    while (node.firstChild) node.removeChild(node.firstChild);
    if (typeof text === "string") node.textContent = text;
    else text.forEach(function (part) { node.appendChild(typeof part === "string" ? document.createTextNode(part) : part); });
    node.hidden = false;
  }

  function ask(t, mode) {
    if (t.asking || t.instructor) return;
    t.asking = true;
    var clicked = mode === "help" ? t.helpButton : t.watch;
    t.watch.disabled = t.helpButton.disabled = true;
    clicked.setAttribute("aria-busy", "true");
    say(t, null);
    fetch(HELP + encodeURIComponent(t.id) + "/" + mode, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "Accept": "application/json"},
      body: JSON.stringify({name: helperName()})
    })
      .then(answer)
      .then(function (data) {
        var url = safeUrl(data && data.url);
        if (!url) throw new Error("the answer held no link");
        useLink(t, mode, url, num(data.expires));
      })
      .catch(function (err) {
        say(t, t.helpError, (mode === "help" ? "Could not open a help link — " : "Could not open a watch link — ") +
                            problem(err));
      })
      .then(function () {
        t.asking = false;
        t.watch.disabled = t.helpButton.disabled = false;
        clicked.removeAttribute("aria-busy");
      });
  }

  function useLink(t, mode, url, expires) {
    if (PATH_MODE) {
      showLink(t, mode, url, expires);
      return;
    }
    window.open(url, "_blank", "noopener");
    // (With noopener there is no telling whether a popup blocker stopped it: the link stays at hand, once.)
    var link = el("a", "tile-help-link", "open the link");
    link.href = url;
    link.target = "_blank";
    link.rel = "noopener";
    link.addEventListener("click", function () { setTimeout(function () { say(t, null); }, 0); });
    say(t, t.helpNote, [(mode === "help" ? "Help" : "Watch") + " link opened in a new tab. Nothing opened? ", link, "."]);
    var left = expires === null ? 60 : Math.min(60, Math.max(5, expires - serverNow()));
    t.noteTimer = setTimeout(function () { if (!t.helpNote.hidden) say(t, null); }, left * 1000);
  }

  function endHelp(t) {
    if (t.ending) return;
    t.ending = true;
    var ids = t.helperIds.slice();
    t.end.disabled = true;
    setText(t.end, "Ending…");
    say(t, null);
    fetch(HELP + encodeURIComponent(t.id) + "/helpers", {method: "DELETE", credentials: "same-origin",
                                                        headers: {"Accept": "application/json"}})
      .then(answer)
      .then(function (data) {
        var n = num(data && data.ended);
        var gone = {};
        ids.forEach(function (id) { gone[id] = true; });
        t.ended = {ids: gone, until: Date.now() + 8000};
        renderHelpers(t, t.helpers);
        say(t, t.helpNote, n === null ? "Help ended." : n === 1 ? "Ended 1 helper's access." :
                           "Ended " + n + " helpers' access.");
        t.noteTimer = setTimeout(function () { if (!t.helpNote.hidden) say(t, null); }, 6000);
      })
      .catch(function (err) { say(t, t.helpError, "Could not end the help — " + problem(err)); })
      .then(function () {
        t.ending = false;
        t.end.disabled = false;
        setText(t.end, "End help");
      });
  }

  // The dialog with a one-use link (path mode).
  var pending = {url: null, back: null};  // the link the dialog shows, and the button to focus after

  function showLink(t, mode, url, expires) {
    if (!dialog) {
      window.location.assign(url);
      return;
    }
    pending.url = url;
    pending.back = mode === "help" ? t.helpButton : t.watch;
    setText(document.getElementById("cv-link-title"), (mode === "help" ? "Help " : "Watch ") + t.nameText +
            (mode === "help" ? " (edit and run)" : " (read-only)"));
    setText(document.getElementById("cv-link-until"), expires === null ? "" : ", until " + clock(expires));
    setText(document.getElementById("cv-link-copied"), "");
    var input = document.getElementById("cv-link-url");
    input.value = url;
    if (typeof dialog.showModal === "function") {
      if (!dialog.open) dialog.showModal();
    } else {
      dialog.setAttribute("open", "");
    }
    input.focus();
    input.select();
  }

  function closeLink() {
    if (typeof dialog.close === "function" && dialog.open) dialog.close();  // (its "close" event tidies up)
    else {
      dialog.removeAttribute("open");
      linkClosed();
    }
  }

  function linkClosed() {
    document.getElementById("cv-link-url").value = "";
    pending.url = null;
    var back = pending.back;
    pending.back = null;
    if (back && document.body.contains(back) && !back.hidden) back.focus();
  }

  function copyLink() {
    var input = document.getElementById("cv-link-url");
    var said = document.getElementById("cv-link-copied");
    input.focus();
    input.select();
    function legacy() {
      try { return document.execCommand("copy"); } catch (e) { return false; }
    }
    function done(ok) {
      setText(said, ok ? "Copied: paste it in another browser or a private window."
                       : "Select the link and copy it (Ctrl+C, or ⌘C on a Mac).");
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(input.value).then(function () { done(true); }, function () { done(legacy()); });
    } else {
      done(legacy());
    }
  }

  if (dialog) {
    dialog.addEventListener("close", linkClosed);
    dialog.addEventListener("keydown", function (e) {
      if (e.key === "Escape" || e.key === "Esc") {
        e.preventDefault();
        closeLink();
      }
    });
    dialog.addEventListener("click", function (e) {
      // A click on the backdrop (outside the dialog's box) closes it.
      if (e.target !== dialog) return;
      var box = dialog.getBoundingClientRect();
      if (e.clientX < box.left || e.clientX > box.right || e.clientY < box.top || e.clientY > box.bottom) closeLink();
    });
    document.getElementById("cv-link-copy").addEventListener("click", copyLink);
    document.getElementById("cv-link-close").addEventListener("click", closeLink);
    document.getElementById("cv-link-open").addEventListener("click", function () {
      var url = pending.url;
      closeLink();
      if (url) window.location.assign(url);
    });
  }

  if (nameInput) {
    var stored = null;
    try { stored = window.localStorage.getItem(NAME_KEY); } catch (e) { stored = null; }
    nameInput.value = stored !== null ? String(stored).slice(0, NAME_CHARS) : "Helper";
    nameInput.addEventListener("input", function () {
      try { window.localStorage.setItem(NAME_KEY, nameInput.value.slice(0, NAME_CHARS)); } catch (e) { /* private mode */ }
    });
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
    var order = [], first = [];
    sessions.forEach(function (s) {
      if (!s || typeof s !== "object" || s.id === null || s.id === undefined) return;
      var id = String(s.id);
      if (seen.hasOwnProperty(id)) return;
      seen[id] = true;
      var t = tiles.hasOwnProperty(id) ? tiles[id] : (tiles[id] = makeTile(id));
      updateTile(t, s, now);
      (t.instructor ? first : order).push(t.root);  // the instructor's tile comes first
    });
    order = first.concat(order);
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
