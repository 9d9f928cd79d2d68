/* The web UI's few lines of script: confirmations, self-updating parts, fetch with the CSRF token.
   Pages work without it except for live updates, uploads and charts. No inline scripts (the
   Content-Security-Policy forbids them): pages pass data in data-* attributes or
   <script type="application/json"> blocks, read here. */
(function () {
  "use strict";

  function csrf() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  /* fetch() with the session cookie and, for anything but GET, the CSRF header. */
  function send(url, options) {
    options = options || {};
    var headers = Object.assign({ "Accept": "application/json" }, options.headers || {});
    if ((options.method || "GET").toUpperCase() !== "GET") headers["X-CSRF-Token"] = csrf();
    return fetch(url, Object.assign({ credentials: "same-origin" }, options, { headers: headers }));
  }

  function getJSON(url) {
    return send(url).then(function (response) {
      if (!response.ok) throw new Error(url + ": HTTP " + response.status);
      return response.json();
    });
  }

  /* Call `step` every `ms` until it resolves to true (finished) or the page is left. */
  function every(ms, step) {
    var timer = null;
    function tick() {
      Promise.resolve().then(step).then(function (finished) {
        if (!finished) timer = setTimeout(tick, ms);
      }, function () { timer = setTimeout(tick, ms * 2); });
    }
    tick();
    return function stop() { clearTimeout(timer); };
  }

  /* <div data-refresh-url="..." data-refresh-ms="2000">: replaced by the URL's HTML
     until that HTML holds an element with data-final (a finished build, job or parse). */
  function refreshParts() {
    document.querySelectorAll("[data-refresh-url]").forEach(function (part) {
      if (part.querySelector("[data-final]")) return;
      var ms = parseInt(part.getAttribute("data-refresh-ms") || "2000", 10);
      every(ms, function () {
        return send(part.getAttribute("data-refresh-url"), { headers: { "Accept": "text/html" } })
          .then(function (response) {
            if (response.status === 401) { window.location.reload(); return true; }
            if (!response.ok) throw new Error("HTTP " + response.status);
            return response.text();
          })
          .then(function (html) {
            if (html === true) return true;
            var pre = part.querySelector("pre");
            var atBottom = pre && pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
            part.innerHTML = html;
            var newPre = part.querySelector("pre");
            if (newPre && (atBottom || !pre)) newPre.scrollTop = newPre.scrollHeight;
            part.dispatchEvent(new CustomEvent("refreshed", { bubbles: true }));
            return !!part.querySelector("[data-final]");
          });
      });
    });
  }

  /* <form data-confirm="Delete model x?">: asks first. */
  document.addEventListener("submit", function (event) {
    var question = event.target.getAttribute && event.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });

  /* The JSON a page left in <script type="application/json" id="...">. */
  function pageData(id) {
    var block = document.getElementById(id);
    return block ? JSON.parse(block.textContent) : null;
  }

  /* A page answering a POST that a reload must not send again (a new key, shown once) carries
     data-forget-post: its history entry becomes a GET of the same URL. */
  if (document.querySelector("[data-forget-post]")) window.history.replaceState(null, "", window.location.href);

  window.infer = { csrf: csrf, send: send, getJSON: getJSON, every: every, pageData: pageData };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", refreshParts);
  else refreshParts();
})();
