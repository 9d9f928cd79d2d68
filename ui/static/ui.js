/* The web UI's few lines of script: confirmations, self-updating parts, fetch with the CSRF token, copy
   buttons, and the scroll cue of tables wider than the screen.
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
            fillFrom(part);
            var newPre = part.querySelector("pre");
            if (newPre && (atBottom || !pre)) newPre.scrollTop = newPre.scrollHeight;
            part.dispatchEvent(new CustomEvent("refreshed", { bubbles: true }));
            return !!part.querySelector("[data-final]");
          });
      });
    });
  }

  /* <span hidden data-fills="some-id">text</span> in a refreshed part: the text of the element with that id,
     elsewhere on the page (a model's description, which its build brings, in the About section above the
     live part), and that element shown only when there is text. */
  function fillFrom(part) {
    part.querySelectorAll("[data-fills]").forEach(function (source) {
      var target = document.getElementById(source.getAttribute("data-fills"));
      if (!target) return;
      var text = source.textContent.trim();
      if (target.textContent !== text) target.textContent = text;
      target.hidden = !text;
    });
  }

  /* <button data-copy="some-id" data-copy-status="other-id" hidden>: shown, and on a click copies the text of
     #some-id to the clipboard. Where the clipboard is out of reach (a page over plain http from another
     host is not a secure context) it selects the text instead, for Ctrl+C, and #other-id says which. */
  function copyButtons() {
    document.querySelectorAll("button[data-copy]").forEach(function (button) {
      var source = document.getElementById(button.getAttribute("data-copy"));
      var status = document.getElementById(button.getAttribute("data-copy-status") || "");
      if (!source) return;
      button.hidden = false;
      function say(message) { if (status) status.textContent = message; }
      function selectInstead() {
        var range = document.createRange();
        range.selectNodeContents(source);
        var selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        var copied = false;
        try { copied = document.execCommand("copy"); } catch (error) { copied = false; }
        say(copied ? "Copied to the clipboard." : "Selected: press Ctrl+C (\u2318C on a Mac) to copy it.");
      }
      button.addEventListener("click", function () {
        var text = source.textContent.trim();
        if (navigator.clipboard && navigator.clipboard.writeText) {
          navigator.clipboard.writeText(text).then(function () { say("Copied to the clipboard."); }, selectInstead);
        } else {
          selectInstead();
        }
      });
    });
  }

  /* A .table-wrap whose table is wider than it (a phone) gets data-overflows: ui.css then shows a note that it
     scrolls sideways, and it becomes a named region the keyboard can focus and scroll with the arrow keys. */
  function markWideTables() {
    document.querySelectorAll(".table-wrap").forEach(function (wrap) {
      var overflows = wrap.clientWidth > 0 && wrap.scrollWidth > wrap.clientWidth + 1;
      if (overflows === wrap.hasAttribute("data-overflows")) return;
      if (overflows) {
        var name = tableName(wrap);
        wrap.setAttribute("data-overflows", "");
        wrap.setAttribute("tabindex", "0");
        wrap.setAttribute("role", "region");
        wrap.setAttribute("aria-label", (name ? name + ": " : "") + "table, scrolls sideways");
      } else {
        ["data-overflows", "tabindex", "role", "aria-label"].forEach(function (name) { wrap.removeAttribute(name); });
      }
    });
  }

  /* The table's own label (aria-labelledby), else its section's heading. */
  function tableName(wrap) {
    var table = wrap.querySelector("table");
    var label = table && document.getElementById(table.getAttribute("aria-labelledby") || "");
    var section = wrap.closest("section");
    var heading = label || (section && section.querySelector("h2, h3"));
    return heading ? heading.textContent.trim() : "";
  }

  var markPending = null;
  function markWideTablesSoon() {
    clearTimeout(markPending);
    markPending = setTimeout(markWideTables, 100);
  }
  window.addEventListener("resize", markWideTablesSoon);
  // A table inside <details> has no width until opened; a live part brings new tables.
  document.addEventListener("toggle", markWideTablesSoon, true);
  document.addEventListener("refreshed", markWideTablesSoon);

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
  function start() {
    refreshParts();
    copyButtons();
    markWideTables();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
