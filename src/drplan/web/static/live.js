// Live pages: the server's change stream (/api/v1/events) reloads what the page shows
// when it changed: an incident's page on its incident's changes, the overview on any.
// A reload waits while someone is typing in a form, and happens when they leave it.
(() => {
  const watch = document.body.dataset.live;
  if (!watch || !window.EventSource) return;
  let due = false;
  const typing = () => {
    const el = document.activeElement;
    return el && ["INPUT", "SELECT", "TEXTAREA"].includes(el.tagName);
  };
  const reload = () => {
    if (typing()) {
      due = true;
      return;
    }
    location.reload();
  };
  document.addEventListener("focusout", () => { if (due) setTimeout(reload, 0); });
  const source = new EventSource("/api/v1/events");
  source.addEventListener("incident", (event) => {
    const id = JSON.parse(event.data).id;
    if (watch === "overview" || watch === "incident:" + id) reload();
  });
  for (const kind of ["runs", "assessment"]) {
    source.addEventListener(kind, () => { if (watch === "overview") reload(); });
  }
})();
