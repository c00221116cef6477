// nbpool's notices as JupyterLab notifications (see nbpool_notice.py), and the attendee's "raise hand"
// control. A federated extension written by hand, with no build step: JupyterLab loads this script, calls
// init() with its share scope and get("./extension") for the plugins. Two of the application's shared
// modules are used, taken from that scope as webpack would (see sharedModule()): @jupyterlab/notebook, for
// its INotebookTracker token, and @lumino/widgets, for a button in the notebook toolbar; without them the
// rest still works.
// Notifications go through JupyterLab's own 'apputils:notify' command; where an application has none, a
// banner at the top of the page says it. The hand control is plain DOM fixed at the bottom-right corner
// and talks to nbpool's proxy at the origin's root (/api/me, /api/hand, /api/me/share, /api/me/helpers,
// and the workshop's follow_url), not to the notebook server. It also says who else has access to this
// notebook (#nbpool-helpers), lets the attendee share it with a helper, and "catches up" with the
// instructor's notebook. In a helper's browser (viewer "helper") there is no hand control, only a banner
// saying whose notebook this is (#nbpool-helping).
var _JUPYTERLAB;
(function () {
  "use strict";
  var POLL_MS = 5000;

  function baseUrl() {
    var data = document.getElementById("jupyter-config-data");
    try {
      return JSON.parse(data.textContent).baseUrl || "/";
    } catch (e) {
      return "/";
    }
  }

  function banner(notice) {
    var div = document.createElement("div");
    div.className = "nbpool-notice";
    div.setAttribute("role", "alert");
    div.style.cssText = "position:fixed;top:0;left:0;right:0;z-index:10000;padding:8px 40px 8px 12px;" +
      "background:#fff3cd;color:#664d03;border-bottom:1px solid #ffe69c;font:14px sans-serif";
    div.textContent = notice.message;
    var close = document.createElement("button");
    close.textContent = "\u00d7";
    close.setAttribute("aria-label", "Close");
    close.style.cssText = "position:absolute;right:8px;top:4px;border:0;background:none;font-size:18px;cursor:pointer";
    close.onclick = function () { div.remove(); };
    div.appendChild(close);
    document.body.appendChild(div);
  }

  var noticePlugin = {
    id: "nbpool-notice:plugin",
    description: "Shows nbpool's notices about this session.",
    autoStart: true,
    activate: function (app) {
      var shown = {};
      var url = baseUrl() + "nbpool/notice";
      function check() {
        fetch(url, {credentials: "same-origin", cache: "no-store"})
          .then(function (r) { return r.ok ? r.json() : {}; })
          .then(function (notice) {
            if (!notice || !notice.id || !notice.message || shown[notice.id]) return;
            shown[notice.id] = true;
            if (app.commands && app.commands.hasCommand("apputils:notify")) {
              app.commands.execute("apputils:notify", {message: notice.message, type: notice.type || "warning",
                                                       options: {autoClose: false}});
            } else {
              banner(notice);
            }
          })
          .catch(function () {});
      }
      check();
      setInterval(check, POLL_MS);
    }
  };

  // --- The attendee's hand control ------------------------------------------------------------------
  // A small panel fixed at the bottom-right corner, above JupyterLab's status bar: the attendee's display
  // name (click to change), "I'm done", and "Raise hand" (with an optional line of text). State lives in
  // nbpool's proxy: GET /api/me says it, POST/DELETE /api/hand and POST /api/me change it, and each
  // answer is the new state, shown at once. /api/me is polled so that a hand lowered by a helper from
  // the class view comes down here too. Anything but a valid answer to the first GET /api/me (the image
  // running on its own, without nbpool) and the control is never shown.
  // With a newer nbpool (/api/me says "viewer"), the same control also:
  // - says, at the top of the page (#nbpool-helpers), which helpers can see or change this notebook right
  //   now, each with "End" (DELETE /api/me/helpers/<id>) and "End all helper access" (DELETE
  //   /api/me/helpers); /api/me is polled every HELPERS_POLL_MS while there are any;
  // - shares the notebook with a helper: "Share with a helper" (POST /api/me/share {"mode"}) shows a
  //   one-use link to send them;
  // - "Catch me up" (attendees, when the workshop has an instructor: /api/me's follow_url) appends the
  //   instructor's cells up to the one they ran last to the end of the attendee's notebook, as one
  //   undoable change, skipping those an earlier catch-up added.
  var HAND_POLL_MS = 10000;
  var HELPERS_POLL_MS = 3000;
  var CATCH_UP_STATUS_MS = 60000;
  var COPIED_MS = 2000;
  var TOOLBAR_WAIT_MS = 5000;
  var TOOLBAR_RETRY_MS = 200;
  var HAND_ERROR_MS = 6000;
  var HAND_TEXT_MAX = 200;
  var HAND_NAME_MAX = 40;
  var HAND_RAISE_LABEL = "\u270b Raise hand";
  var HAND_LOWER_LABEL = "Lower hand";

  var HAND_CSS = [
    "#nbpool-hand{position:fixed;right:16px;bottom:28px;z-index:900;box-sizing:border-box;",
    "  max-width:calc(100vw - 32px);font-family:var(--jp-ui-font-family,system-ui,-apple-system,'Segoe UI',Roboto,",
    "  'Helvetica Neue',Arial,sans-serif);font-size:var(--jp-ui-font-size1,13px);line-height:1.3;",
    "  color:var(--jp-ui-font-color1,rgba(0,0,0,.87));}",
    "#nbpool-hand *,#nbpool-hand *::before,#nbpool-hand *::after{box-sizing:border-box;}",
    "#nbpool-hand [hidden]{display:none !important;}",
    ".nbpool-hand-bar{display:flex;flex-wrap:wrap;justify-content:flex-end;align-items:center;gap:4px;padding:4px;",
    "  border-radius:8px;",
    "  background:var(--jp-layout-color1,#fff);border:1px solid var(--jp-border-color1,#bdbdbd);",
    "  box-shadow:0 2px 8px rgba(0,0,0,.18);}",
    "#nbpool-hand.nbpool-hand-mod-raised .nbpool-hand-bar{border-color:#f0a800;}",
    ".nbpool-hand-button,.nbpool-hand-input{font:inherit;margin:0;height:26px;border-radius:6px;}",
    ".nbpool-hand-button{display:inline-flex;align-items:center;gap:4px;padding:0 10px;white-space:nowrap;",
    "  cursor:pointer;color:inherit;background:var(--jp-layout-color2,#eee);",
    "  border:1px solid var(--jp-border-color2,#e0e0e0);}",
    ".nbpool-hand-button:hover{background:var(--jp-layout-color3,#e0e0e0);}",
    ".nbpool-hand-button:disabled{cursor:default;opacity:.6;}",
    ".nbpool-hand-button:focus-visible,.nbpool-hand-input:focus{outline:2px solid var(--jp-brand-color1,#1976d2);",
    "  outline-offset:1px;}",
    "#nbpool-hand-name{max-width:16em;background:transparent;border-color:transparent;}",
    "#nbpool-hand-name:hover{background:var(--jp-layout-color2,#eee);}",
    "#nbpool-hand-name.nbpool-hand-mod-unnamed{font-style:italic;color:var(--jp-ui-font-color2,rgba(0,0,0,.6));}",
    "#nbpool-hand-name>span{min-width:0;overflow:hidden;text-overflow:ellipsis;}",
    "#nbpool-hand-name::after{content:'\\270e';opacity:.55;font-style:normal;}",
    "#nbpool-hand-done[aria-pressed='true']{background:#d3f2dc;border-color:#2e9e5b;color:#0b4d25;}",
    "#nbpool-hand-done[aria-pressed='true']::before{content:'\\2713';font-weight:bold;}",
    "#nbpool-hand-raise{font-weight:600;color:#fff;background:var(--jp-brand-color1,#1976d2);",
    "  border-color:var(--jp-brand-color1,#1976d2);}",
    "#nbpool-hand-raise:hover{filter:brightness(1.08);}",
    "#nbpool-hand-raise[aria-pressed='true']{color:#2b1d00;background:#ffca28;border-color:#f0a800;}",
    ".nbpool-hand-input{padding:0 6px;color:inherit;background:var(--jp-input-background,var(--jp-layout-color1,#fff));",
    "  border:1px solid var(--jp-input-border-color,var(--jp-border-color1,#bdbdbd));}",
    "#nbpool-hand-name-input{width:14em;}",
    ".nbpool-hand-above{position:absolute;right:0;bottom:calc(100% + 6px);display:flex;flex-direction:column;",
    "  align-items:flex-end;gap:6px;}",
    ".nbpool-hand-popover,.nbpool-hand-error{border-radius:8px;box-shadow:0 2px 8px rgba(0,0,0,.18);}",
    ".nbpool-hand-popover{width:340px;max-width:calc(100vw - 32px);padding:8px;",
    "  background:var(--jp-layout-color1,#fff);border:1px solid var(--jp-border-color1,#bdbdbd);}",
    ".nbpool-hand-popover-row{display:flex;gap:4px;}",
    "#nbpool-hand-text{flex:1;min-width:0;}",
    ".nbpool-hand-hint{margin-top:4px;font-size:var(--jp-ui-font-size0,11px);color:var(--jp-ui-font-color2,rgba(0,0,0,.6));}",
    ".nbpool-hand-error{width:max-content;max-width:min(340px,calc(100vw - 32px));padding:6px 10px;",
    "  background:#fdecea;color:#8a1c13;border:1px solid #f5c2bd;}",
    "#nbpool-hand-share-mode{padding:0 2px;}",
    ".nbpool-hand-popover-title{margin-bottom:6px;}",
    "#nbpool-hand-share-url{flex:1;min-width:0;}",
    "#nbpool-catch-up-status .nbpool-hand-popover-row{align-items:center;}",
    "#nbpool-catch-up-message{flex:1;min-width:0;}",
    // Who has access, and the helper's own banner: at the top of the page, like nbpool's notices.
    "#nbpool-helpers,#nbpool-helping{position:fixed;top:0;left:50%;transform:translateX(-50%);z-index:10001;",
    "  box-sizing:border-box;max-width:calc(100vw - 16px);width:max-content;padding:4px 8px 4px 12px;",
    "  border:1px solid #9ec5fe;border-top:0;border-radius:0 0 8px 8px;background:#e7f1ff;color:#052c65;",
    "  box-shadow:0 2px 8px rgba(0,0,0,.18);font-family:var(--jp-ui-font-family,system-ui,-apple-system,",
    "  'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif);font-size:var(--jp-ui-font-size1,13px);line-height:1.3;}",
    "#nbpool-helpers *,#nbpool-helping *{box-sizing:border-box;}",
    "#nbpool-helpers[hidden],#nbpool-helping[hidden]{display:none !important;}",
    "#nbpool-helpers.nbpool-helpers-mod-help,#nbpool-helping.nbpool-helping-mod-help{background:#fff3cd;",
    "  border-color:#ffc107;color:#4d3800;}",
    "#nbpool-helping.nbpool-helping-mod-ended{background:#eee;border-color:#bdbdbd;color:#333;}",
    "#nbpool-helpers{display:flex;align-items:center;gap:12px;}",
    ".nbpool-helpers-list{margin:0;padding:0;list-style:none;display:flex;flex-direction:column;gap:2px;}",
    ".nbpool-helpers-item{display:flex;align-items:center;gap:8px;}",
    "#nbpool-helpers .nbpool-helpers-list[hidden],#nbpool-helpers .nbpool-helpers-button[hidden],",
    "#nbpool-helpers .nbpool-helpers-text[hidden]{display:none;}",
    "#nbpool-helpers-toggle{padding:0 6px;}",
    ".nbpool-helpers-text{font-weight:600;}",
    ".nbpool-helpers-until,.nbpool-helping-until{opacity:.75;white-space:nowrap;}",
    ".nbpool-helpers-button{font:inherit;margin:0;height:22px;padding:0 8px;border-radius:6px;cursor:pointer;",
    "  white-space:nowrap;color:inherit;background:rgba(255,255,255,.7);border:1px solid currentColor;}",
    ".nbpool-helpers-button:hover{background:#fff;}",
    ".nbpool-helpers-button:disabled{cursor:default;opacity:.6;}",
    "#nbpool-helping{padding:6px 12px;font-weight:600;}",
    ".nbpool-helping-renew{margin-left:8px;font:inherit;font-weight:400;cursor:pointer;}",
    ".nbpool-catch-up-toolbar[hidden]{display:none !important;}"
  ].join("\n");

  function handApi(method, path, body) {
    var options = {method: method, credentials: "same-origin", cache: "no-store",
                   headers: {"Accept": "application/json"}};
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    return fetch(path, options).then(function (r) {
      return r.text().then(function (text) {
        var data = null;
        try { data = JSON.parse(text); } catch (e) { data = null; }
        return {status: r.status, data: data};
      });
    });
  }

  // nbpool's answer, and not, say, jupyter_server's own /api/me when the image runs alone at base URL "/".
  function isMe(me) {
    return !!me && typeof me === "object" && typeof me.id === "string" && typeof me.name === "string" &&
      (me.hand == null || typeof me.hand === "object") && (me.done == null || typeof me.done === "boolean") &&
      me.viewer !== "helper";
  }

  // /api/me in a helper's browser: whose notebook this is, and what the helper may do.
  function isHelperMe(me) {
    return !!me && typeof me === "object" && me.viewer === "helper" && (me.mode === "watch" || me.mode === "help") &&
      typeof me.name === "string" && (me.attendee == null || typeof me.attendee === "string") &&
      (me.expires == null || typeof me.expires === "number");
  }

  // The helpers /api/me lists (attendee and instructor only); entries not as agreed are left out.
  function helpersOf(me) {
    if (!me || (me.viewer !== "attendee" && me.viewer !== "instructor") || !Array.isArray(me.helpers)) return [];
    return me.helpers.filter(function (h) {
      return !!h && typeof h === "object" && typeof h.id === "string" && h.id !== "" &&
        (h.mode === "watch" || h.mode === "help") && (h.name == null || typeof h.name === "string");
    });
  }

  // The instructor's live notebook, for attendees: a path on this origin, never another site.
  function followUrlOf(me) {
    var url = me && me.viewer === "attendee" ? me.follow_url : null;
    return typeof url === "string" && url.charAt(0) === "/" && url.charAt(1) !== "/" && url.charAt(1) !== "\\" ?
      url : null;
  }

  function canShare(me) {
    return !!me && (me.viewer === "attendee" || me.viewer === "instructor");
  }

  // "14:32" for an epoch time in seconds, or "" when there is none.
  function clock(epoch) {
    if (typeof epoch !== "number" || !isFinite(epoch) || epoch <= 0) return "";
    try {
      return new Date(epoch * 1000).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
    } catch (e) {
      return "";
    }
  }

  function plural(n, one, many) {
    return n + " " + (n === 1 ? one : many);
  }

  // The notebook model of a NotebookPanel (JupyterLab's or Notebook 7's), if it is one and still open.
  function notebookShared(panel) {
    var model = panel && !panel.isDisposed && panel.content && panel.content.model;
    var shared = model && model.sharedModel;
    return shared && typeof shared.insertCells === "function" && typeof shared.transact === "function" &&
      typeof shared.deleteCell === "function" ? shared : null;
  }

  // One transaction that the notebook's undo (Ctrl+Z / Z) takes back as one step: not merged with the
  // attendee's change just before it, nor with the next one (Y.UndoManager merges changes close in time).
  function oneUndoStep(shared, change) {
    var undo = shared.undoManager;
    var stop = function () {
      try {
        if (undo && typeof undo.stopCapturing === "function") undo.stopCapturing();
      } catch (e) { /* undo grouping is a nicety */ }
    };
    stop();
    try {
      shared.transact(change);
    } finally {
      stop();
    }
  }

  function notebookCells(shared) {
    var cells = shared && shared.cells;
    return Array.isArray(cells) ? cells : [];
  }

  // The instructor's cell id a catch-up put on a cell (metadata nbpool.from_instructor), or "".
  function instructorIdOf(cell) {
    var nbpool = null;
    try {
      if (cell && typeof cell.getMetadata === "function") {
        nbpool = cell.getMetadata("nbpool");
      } else if (cell && cell.metadata) {
        nbpool = cell.metadata.nbpool;
      }
    } catch (e) {
      nbpool = null;
    }
    var from = nbpool && typeof nbpool === "object" ? nbpool.from_instructor : null;
    return typeof from === "string" ? from : "";
  }

  // One of the instructor's cells as a new cell of ours: its type and source as plain text, no outputs.
  function instructorCell(cell) {
    if (!cell || typeof cell !== "object" || typeof cell.id !== "string" || !cell.id) return null;
    var type = cell.cell_type;
    if (type !== "code" && type !== "markdown" && type !== "raw") return null;
    var source = cell.source;
    if (Array.isArray(source)) source = source.filter(function (line) { return typeof line === "string"; }).join("");
    if (typeof source !== "string") source = "";
    var made = {cell_type: type, source: source, metadata: {nbpool: {from_instructor: cell.id}}};
    if (type === "code") {
      made.outputs = [];
      made.execution_count = null;
    }
    return made;
  }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    if (text) node.textContent = text;
    return node;
  }

  // app: the JupyterLab/Notebook application; tracker: its INotebookTracker, or null where it has none.
  function HandControl(app, tracker) {
    this.app = app || null;
    this.tracker = tracker || null;
    this.helpersKey = null;   // what #nbpool-helpers shows now, to redraw it only when that changes
    this.helpersSmall = false;  // made smaller (one line) by the attendee, for the helpers then present
    this.helpersSmallSet = null;
    this.sharing = false;     // a share link is being asked for
    this.catchingUp = false;  // a catch-up is on its way
    this.catchUpTimer = null;
    this.copyTimer = null;
    this.toolbarButtons = [];
    this.me = null;
    this.seq = 0;        // requests are numbered as sent; an answer older than the one shown is dropped
    this.shown = 0;
    this.busy = false;   // a change is on its way: its buttons wait for the answer
    this.editingName = false;
    this.savingName = false;
    this.errorTimer = null;
    this.pollTimer = null;
    this.build();
  }

  HandControl.prototype.build = function () {
    var self = this;
    if (!document.getElementById("nbpool-hand-style")) {
      var style = el("style", {id: "nbpool-hand-style"});
      style.textContent = HAND_CSS;
      document.head.appendChild(style);
    }
    var root = this.root = el("div", {id: "nbpool-hand", "class": "nbpool-hand", role: "region",
                                      "aria-label": "Workshop help"});

    var popover = this.popover = el("div", {id: "nbpool-hand-popover", "class": "nbpool-hand-popover",
                                            role: "dialog", "aria-label": "Raise your hand"});
    popover.hidden = true;
    var row = el("div", {"class": "nbpool-hand-popover-row"});
    this.text = el("input", {id: "nbpool-hand-text", "class": "nbpool-hand-input", type: "text",
                             maxlength: String(HAND_TEXT_MAX), autocomplete: "off",
                             placeholder: "What do you need? (optional)", "aria-label": "What do you need? (optional)"});
    this.send = el("button", {id: "nbpool-hand-send", "class": "nbpool-hand-button", type: "button"}, "Send");
    var cancel = el("button", {id: "nbpool-hand-cancel", "class": "nbpool-hand-button", type: "button",
                               "aria-label": "Cancel", title: "Cancel (Esc)"}, "\u00d7");
    row.appendChild(this.text);
    row.appendChild(this.send);
    row.appendChild(cancel);
    popover.appendChild(row);
    popover.appendChild(el("div", {"class": "nbpool-hand-hint", "aria-hidden": "true"},
                           "Enter to send \u00b7 Esc to cancel"));

    this.error = el("div", {id: "nbpool-hand-error", "class": "nbpool-hand-error", role: "alert"});
    this.error.hidden = true;

    var bar = el("div", {"class": "nbpool-hand-bar"});
    this.name = el("button", {id: "nbpool-hand-name", "class": "nbpool-hand-button", type: "button",
                              title: "Change your name"});
    this.nameText = el("span", {"class": "nbpool-hand-name-text"});
    this.name.appendChild(this.nameText);
    this.nameInput = el("input", {id: "nbpool-hand-name-input", "class": "nbpool-hand-input", type: "text",
                                  maxlength: String(HAND_NAME_MAX), autocomplete: "off",
                                  "aria-label": "Your name (Enter to save, Esc to cancel)"});
    this.nameInput.hidden = true;
    this.done = el("button", {id: "nbpool-hand-done", "class": "nbpool-hand-button", type: "button",
                              "aria-pressed": "false"}, "I'm done");
    this.raise = el("button", {id: "nbpool-hand-raise", "class": "nbpool-hand-button", type: "button",
                               "aria-pressed": "false", "aria-expanded": "false",
                               "aria-controls": "nbpool-hand-popover"}, HAND_RAISE_LABEL);
    // Catch me up (attendees of a workshop with an instructor) and Share with a helper (and how).
    this.catchUp = el("button", {id: "nbpool-catch-up", "class": "nbpool-hand-button", type: "button",
                                 title: "Add the instructor's cells, up to the one they ran last, at the end of your " +
                                   "notebook"}, "Catch me up");
    this.catchUp.hidden = true;
    this.share = el("button", {id: "nbpool-hand-share", "class": "nbpool-hand-button", type: "button",
                               "aria-controls": "nbpool-hand-share-popover",
                               title: "Make a one-use link that lets a helper see your notebook"},
                    "Share with a helper");
    this.shareMode = el("select", {id: "nbpool-hand-share-mode", "class": "nbpool-hand-input",
                                   "aria-label": "What the helper may do",
                                   title: "To help: they can edit and run your notebook. To watch: they only see it."});
    this.shareMode.appendChild(el("option", {value: "help"}, "to help"));
    this.shareMode.appendChild(el("option", {value: "watch"}, "to watch"));
    this.share.hidden = true;
    this.shareMode.hidden = true;

    bar.appendChild(this.name);
    bar.appendChild(this.nameInput);
    bar.appendChild(this.catchUp);
    bar.appendChild(this.share);
    bar.appendChild(this.shareMode);
    bar.appendChild(this.done);
    bar.appendChild(this.raise);

    // The link made by "Share with a helper".
    var sharePop = this.sharePopover = el("div", {id: "nbpool-hand-share-popover", "class": "nbpool-hand-popover",
                                                  role: "dialog", "aria-label": "Link for a helper"});
    sharePop.hidden = true;
    this.shareTitle = el("div", {id: "nbpool-hand-share-title", "class": "nbpool-hand-popover-title"});
    var shareRow = el("div", {"class": "nbpool-hand-popover-row"});
    this.shareUrl = el("input", {id: "nbpool-hand-share-url", "class": "nbpool-hand-input", type: "text",
                                 readonly: "readonly", "aria-label": "Link for your helper"});
    this.shareCopy = el("button", {id: "nbpool-hand-share-copy", "class": "nbpool-hand-button", type: "button"},
                        "Copy");
    var shareClose = el("button", {id: "nbpool-hand-share-close", "class": "nbpool-hand-button", type: "button",
                                   "aria-label": "Close", title: "Close (Esc)"}, "\u00d7");
    shareRow.appendChild(this.shareUrl);
    shareRow.appendChild(this.shareCopy);
    shareRow.appendChild(shareClose);
    this.shareHint = el("div", {id: "nbpool-hand-share-expires", "class": "nbpool-hand-hint"});
    sharePop.appendChild(this.shareTitle);
    sharePop.appendChild(shareRow);
    sharePop.appendChild(this.shareHint);

    // What "Catch me up" did, with Undo.
    var status = this.catchUpStatus = el("div", {id: "nbpool-catch-up-status", "class": "nbpool-hand-popover",
                                                 role: "status", "aria-live": "polite"});
    status.hidden = true;
    var statusRow = el("div", {"class": "nbpool-hand-popover-row"});
    this.catchUpMessage = el("span", {id: "nbpool-catch-up-message"});
    this.catchUpUndo = el("button", {id: "nbpool-catch-up-undo", "class": "nbpool-hand-button", type: "button",
                                     title: "Remove the cells this catch-up added"}, "Undo");
    this.catchUpUndo.hidden = true;
    var statusClose = el("button", {id: "nbpool-catch-up-close", "class": "nbpool-hand-button", type: "button",
                                    "aria-label": "Close"}, "\u00d7");
    statusRow.appendChild(this.catchUpMessage);
    statusRow.appendChild(this.catchUpUndo);
    statusRow.appendChild(statusClose);
    this.catchUpHint = el("div", {id: "nbpool-catch-up-hint", "class": "nbpool-hand-hint"});
    this.catchUpHint.hidden = true;
    status.appendChild(statusRow);
    status.appendChild(this.catchUpHint);

    var above = el("div", {"class": "nbpool-hand-above"});
    above.appendChild(this.error);
    above.appendChild(status);
    above.appendChild(sharePop);
    above.appendChild(popover);
    root.appendChild(above);
    root.appendChild(bar);

    // Who else has access to this notebook: at the top of the page, outside the corner panel.
    this.helpers = el("div", {id: "nbpool-helpers", "class": "nbpool-helpers", role: "status",
                              "aria-live": "polite", "aria-label": "Helpers with access to your notebook"});
    this.helpers.hidden = true;
    this.helpers.addEventListener("keydown", function (event) { event.stopPropagation(); });

    this.catchUp.addEventListener("click", function () { self.runCatchUp(null); });
    this.catchUpUndo.addEventListener("click", function () { self.undoCatchUp(); });
    statusClose.addEventListener("click", function () { self.hideCatchUpStatus(); });
    this.share.addEventListener("click", function () { self.makeShareLink(); });
    this.shareCopy.addEventListener("click", function () { self.copyShareLink(); });
    this.shareUrl.addEventListener("focus", function () { self.shareUrl.select(); });
    shareClose.addEventListener("click", function () { self.closeSharePopover(true); });

    this.raise.addEventListener("click", function () { self.onRaise(); });
    this.send.addEventListener("click", function () { self.sendHand(); });
    cancel.addEventListener("click", function () { self.closePopover(true); });
    this.text.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.isComposing) {
        event.preventDefault();
        self.sendHand();
      }
    });
    this.done.addEventListener("click", function () { self.toggleDone(); });
    this.name.addEventListener("click", function () { self.editName(); });
    this.nameInput.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.isComposing) {
        event.preventDefault();
        self.saveName(true);
      } else if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation();
        self.stopEditName(true);
      }
    });
    this.nameInput.addEventListener("blur", function () { self.saveName(false); });
    root.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && !self.popover.hidden) {
        event.preventDefault();
        self.closePopover(true);
      } else if (event.key === "Escape" && !self.sharePopover.hidden) {
        event.preventDefault();
        self.closeSharePopover(true);
      }
      // Keys typed here are the attendee's, not JupyterLab's shortcuts.
      event.stopPropagation();
    });
  };

  // One request to the API; a valid answer is shown, a refusal (400 {"error"}) or failure is said briefly.
  HandControl.prototype.call = function (method, path, body) {
    var self = this;
    var seq = ++this.seq;
    return handApi(method, path, body).then(function (answer) {
      if (answer.status === 200 && isMe(answer.data)) {
        self.show(answer.data, seq);
        return true;
      }
      var said = answer.data && typeof answer.data.error === "string" && answer.data.error;
      self.say(said || (answer.status === 400 ? "That was not accepted." :
                        "Could not reach the workshop server (" + answer.status + "). Please try again."));
      return false;
    }, function () {
      self.say("Could not reach the workshop server. Please try again.");
      return false;
    });
  };

  HandControl.prototype.show = function (me, seq) {
    if (seq < this.shown) return;
    this.shown = seq;
    this.me = me;
    var raised = !!me.hand;
    var done = !!me.done;
    this.root.classList.toggle("nbpool-hand-mod-raised", raised);
    this.root.classList.toggle("nbpool-hand-mod-done", done);
    this.nameText.textContent = me.name;
    this.name.classList.toggle("nbpool-hand-mod-unnamed", !me.named);
    this.name.title = me.named ? "Change your name" : "Set your name, so helpers know who you are";
    this.name.setAttribute("aria-label", "Your name: " + me.name + ". Change it");
    this.raise.textContent = raised ? HAND_LOWER_LABEL : HAND_RAISE_LABEL;
    this.raise.setAttribute("aria-pressed", String(raised));
    var text = raised && me.hand.text ? String(me.hand.text) : "";
    this.raise.title = raised ? "Your hand is up" + (text ? ": " + text : "") + ". Click to lower it." :
      "Ask a helper to come over";
    this.done.setAttribute("aria-pressed", String(done));
    this.done.title = done ? "You said you are done. Click to undo." : "Tell the helpers you have finished";
    if (raised && !this.popover.hidden) this.closePopover(false);
    var shareable = canShare(me);
    this.share.hidden = !shareable;
    this.shareMode.hidden = !shareable;
    if (!shareable && !this.sharePopover.hidden) this.closeSharePopover(false);
    var following = !!followUrlOf(me);
    this.catchUp.hidden = !following;
    this.toolbarButtons.forEach(function (node) { node.hidden = !following; });
    this.renderHelpers(helpersOf(me));
    if (!this.root.parentNode) document.body.appendChild(this.root);
  };

  // --- Who has access: #nbpool-helpers ----------------------------------------------------------------
  // One line per helper (or link not opened yet), each with End, and "End all helper access". It can be
  // made smaller (one line, so that it covers less of the menus); it opens again when someone joins,
  // leaves or changes mode.
  HandControl.prototype.renderHelpers = function (helpers) {
    var self = this;
    var who = function (h) { return h.name ? h.name : "A helper"; };
    var set = JSON.stringify(helpers.map(function (h) { return [h.id, h.mode, !!h.joined]; }));
    if (this.helpersSmall && set !== this.helpersSmallSet) this.helpersSmall = false;
    var small = this.helpersSmall;
    var key = JSON.stringify([small, helpers.map(function (h) {
      return [h.id, h.name || "", h.mode, !!h.joined, clock(h.expires)];
    })]);
    if (key === this.helpersKey) return;
    var hadFocus = this.helpers.contains(document.activeElement);
    this.helpersKey = key;
    this.helpers.textContent = "";
    if (!helpers.length) {
      this.helpersSmall = false;
      this.helpers.hidden = true;
      if (this.helpers.parentNode) this.helpers.parentNode.removeChild(this.helpers);
      return;
    }
    var anyHelp = helpers.some(function (h) { return h.joined && h.mode === "help"; });
    var list = el("ul", {"class": "nbpool-helpers-list"});
    helpers.forEach(function (h) {
      var text;
      if (!h.joined) {
        text = "A helper link is waiting to be opened" +
          (h.mode === "help" ? " (to help: can edit and run)" : " (to watch: read-only)");
      } else if (h.mode === "help") {
        text = who(h) + " is helping in your notebook (can edit and run)";
      } else {
        text = who(h) + " is watching your notebook (read-only)";
      }
      var item = el("li", {"class": "nbpool-helpers-item nbpool-helpers-mod-" + h.mode +
                                    (h.joined ? " nbpool-helpers-mod-joined" : " nbpool-helpers-mod-waiting")});
      item.appendChild(el("span", {"class": "nbpool-helpers-text"}, text));
      var until = clock(h.expires);
      if (until) item.appendChild(el("span", {"class": "nbpool-helpers-until"}, "until " + until));
      var end = el("button", {id: "nbpool-helper-end-" + h.id, "class": "nbpool-helpers-button", type: "button",
                              title: h.joined ? "End " + who(h) + "'s access now" : "Cancel this link",
                              "aria-label": h.joined ? "End " + who(h) + "'s access" : "Cancel the helper link"},
                   "End");
      end.addEventListener("click", function () {
        self.endHelpers("/api/me/helpers/" + encodeURIComponent(h.id));
      });
      item.appendChild(end);
      list.appendChild(item);
    });
    var all = el("button", {id: "nbpool-helpers-end-all", "class": "nbpool-helpers-button", type: "button"},
                 "End all helper access");
    all.addEventListener("click", function () { self.endHelpers("/api/me/helpers"); });
    // The one-line form: who, in short.
    var joined = helpers.filter(function (h) { return h.joined; });
    var waiting = helpers.length - joined.length;
    var names = joined.map(who);
    var summary = names.length === 1 ? names[0] + (joined[0].mode === "help" ? " is helping in your notebook" :
                                                   " is watching your notebook") :
      names.length ? plural(names.length, "helper", "helpers") + " have access to your notebook" : "";
    if (waiting) summary += (summary ? " \u00b7 " : "") + plural(waiting, "helper link", "helper links") + " waiting";
    var brief = el("span", {"class": "nbpool-helpers-text nbpool-helpers-summary"}, summary);
    var toggle = el("button", {id: "nbpool-helpers-toggle", "class": "nbpool-helpers-button", type: "button",
                               "aria-expanded": String(!small),
                               title: small ? "Show who, and End buttons" : "Make this smaller"},
                    small ? "Details \u25be" : "\u25b4");
    toggle.addEventListener("click", function () {
      self.helpersSmall = !self.helpersSmall;
      self.helpersSmallSet = set;
      self.renderHelpers(helpersOf(self.me));
      var again = document.getElementById("nbpool-helpers-toggle");
      if (again) again.focus();
    });
    list.hidden = small;
    all.hidden = small;
    brief.hidden = !small;
    this.helpers.appendChild(list);
    this.helpers.appendChild(brief);
    this.helpers.appendChild(all);
    this.helpers.appendChild(toggle);
    this.helpers.classList.toggle("nbpool-helpers-mod-help", anyHelp);
    this.helpers.classList.toggle("nbpool-helpers-mod-small", small);
    this.helpers.hidden = false;
    if (!this.helpers.parentNode) document.body.appendChild(this.helpers);
    if (hadFocus) (small ? toggle : all).focus();
  };

  HandControl.prototype.endHelpers = function (path) {
    var self = this;
    var buttons = this.helpers.querySelectorAll("button");
    Array.prototype.forEach.call(buttons, function (b) { b.disabled = true; });
    this.call("DELETE", path).then(function () {
      Array.prototype.forEach.call(buttons, function (b) { b.disabled = false; });
      self.poll();
    });
  };

  // --- Share with a helper ----------------------------------------------------------------------------
  HandControl.prototype.makeShareLink = function () {
    var self = this;
    if (this.sharing) return;
    var mode = this.shareMode.value === "watch" ? "watch" : "help";
    this.sharing = true;
    this.share.disabled = true;
    handApi("POST", "/api/me/share", {mode: mode}).then(function (answer) {
      var link = answer.data;
      if (answer.status === 200 && link && typeof link.url === "string" && /^https?:\/\//i.test(link.url)) {
        self.showShareLink(link.url, mode, link.expires);
        self.poll();  // the new link shows at the top as waiting to be opened
      } else {
        var said = link && typeof link.error === "string" && link.error;
        self.say(said || "Could not make a link (" + answer.status + "). Please try again.");
      }
    }, function () {
      self.say("Could not reach the workshop server. Please try again.");
    }).then(function () {
      self.sharing = false;
      self.share.disabled = false;
    });
  };

  HandControl.prototype.showShareLink = function (url, mode, expires) {
    if (!this.popover.hidden) this.closePopover(false);
    this.shareTitle.textContent = mode === "help" ?
      "Send this link to your helper: they can edit and run your notebook." :
      "Send this link to your helper: they can watch your notebook (read-only).";
    this.shareUrl.value = url;
    var until = clock(expires);
    this.shareHint.textContent = "It works once" + (until ? ", until " + until : "") +
      ". You will see them at the top of the page, where you can end their access.";
    this.shareCopy.textContent = "Copy";
    this.sharePopover.hidden = false;
    this.share.setAttribute("aria-expanded", "true");
    this.shareUrl.focus();
  };

  HandControl.prototype.closeSharePopover = function (refocus) {
    var hadFocus = this.sharePopover.contains(document.activeElement);
    this.sharePopover.hidden = true;
    this.share.setAttribute("aria-expanded", "false");
    if (refocus || hadFocus) this.share.focus();
  };

  HandControl.prototype.copyShareLink = function () {
    var self = this;
    var url = this.shareUrl.value;
    var copied = function () {
      self.shareCopy.textContent = "Copied";
      clearTimeout(self.copyTimer);
      self.copyTimer = setTimeout(function () { self.shareCopy.textContent = "Copy"; }, COPIED_MS);
    };
    var byHand = function () {
      var ok = false;
      self.shareUrl.focus();
      self.shareUrl.select();
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      if (ok) copied(); else self.say("Select the link and copy it (Ctrl+C).");
    };
    if (navigator.clipboard && window.isSecureContext && typeof navigator.clipboard.writeText === "function") {
      navigator.clipboard.writeText(url).then(copied, byHand);
    } else {
      byHand();
    }
  };

  // --- Catch me up ------------------------------------------------------------------------------------
  // The notebook to add to: the one in the main area if it is a notebook, else the one last focused.
  HandControl.prototype.currentNotebook = function () {
    var shell = this.app && this.app.shell;
    var current = shell && shell.currentWidget;
    if (this.tracker) {
      if (current && typeof this.tracker.has === "function" && this.tracker.has(current)) return current;
      return this.tracker.currentWidget || null;
    }
    return current && current.content && current.content.model && current.context ? current : null;
  };

  HandControl.prototype.showCatchUp = function (message, hint, undo) {
    var self = this;
    this.catchUpMessage.textContent = message;
    this.catchUpHint.textContent = hint || "";
    this.catchUpHint.hidden = !hint;
    this.catchUpUndo.hidden = !undo;
    this.catchUpUndo.disabled = false;
    this.undoable = undo || null;
    this.catchUpStatus.hidden = false;
    clearTimeout(this.catchUpTimer);
    this.catchUpTimer = setTimeout(function () { self.hideCatchUpStatus(); }, CATCH_UP_STATUS_MS);
  };

  HandControl.prototype.hideCatchUpStatus = function () {
    clearTimeout(this.catchUpTimer);
    this.catchUpStatus.hidden = true;
    this.undoable = null;
  };

  // panel: the notebook whose toolbar button was pressed, or null for the current one.
  HandControl.prototype.runCatchUp = function (panel) {
    var self = this;
    var url = followUrlOf(this.me);
    if (!url || this.catchingUp) return;
    panel = panel || this.currentNotebook();
    var shared = notebookShared(panel);
    if (!shared) {
      this.showCatchUp("Open a notebook first");
      return;
    }
    if (panel.context && panel.context.isReady === false) {
      this.showCatchUp("Your notebook is still opening. Try again in a moment.");
      return;
    }
    this.catchingUp = true;
    this.catchUp.disabled = true;
    handApi("GET", url).then(function (answer) {
      if (answer.status === 404) {
        self.showCatchUp("The instructor has not started yet");
        return;
      }
      var follow = answer.data;
      if (answer.status !== 200 || !follow || typeof follow !== "object" || !Array.isArray(follow.cells)) {
        self.showCatchUp("Could not get the instructor's notebook (" + answer.status + "). Please try again.");
        return;
      }
      if (notebookShared(panel) !== shared) {  // closed while we waited
        self.showCatchUp("Open a notebook first");
        return;
      }
      self.appendFromInstructor(panel, shared, follow);
    }, function () {
      self.showCatchUp("Could not reach the workshop server. Please try again.");
    }).then(function () {
      self.catchingUp = false;
      self.catchUp.disabled = false;
    }, function () {
      self.catchingUp = false;
      self.catchUp.disabled = false;
      self.showCatchUp("Could not add the instructor's cells.");
    });
  };

  HandControl.prototype.appendFromInstructor = function (panel, shared, follow) {
    var cells = follow.cells;
    var current = follow.current;
    var upTo = cells.length;
    if (typeof current === "number" && isFinite(current) && Math.floor(current) === current) {
      upTo = Math.max(0, Math.min(cells.length, current + 1));
    }
    var present = {};
    notebookCells(shared).forEach(function (cell) {
      var from = instructorIdOf(cell);
      if (from) present[from] = true;
    });
    var toAdd = [];
    for (var i = 0; i < upTo; i++) {
      var cell = instructorCell(cells[i]);
      if (!cell || present[cell.metadata.nbpool.from_instructor]) continue;
      present[cell.metadata.nbpool.from_instructor] = true;
      toAdd.push(cell);
    }
    var where = typeof follow.notebook === "string" && follow.notebook ?
      "The instructor is in " + follow.notebook.split("/").pop() + "." : "";
    if (!toAdd.length) {
      this.showCatchUp(upTo ? "You are up to date: nothing new from the instructor" :
                       "The instructor has not run any cell yet", where);
      return;
    }
    var index = notebookCells(shared).length;
    var added = null;
    oneUndoStep(shared, function () {
      added = shared.insertCells(index, toAdd);
    });
    var ids = (added || []).map(function (cell) { return cell && cell.id; }).filter(function (id) {
      return typeof id === "string";
    });
    var name = panel.context && typeof panel.context.path === "string" ? panel.context.path.split("/").pop() : "";
    this.showCatchUp("Added " + plural(toAdd.length, "cell", "cells") + " from the instructor",
                     "At the end of " + (name || "your notebook") + ". Your own cells are unchanged.",
                     {panel: panel, shared: shared, ids: ids});
    var content = panel.content;
    try {
      if (content && typeof content.scrollToItem === "function") {
        var scrolled = content.scrollToItem(index, "start");
        if (scrolled && typeof scrolled.catch === "function") scrolled.catch(function () {});
      }
    } catch (e) { /* scrolling is a nicety */ }
  };

  // Undo: remove the cells that catch-up added, those still there, by their ids; nothing else.
  HandControl.prototype.undoCatchUp = function () {
    var undo = this.undoable;
    if (!undo) return;
    this.catchUpUndo.disabled = true;
    var shared = undo.shared;
    if (notebookShared(undo.panel) !== shared) {
      this.showCatchUp("That notebook is closed: nothing to undo");
      return;
    }
    var wanted = {};
    undo.ids.forEach(function (id) { wanted[id] = true; });
    var indexes = [];
    notebookCells(shared).forEach(function (cell, i) {
      if (cell && wanted[cell.id]) indexes.push(i);
    });
    if (!indexes.length) {
      this.showCatchUp("Those cells are already gone");
      return;
    }
    oneUndoStep(shared, function () {
      for (var i = indexes.length - 1; i >= 0; i--) shared.deleteCell(indexes[i]);
    });
    this.showCatchUp("Removed " + plural(indexes.length, "cell", "cells") + " from the instructor");
  };

  function toolbarHas(toolbar, name) {
    try {
      var names = typeof toolbar.names === "function" ? toolbar.names() : null;
      return !!names && Array.from(names).indexOf(name) >= 0;
    } catch (e) {
      return false;
    }
  }

  // A button in each notebook's toolbar too (where @lumino/widgets is shared), shown like #nbpool-catch-up.
  HandControl.prototype.addToolbarButton = function (panel) {
    var self = this;
    var Widget = sharedModules.widgets && sharedModules.widgets.Widget;
    if (!Widget || !panel || !panel.toolbar || typeof panel.toolbar.insertAfter !== "function") return;
    var node = el("div", {"class": "nbpool-catch-up-toolbar"});
    var button = el("button", {"class": "jp-ToolbarButtonComponent jp-mod-minimal jp-Button", type: "button",
                               title: "Catch me up: add the instructor's cells, up to the one they ran last, at the " +
                                 "end of this notebook"});
    button.appendChild(el("span", {"class": "jp-ToolbarButtonComponent-label"}, "Catch me up"));
    node.appendChild(button);
    button.addEventListener("click", function () { self.runCatchUp(panel); });
    node.hidden = !followUrlOf(this.me);
    var widget = new Widget({node: node});
    // Beside the cell type menu; Notebook 7 fills its toolbar a little after it announces the panel, so
    // wait for that menu a while (TOOLBAR_WAIT_MS) before putting the button at the end instead.
    var tries = Math.ceil(TOOLBAR_WAIT_MS / TOOLBAR_RETRY_MS);
    var place = function () {
      if (widget.isDisposed || panel.isDisposed || widget.parent) return;
      if (toolbarHas(panel.toolbar, "cellType") &&
          panel.toolbar.insertAfter("cellType", "nbpool-catch-up", widget)) return;
      if (tries-- > 0) {
        setTimeout(place, TOOLBAR_RETRY_MS);
      } else {
        panel.toolbar.addItem("nbpool-catch-up", widget);
      }
    };
    place();
    this.toolbarButtons.push(node);
    widget.disposed.connect(function () {
      var at = self.toolbarButtons.indexOf(node);
      if (at >= 0) self.toolbarButtons.splice(at, 1);
    });
  };

  HandControl.prototype.watchNotebooks = function () {
    var self = this;
    var tracker = this.tracker;
    if (!tracker || !sharedModules.widgets || !tracker.widgetAdded) return;
    var add = function (panel) {
      try { self.addToolbarButton(panel); } catch (e) { /* the panel's own toolbar is enough */ }
    };
    if (typeof tracker.forEach === "function") tracker.forEach(add);
    tracker.widgetAdded.connect(function (sender, panel) { add(panel); });
  };

  HandControl.prototype.say = function (message) {
    var self = this;
    this.error.textContent = message;
    this.error.hidden = false;
    clearTimeout(this.errorTimer);
    this.errorTimer = setTimeout(function () { self.error.hidden = true; }, HAND_ERROR_MS);
  };

  HandControl.prototype.setBusy = function (busy) {
    this.busy = busy;
    this.raise.disabled = busy;
    this.send.disabled = busy;
    this.done.disabled = busy;
  };

  HandControl.prototype.change = function (method, path, body) {
    var self = this;
    if (this.busy) return Promise.resolve(false);
    this.setBusy(true);
    return this.call(method, path, body).then(function (ok) {
      self.setBusy(false);
      return ok;
    });
  };

  HandControl.prototype.onRaise = function () {
    var self = this;
    if (this.me && this.me.hand) {
      this.change("DELETE", "/api/hand").then(function () { self.raise.focus(); });
    } else if (this.popover.hidden) {
      if (!this.sharePopover.hidden) this.closeSharePopover(false);
      this.text.value = "";
      this.popover.hidden = false;
      this.raise.setAttribute("aria-expanded", "true");
      this.text.focus();
    } else {
      this.closePopover(true);
    }
  };

  HandControl.prototype.closePopover = function (refocus) {
    var hadFocus = this.popover.contains(document.activeElement);
    this.popover.hidden = true;
    this.raise.setAttribute("aria-expanded", "false");
    if (refocus || hadFocus) this.raise.focus();
  };

  HandControl.prototype.sendHand = function () {
    var self = this;
    var text = this.text.value.trim().slice(0, HAND_TEXT_MAX);
    this.change("POST", "/api/hand", {text: text}).then(function (ok) {
      if (ok) {
        self.closePopover(true);
      } else if (!self.popover.hidden) {
        self.text.focus();
      }
    });
  };

  HandControl.prototype.toggleDone = function () {
    var self = this;
    var done = !(this.me && this.me.done);
    this.change("POST", "/api/me", {done: done}).then(function () { self.done.focus(); });
  };

  HandControl.prototype.editName = function () {
    if (this.editingName) return;
    this.editingName = true;
    this.nameInput.value = this.me ? this.me.name : "";
    this.name.hidden = true;
    this.nameInput.hidden = false;
    this.nameInput.focus();
    this.nameInput.select();
  };

  HandControl.prototype.stopEditName = function (refocus) {
    if (!this.editingName) return;
    this.editingName = false;
    this.savingName = false;
    var hadFocus = document.activeElement === this.nameInput;
    this.name.hidden = false;
    this.nameInput.hidden = true;
    if (refocus && hadFocus) this.name.focus();
  };

  // Enter saves and, when refused, keeps the field open to fix it; leaving the field saves too.
  HandControl.prototype.saveName = function (fromEnter) {
    var self = this;
    if (!this.editingName || this.savingName) return;
    var name = this.nameInput.value.trim();
    if (!name || (this.me && name === this.me.name)) {
      this.stopEditName(fromEnter);
      return;
    }
    this.savingName = true;
    this.nameInput.readOnly = true;
    this.call("POST", "/api/me", {name: name}).then(function (ok) {
      self.savingName = false;
      self.nameInput.readOnly = false;
      if (ok || !fromEnter || document.activeElement !== self.nameInput) {
        self.stopEditName(fromEnter);
      } else {
        self.nameInput.select();
      }
    });
  };

  // Every HAND_POLL_MS, or HELPERS_POLL_MS while helpers have access (so that one who joins or leaves is
  // seen soon). A hidden page is not polled; it asks again as soon as it is shown.
  HandControl.prototype.pollDelay = function () {
    return helpersOf(this.me).length ? Math.min(HELPERS_POLL_MS, HAND_POLL_MS) : HAND_POLL_MS;
  };

  HandControl.prototype.poll = function () {
    var self = this;
    clearTimeout(this.pollTimer);
    var next = function () {
      clearTimeout(self.pollTimer);
      self.pollTimer = setTimeout(function () { self.poll(); }, self.pollDelay());
    };
    if (document.visibilityState === "hidden") {
      next();
      return;
    }
    var seq = ++this.seq;
    handApi("GET", "/api/me").then(function (answer) {
      if (answer.status === 200 && isMe(answer.data)) self.show(answer.data, seq);
    }, function () {}).then(next);
  };

  HandControl.prototype.start = function (me) {
    var self = this;
    this.show(me, ++this.seq);
    this.watchNotebooks();
    this.pollTimer = setTimeout(function () { self.poll(); }, this.pollDelay());
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "visible") self.poll();
    });
  };

  // --- In a helper's browser: whose notebook this is --------------------------------------------------
  // A banner at the top (#nbpool-helping), no hand control. /api/me is polled to keep it true: a refusal
  // (the attendee ended the access) or the expiry time passing says the access has ended.
  var HELPING_POLL_MS = 10000;

  function HelperBanner(me) {
    this.me = me;
    this.ended = false;
    this.node = el("div", {id: "nbpool-helping", "class": "nbpool-helping", role: "status", "aria-live": "polite"});
    this.text = el("span", {"class": "nbpool-helping-text"});
    this.until = el("span", {"class": "nbpool-helping-until"});
    // Another ClassView.help_minutes from now (POST /api/me/renew), while the access lasts.
    this.renew = el("button", {id: "nbpool-helping-renew", type: "button", "class": "nbpool-helping-renew"});
    this.renew.textContent = "Renew";
    this.node.appendChild(this.text);
    this.node.appendChild(this.until);
    this.node.appendChild(this.renew);
    this.pollTimer = null;
    var self = this;
    this.renew.addEventListener("click", function () {
      self.renew.disabled = true;
      handApi("POST", "/api/me/renew", {}).then(function (answer) {
        if (answer.status === 200 && answer.data && typeof answer.data.expires === "number") {
          self.me.expires = answer.data.expires;
        } else if (answer.status === 401 || answer.status === 403) {
          self.ended = true;
        }
        self.renew.disabled = false;
        self.render();
      }, function () { self.renew.disabled = false; });
    });
  }

  HelperBanner.prototype.render = function () {
    var me = this.me;
    var whose = me.attendee ? me.attendee + "'s notebook" : "the attendee's notebook";
    var expired = typeof me.expires === "number" && me.expires * 1000 <= Date.now();
    var ended = this.ended || expired;
    var text = ended ? "Your access to " + whose + " has ended" :
      me.mode === "help" ? "You are helping in " + whose + " \u2014 the attendee sees you" :
      "You are watching " + whose + " \u2014 read-only: what you type is not saved and nothing runs";
    var until = clock(me.expires);
    this.text.textContent = text;
    this.until.textContent = !ended && until ? " \u00b7 until " + until : "";
    this.renew.hidden = ended;
    this.node.className = "nbpool-helping nbpool-helping-mod-" + (ended ? "ended" : me.mode);
    if (!this.node.parentNode) document.body.appendChild(this.node);
  };

  HelperBanner.prototype.poll = function () {
    var self = this;
    var next = function () {
      clearTimeout(self.pollTimer);
      self.pollTimer = setTimeout(function () { self.poll(); }, HELPING_POLL_MS);
    };
    if (document.visibilityState === "hidden") {
      next();
      return;
    }
    handApi("GET", "/api/me").then(function (answer) {
      if (answer.status === 200 && isHelperMe(answer.data)) {
        self.me = answer.data;
        self.ended = false;
      } else if (answer.status === 401 || answer.status === 403) {
        self.ended = true;
      }
      self.render();
    }, function () { self.render(); }).then(next);
  };

  HelperBanner.prototype.start = function () {
    var self = this;
    if (document.getElementById("nbpool-hand-style") === null) {
      var style = el("style", {id: "nbpool-hand-style"});
      style.textContent = HAND_CSS;
      document.head.appendChild(style);
    }
    this.render();
    this.pollTimer = setTimeout(function () { self.poll(); }, HELPING_POLL_MS);
  };

  var handPlugin = {
    id: "nbpool-notice:hand",
    description: "Lets the attendee raise a hand, set a display name and say they are done, shows who helps " +
      "them and catches up with the instructor (nbpool only); tells a helper whose notebook they are in.",
    autoStart: true,
    // optional: [INotebookTracker] is added by get("./extension") when the application shares it.
    activate: function (app, tracker) {
      if (document.getElementById("nbpool-hand") || document.getElementById("nbpool-helping")) return;
      handApi("GET", "/api/me").then(function (answer) {
        if (answer.status !== 200) return;  // not behind nbpool: show nothing
        if (document.getElementById("nbpool-hand") || document.getElementById("nbpool-helping")) return;
        if (isHelperMe(answer.data)) {
          new HelperBanner(answer.data).start();
        } else if (isMe(answer.data)) {
          new HandControl(app, tracker || null).start(answer.data);
        }
      }).catch(function () {});
    }
  };

  // --- Modules the application shares ----------------------------------------------------------------
  // init() is given webpack's share scope: {name: {version: {get, from, eager, loaded}}}. A module is taken
  // the way webpack's singleton consumer takes it (the version already loaded, else the highest), so that
  // INotebookTracker here is the very token the application's plugins provide.
  var shareScope = null;
  var sharedModules = {notebook: null, widgets: null};

  function versionLt(a, b) {
    var x = String(a).split(/[.+-]/), y = String(b).split(/[.+-]/);
    for (var i = 0; i < Math.max(x.length, y.length); i++) {
      var p = parseInt(x[i], 10), q = parseInt(y[i], 10);
      if (isNaN(p)) p = -1;
      if (isNaN(q)) q = -1;
      if (p !== q) return p < q;
    }
    return false;
  }

  function sharedModule(name) {
    try {
      var versions = shareScope && Object.prototype.hasOwnProperty.call(shareScope, name) && shareScope[name];
      if (!versions) return Promise.resolve(null);
      var key = Object.keys(versions).reduce(function (a, b) {
        return !a || (!versions[a].loaded && versionLt(a, b)) ? b : a;
      }, "");
      var entry = key && versions[key];
      if (!entry || typeof entry.get !== "function") return Promise.resolve(null);
      entry.loaded = 1;
      return Promise.resolve(entry.get()).then(function (factory) {
        return typeof factory === "function" ? factory() : null;
      }).catch(function () { return null; });
    } catch (e) {
      return Promise.resolve(null);
    }
  }

  function loadShared() {
    return Promise.all([sharedModule("@jupyterlab/notebook"), sharedModule("@lumino/widgets")]).then(function (got) {
      sharedModules.notebook = got[0];
      sharedModules.widgets = got[1];
      var token = got[0] && got[0].INotebookTracker;
      if (token && typeof token === "object") handPlugin.optional = [token];
    }).catch(function () {});
  }

  var modules = {"./extension": function () {
    return {__esModule: true, default: [noticePlugin, handPlugin]};
  }};
  _JUPYTERLAB = typeof _JUPYTERLAB === "undefined" ? {} : _JUPYTERLAB;
  _JUPYTERLAB["nbpool-notice"] = {
    get: function (name) {
      return (modules[name] ? loadShared() : Promise.resolve()).then(function () {
        return function () {
          if (!modules[name]) throw new Error("Module " + name + " does not exist in nbpool-notice");
          return modules[name]();
        };
      });
    },
    init: function (scope) {
      shareScope = scope && typeof scope === "object" ? scope : null;
    }
  };
})();
