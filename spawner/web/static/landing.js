// The landing page takes no container itself: this script moves on to /spawn
// (a link preview or crawler never runs it). Without scripts, the button does.
(function () {
  var target = document.currentScript.getAttribute("data-spawn");
  document.getElementById("start").style.display = "none";
  document.getElementById("moving").className = "quiet";
  window.location.replace(target);
})();
