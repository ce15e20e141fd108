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

  // WebAuthn: registering a security key, and approving a step-up rule with it.
  function b64u(buffer) {
    var bytes = new Uint8Array(buffer), text = "";
    for (var i = 0; i < bytes.length; i++) text += String.fromCharCode(bytes[i]);
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function unb64u(text) {
    var raw = atob(text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4));
    var out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out.buffer;
  }
  function csrfBody(form) {
    var body = new URLSearchParams();
    body.set("csrf_token", form.querySelector("input[name=csrf_token]").value);
    return body;
  }
  function fail(message) {
    var box = document.getElementById("key-error");
    if (box) { box.textContent = message; box.hidden = false; }
  }
  var register = document.getElementById("register-key");
  if (register && window.PublicKeyCredential) {
    register.addEventListener("click", function () {
      var form = document.getElementById("register-form");
      fetch("/console/security-keys/options", {method: "POST", body: csrfBody(form), credentials: "same-origin"})
        .then(function (r) { return r.json(); })
        .then(function (o) {
          o.challenge = unb64u(o.challenge);
          o.user.id = unb64u(o.user.id);
          (o.excludeCredentials || []).forEach(function (c) { c.id = unb64u(c.id); });
          return navigator.credentials.create({publicKey: o});
        })
        .then(function (c) {
          document.getElementById("credential").value = JSON.stringify({
            id: c.id, rawId: b64u(c.rawId), type: c.type,
            response: {clientDataJSON: b64u(c.response.clientDataJSON),
                       attestationObject: b64u(c.response.attestationObject),
                       transports: c.response.getTransports ? c.response.getTransports() : []},
            clientExtensionResults: {}
          });
          form.submit();
        })
        .catch(function (e) { fail("The security key did not register: " + e); });
    });
  }
  var stepUp = document.querySelector("form[data-step-up]");
  var withKey = document.getElementById("approve-key");
  if (stepUp && withKey) {
    withKey.addEventListener("click", function () {
      if (!stepUp.reportValidity()) return;
      fetch(stepUp.getAttribute("data-step-up"), {method: "POST", body: csrfBody(stepUp), credentials: "same-origin"})
        .then(function (r) { return r.json(); })
        .then(function (o) {
          if (o.error) throw o.error;
          o.challenge = unb64u(o.challenge);
          (o.allowCredentials || []).forEach(function (c) { c.id = unb64u(c.id); });
          return navigator.credentials.get({publicKey: o});
        })
        .then(function (a) {
          document.getElementById("assertion").value = JSON.stringify({
            id: a.id, rawId: b64u(a.rawId), type: a.type,
            response: {clientDataJSON: b64u(a.response.clientDataJSON),
                       authenticatorData: b64u(a.response.authenticatorData),
                       signature: b64u(a.response.signature),
                       userHandle: a.response.userHandle ? b64u(a.response.userHandle) : null},
            clientExtensionResults: {}
          });
          var verdict = document.createElement("input");
          verdict.type = "hidden"; verdict.name = "verdict"; verdict.value = "approve";
          stepUp.appendChild(verdict);
          stepUp.submit();
        })
        .catch(function (e) { fail("The security key did not sign: " + e); });
    });
  }

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
