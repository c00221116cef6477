// Kept work's times are written in UTC by the server; show them in the visitor's own time.
for (const el of document.querySelectorAll("time[datetime]")) {
  const when = new Date(el.getAttribute("datetime"));
  if (!isNaN(when)) el.textContent = when.toLocaleString([], {dateStyle: "medium", timeStyle: "short"});
}
