// nbpool's notices as JupyterLab notifications (see nbpool_notice.py). A federated extension written by
// hand, with no build step: JupyterLab loads this script, calls init() with its shared modules (none are
// needed here) and get("./extension") for the plugin. Notifications go through JupyterLab's own
// 'apputils:notify' command; where an application has none, a banner at the top of the page says it.
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

  var plugin = {
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

  var modules = {"./extension": function () { return {__esModule: true, default: plugin}; }};
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
