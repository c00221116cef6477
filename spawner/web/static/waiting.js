// Poll our place in line; go on as soon as the container is ready.
// The page's <meta refresh> does the same more slowly when scripts are off.
(function () {
  var key = document.currentScript.getAttribute("data-key");
  var meta = document.querySelector('meta[http-equiv="refresh"]');
  if (meta) meta.parentNode.removeChild(meta);
  var position = document.getElementById("position");
  function poll() {
    // Long poll: the server answers as soon as the container is ready (or after 20 s).
    fetch("/api/queue/" + key + "?wait=20", {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { return r.json(); })
      .then(function (data) {
        if (data.ready) { window.location.replace(data.url); return; }
        if (data.error) { window.location.replace("/spawn/wait/" + key); return; }
        position.textContent = data.position > 1 ? "You are number " + data.position + " in line." : "You are next.";
        setTimeout(poll, 100);
      })
      .catch(function () { setTimeout(poll, 1500); });
  }
  setTimeout(poll, 300);
})();
