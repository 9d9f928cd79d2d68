/* The Usage page: the window select shows its choice at once, and #usage-chart draws the
   requests, errors and mean latency per bucket that the page left in #usage-data (uPlot). */
(function () {
  "use strict";

  var windowForm = document.getElementById("usage-window");
  var select = document.getElementById("usage-hours");
  if (windowForm && select) {
    select.addEventListener("change", function () { windowForm.submit(); });
  }

  var target = document.getElementById("usage-chart");
  var block = document.getElementById("usage-data");
  if (!target || !block || typeof uPlot === "undefined") return;
  var data = JSON.parse(block.textContent);
  var HEIGHT = 260;

  function width() {
    return Math.max(280, target.clientWidth || 600);
  }

  var options = {
    width: width(),
    height: HEIGHT,
    scales: { x: { time: true }, n: { range: function (u, min, max) { return [0, Math.max(1, max)]; } },
              ms: { range: function (u, min, max) { return [0, Math.max(1, max || 0)]; } } },
    series: [
      {},
      { label: "Requests", scale: "n", stroke: "#2457c5", fill: "rgba(36, 87, 197, 0.12)", width: 2,
        value: function (u, v) { return v == null ? "—" : String(v); } },
      { label: "Errors", scale: "n", stroke: "#b3261e", width: 2,
        value: function (u, v) { return v == null ? "—" : String(v); } },
      { label: "Mean latency", scale: "ms", stroke: "#8a5a00", width: 2, dash: [6, 4], spanGaps: false,
        value: function (u, v) { return v == null ? "—" : v.toFixed(1) + " ms"; } }
    ],
    axes: [
      {},
      { scale: "n", label: "requests" },
      { scale: "ms", side: 1, label: "ms", grid: { show: false } }
    ]
  };

  var chart = new uPlot(options, [data.time, data.requests, data.errors, data.latency_ms], target);
  target.setAttribute("data-points", String(data.time.length));

  var pending = null;
  window.addEventListener("resize", function () {
    clearTimeout(pending);
    pending = setTimeout(function () { chart.setSize({ width: width(), height: HEIGHT }); }, 150);
  });
})();
