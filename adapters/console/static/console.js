// signoff console: deadline countdowns and live inbox refresh. Pages work without it.
(function () {
  "use strict";
  function left(ms) {
    if (ms <= 0) return "deadline passed";
    var s = Math.floor(ms / 1000), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    s = s % 60;
    return (h ? h + "h " : "") + (h || m ? m + "m " : "") + s + "s left";
  }
  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-deadline]").forEach(function (el) {
      var ms = Date.parse(el.getAttribute("data-deadline")) - now;
      el.textContent = left(ms);
      el.classList.toggle("soon", ms < 120000);
    });
  }
  tick();
  setInterval(tick, 1000);

  // The arguments editor: the JSON must parse (the server checks the schema and the tool).
  document.querySelectorAll("[data-json-editor]").forEach(function (area) {
    var error = document.getElementById("edited-error");
    var button = document.getElementById("approve-edited");
    function check() {
      var problem = "";
      try {
        var value = JSON.parse(area.value);
        if (value === null || typeof value !== "object" || Array.isArray(value)) {
          problem = "The call must be a JSON object.";
        }
      } catch (e) {
        problem = "Not valid JSON: " + e.message;
      }
      if (error) { error.textContent = problem; error.hidden = !problem; }
      if (button) button.disabled = !!problem;
    }
    area.addEventListener("input", check);
    check();
  });

  var inbox = document.querySelector("[data-inbox-version]");
  if (!inbox || !window.fetch) return;
  var seen = inbox.getAttribute("data-inbox-version");
  function poll() {
    fetch("/console/inbox/changes?since=" + encodeURIComponent(seen), {credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (body) {
        if (body && String(body.version) !== String(seen)) { window.location.reload(); return; }
        setTimeout(poll, 1000);
      })
      .catch(function () { setTimeout(poll, 5000); });
  }
  poll();
})();
