// nbpool's notices as JupyterLab notifications (see nbpool_notice.py), and the attendee's "raise hand"
// control. A federated extension written by hand, with no build step: JupyterLab loads this script, calls
// init() with its shared modules (none are needed here) and get("./extension") for the plugins.
// Notifications go through JupyterLab's own 'apputils:notify' command; where an application has none, a
// banner at the top of the page says it. The hand control is plain DOM fixed at the bottom-right corner
// and talks to nbpool's proxy at the origin's root (/api/me, /api/hand), not to the notebook server.
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
  var HAND_POLL_MS = 10000;
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
    ".nbpool-hand-bar{display:flex;align-items:center;gap:4px;padding:4px;border-radius:8px;",
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
    "  background:#fdecea;color:#8a1c13;border:1px solid #f5c2bd;}"
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
      (me.hand == null || typeof me.hand === "object") && (me.done == null || typeof me.done === "boolean");
  }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    if (text) node.textContent = text;
    return node;
  }

  function HandControl() {
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
    bar.appendChild(this.name);
    bar.appendChild(this.nameInput);
    bar.appendChild(this.done);
    bar.appendChild(this.raise);

    var above = el("div", {"class": "nbpool-hand-above"});
    above.appendChild(this.error);
    above.appendChild(popover);
    root.appendChild(above);
    root.appendChild(bar);

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
    if (!this.root.parentNode) document.body.appendChild(this.root);
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

  // A hidden page is not polled; it asks again as soon as it is shown.
  HandControl.prototype.poll = function () {
    var self = this;
    clearTimeout(this.pollTimer);
    var next = function () {
      clearTimeout(self.pollTimer);
      self.pollTimer = setTimeout(function () { self.poll(); }, HAND_POLL_MS);
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
    this.pollTimer = setTimeout(function () { self.poll(); }, HAND_POLL_MS);
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "visible") self.poll();
    });
  };

  var handPlugin = {
    id: "nbpool-notice:hand",
    description: "Lets the attendee raise a hand, set a display name and say they are done (nbpool only).",
    autoStart: true,
    activate: function () {
      if (document.getElementById("nbpool-hand")) return;
      handApi("GET", "/api/me").then(function (answer) {
        if (answer.status !== 200 || !isMe(answer.data)) return;  // not behind nbpool: show nothing
        if (document.getElementById("nbpool-hand")) return;
        new HandControl().start(answer.data);
      }, function () {});
    }
  };

  var modules = {"./extension": function () {
    return {__esModule: true, default: [noticePlugin, handPlugin]};
  }};
  _JUPYTERLAB = typeof _JUPYTERLAB === "undefined" ? {} : _JUPYTERLAB;
  _JUPYTERLAB["nbpool-notice"] = {
    get: function (name) {
      return Promise.resolve(function () {
        if (!modules[name]) throw new Error("Module " + name + " does not exist in nbpool-notice");
        return modules[name]();
      });
    },
    init: function () {}
  };
})();
