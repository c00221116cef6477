// Poll our place in line; go on as soon as the container is ready.
// The page's <meta refresh> does the same more slowly when scripts are off. It sits in <noscript>, so a
// browser running this never has it: removing it from here raced with its timer when this script came
// late, and two requests for a place just served then left the second on the "expired" page.
(function () {
  var key = document.currentScript.getAttribute("data-key");
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
