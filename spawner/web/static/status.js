// The operators' page: numbers and a chart of the pool over time, from the
// admin API (the login cookie authenticates these requests). No CDN, no library.
(function () {
  var keys = ["available", "assigned", "launching", "queue"];
  var svg = document.getElementById("chart");
  var W = 720, H = 240, PAD = 28;
  var samples = [];

  function fmt(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 90) return Math.round(seconds) + " s";
    if (seconds < 5400) return Math.round(seconds / 60) + " min";
    return (seconds / 3600).toFixed(1) + " h";
  }

  function draw() {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    if (samples.length < 2) return;
    var t0 = samples[0].t, t1 = samples[samples.length - 1].t;
    var top = Math.max(1, Math.max.apply(null, samples.map(function (s) { return s.capacity || 0; })));
    var ns = "http://www.w3.org/2000/svg";
    for (var g = 0; g <= 4; g++) {
      var y = PAD + (H - 2 * PAD) * g / 4;
      var line = document.createElementNS(ns, "line");
      line.setAttribute("x1", PAD); line.setAttribute("x2", W - 8); line.setAttribute("y1", y); line.setAttribute("y2", y);
      line.setAttribute("stroke", "#e5ebe9"); svg.appendChild(line);
      var label = document.createElementNS(ns, "text");
      label.setAttribute("x", 2); label.setAttribute("y", y + 4); label.setAttribute("font-size", "10");
      label.textContent = Math.round(top * (4 - g) / 4); svg.appendChild(label);
    }
    keys.forEach(function (key) {
      var points = samples.map(function (s) {
        var x = PAD + (W - PAD - 8) * (t1 === t0 ? 1 : (s.t - t0) / (t1 - t0));
        var y = H - PAD - (H - 2 * PAD) * (s[key] || 0) / top;
        return x.toFixed(1) + "," + y.toFixed(1);
      });
      var path = document.createElementNS(ns, "polyline");
      path.setAttribute("points", points.join(" "));
      path.setAttribute("fill", "none"); path.setAttribute("stroke-width", "2");
      path.setAttribute("class", "s-" + key);
      svg.appendChild(path);
    });
  }

  function get(url) {
    return fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}}).then(function (r) {
      if (r.status === 401) { window.location.reload(); }
      return r.json();
    });
  }

  function refresh() {
    get("/api/admin/containers").then(function (data) {
      ["available", "assigned", "launching", "queue", "capacity"].forEach(function (k) {
        document.getElementById(k).textContent = data[k];
      });
      var problems = document.getElementById("problems");
      problems.textContent = (data.problems || []).join("; ");
      problems.hidden = !(data.problems || []).length;
      var kept = data.kept || {};
      document.getElementById("kept").textContent = kept.enabled
        ? "kept work: " + kept.sessions + " sessions, " + (kept.bytes / 1e6).toFixed(1) + " of " +
          (kept.max_total / 1e6).toFixed(0) + " MB"
        : "kept work: off";
      var abuse = data.abuse;
      var ended = abuse ? Object.values(abuse.ended).reduce(function (a, b) { return a + b; }, 0) : 0;
      document.getElementById("abuse").textContent = abuse
        ? "abuse guard: " + ended + " sessions ended, " + abuse.warned + " warned, " + abuse.bans + " bans in force"
        : "";
      samples.push({t: Date.now() / 1000, available: data.available, assigned: data.assigned,
                    launching: data.launching, queue: data.queue, capacity: data.capacity});
      if (samples.length > 720) samples.shift();
      draw();
      var nodes = document.querySelector("#nodes tbody");
      nodes.innerHTML = "";
      (data.nodes || []).forEach(function (n) {
        var tr = document.createElement("tr");
        var gib = function (b) { return (b / 1073741824).toFixed(1) + " GiB"; };
        [n.name, n.address, n.state + (n.availability === "active" ? "" : " (" + n.availability + ")") +
          (n.agent ? (n.agent === "guarded" ? ", guarded" : ", no containers: " + n.agent) : ""), n.image,
         n.spare, n.assigned, n.launching, gib(n.memory_reserved_bytes) + " of " + gib(n.memory_bytes)]
          .forEach(function (v) { var td = document.createElement("td"); td.textContent = v; tr.appendChild(td); });
        nodes.appendChild(tr);
      });
      var body = document.querySelector("#containers tbody");
      body.innerHTML = "";
      data.containers.forEach(function (c) {
        var tr = document.createElement("tr");
        [c.workshop ? c.id + " · " + c.workshop : c.id, c.node || "–", c.state + (c.embedded ? " (embedded)" : ""), fmt(c.age_seconds), c.state === "assigned" ? fmt(c.idle_seconds) : "–", c.websockets,
         c.oom_kills]
          .forEach(function (v) { var td = document.createElement("td"); td.textContent = v; tr.appendChild(td); });
        var td = document.createElement("td");
        if (c.state === "assigned" || c.state === "spare") {
          var b = document.createElement("button"); b.textContent = "remove";
          b.onclick = function () {
            if (confirm("Remove container " + c.id + "? Its visitor loses their work.")) {
              fetch("/api/admin/containers/" + c.id, {method: "DELETE", credentials: "same-origin"}).then(refresh);
            }
          };
          td.appendChild(b);
        }
        tr.appendChild(td); body.appendChild(tr);
      });
    }).catch(function () {});
  }

  get("/api/admin/history").then(function (h) {
    samples = h.samples.concat(samples);
    draw();
  }).catch(function () {});
  var drain = document.getElementById("drain");
  if (drain) drain.onclick = function () {
    if (confirm("Replace every ready spare (for example after an image upgrade)? Containers in use are not touched.")) {
      fetch("/api/admin/drain", {method: "POST", credentials: "same-origin"}).then(refresh);
    }
  };
  refresh();
  setInterval(refresh, 2000);
})();
