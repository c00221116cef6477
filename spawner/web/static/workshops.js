// The status page's section per workshop (several workshops on one service): its numbers, its
// scheduled windows and whether they are on track, and the instructor's pushes with a button to push
// from the workshop's folder. Built with textContent only: names and paths come from the config.
(function () {
  var box = document.getElementById("workshops");
  if (!box) return;

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }

  function when(seconds) {
    return seconds ? new Date(seconds * 1000).toLocaleString() : "–";
  }

  function post(url, body) {
    return fetch(url, {method: "POST", credentials: "same-origin",
                       headers: {"Content-Type": "application/json", "Accept": "application/json"},
                       body: JSON.stringify(body)}).then(function (r) { return r.json(); });
  }

  function pushLine(push) {
    if (!push) return "no push yet";
    var line = "push " + push.id + " of " + push.files.join(", ") + ": " + push.done + " done, " +
               push.failed + " failed, " + push.pending + " to go of " + push.containers + " containers (" +
               push.seconds.toFixed(1) + " s" + (push.finished ? "" : ", under way") + ")";
    return line;
  }

  function section(ws) {
    var s = el("section", null, "workshop");
    var h = el("h2");
    var a = el("a", ws.display_name);
    a.href = ws.url;
    h.appendChild(a);
    h.appendChild(el("small", " " + (ws.name || "") + (ws.active ? "" : " · removed: retiring until its attendees leave")));
    var report = el("a", "its report", "quiet");
    report.href = "/status/report?workshop=" + encodeURIComponent(ws.name);
    h.appendChild(document.createTextNode(" "));
    h.appendChild(report);
    s.appendChild(h);
    s.appendChild(el("p", ws.available + " ready · " + ws.assigned + " in use · " + ws.launching + " starting · " +
                         ws.queue + " waiting · cap " + ws.capacity + (ws.share !== null && ws.share !== undefined ?
                         " (share of the total: " + ws.share + ")" : "") + " · warm " + ws.warm + " · image " + ws.image,
                     "quiet"));
    if ((ws.problems || []).length) s.appendChild(el("p", ws.problems.join("; "), "error"));
    if ((ws.schedule || []).length) {
      var t = el("table");
      var head = el("tr");
      ["window", "spares", "state", "", "raised from"].forEach(function (c) { head.appendChild(el("th", c)); });
      t.appendChild(head);
      ws.schedule.forEach(function (w) {
        var tr = el("tr");
        [w.label, w.warm, w.state, w.note, when(w.raise_at)].forEach(function (c) { tr.appendChild(el("td", c)); });
        tr.title = "lead " + w.lead_seconds + " s: " + w.lead_reason;
        t.appendChild(tr);
      });
      s.appendChild(t);
    }
    var p = el("p", pushLine(ws.push), "quiet push");
    s.appendChild(p);
    if (ws.push && ws.push.results.length) {
      // Every container's part: done (what it did with each file) or failed (why); failures open.
      var details = el("details");
      details.open = ws.push.failed > 0;
      details.appendChild(el("summary", "per container"));
      var ul = el("ul");
      ws.push.results.forEach(function (r) {
        var what = r.result === "failed" ? "failed: " + r.error :
          r.result + (r.new.length ? " · new " + r.new.join(", ") : "") +
          (r.replaced.length ? " · replaced " + r.replaced.join(", ") : "") +
          (r.beside.length ? " · changed by the attendee, new version beside " + r.beside.join(", ") : "") +
          (r.current.length ? " · already current " + r.current.join(", ") : "");
        ul.appendChild(el("li", r.cid + " (" + r.state + "): " + what, r.result === "failed" ? "error" : ""));
      });
      details.appendChild(ul);
      s.appendChild(details);
    }
    var buttons = el("p");
    if (ws.active && ws.push_folder) {
      var b = el("button", "Push the files of " + ws.push_folder, "button");
      b.onclick = function () {
        if (!window.confirm("Copy the files of " + ws.push_folder + " into every container of " + ws.display_name + "?")) return;
        post("/api/admin/workshops/" + ws.name + "/push", {from_folder: true}).then(function (r) {
          if (r.error) window.alert(r.error);
          refresh();
        });
      };
      buttons.appendChild(b);
    }
    if (ws.active && ws.name) {
      var d = el("button", "Replace its spares (drain)", "button quiet");
      d.onclick = function () {
        if (window.confirm("Replace every spare of " + ws.display_name + "? Attendees keep their containers.")) {
          post("/api/admin/drain", {workshop: ws.name}).then(refresh);
        }
      };
      buttons.appendChild(document.createTextNode(" "));
      buttons.appendChild(d);
    }
    s.appendChild(buttons);
    return s;
  }

  function refresh() {
    fetch("/api/admin/workshops", {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { return r.json(); })
      .then(function (data) {
        if (!data.named) { box.hidden = true; return; }
        box.hidden = false;
        while (box.firstChild) box.removeChild(box.firstChild);
        box.appendChild(el("h2", "Workshops" + (data.total_containers ? " · at most " + data.total_containers +
                                                " containers in all" : "")));
        data.workshops.forEach(function (ws) { box.appendChild(section(ws)); });
      });
  }

  refresh();
  setInterval(refresh, 2000);
})();
