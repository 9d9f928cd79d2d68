/* The Usage page: the window select shows its choice at once, and #usage-chart draws the
   requests, errors and mean latency per bucket that the page left in #usage-data (uPlot).
   Requests and errors are bars, each filling its bucket, so that a few requests in one bucket
   read as a bar, not as a line rising out of zero at the chart's edge. The legend reads the
   hovered bucket, and the whole window otherwise. */
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
  var step = data.step_seconds;

  function width() {
    return Math.max(280, target.clientWidth || 600);
  }

  function sum(values) {
    return values.reduce(function (total, value) { return total + (value || 0); }, 0);
  }

  // Over the window: the requests-weighted mean of the buckets' mean latencies.
  var totals = { requests: sum(data.requests), errors: sum(data.errors) };
  totals.latency = totals.requests ? data.latency_ms.reduce(function (total, value, index) {
    return total + (value || 0) * data.requests[index];
  }, 0) / totals.requests : null;

  function count(total) {
    return function (u, value, seriesIndex, at) { return String(at == null ? total : (value || 0)); };
  }

  function when(seconds) {
    return new Date(seconds * 1000).toLocaleString([], { month: "short", day: "numeric", hour: "2-digit",
                                                         minute: "2-digit" });
  }

  var bars = uPlot.paths.bars({ align: 1, size: [0.9, Infinity] });
  var options = {
    width: width(),
    height: HEIGHT,
    scales: {
      // From the first bucket's start to the last one's end: the newest bucket is drawn whole.
      x: { time: true, range: function (u, min, max) { return [min, max + step]; } },
      n: { range: function (u, min, max) { return [0, Math.max(1, max) * 1.1]; } },
      ms: { range: function (u, min, max) { return [0, Math.max(1, max || 0) * 1.1]; } }
    },
    series: [
      { label: "Bucket", value: function (u, value, seriesIndex, at) {
          return at == null ? "the whole window" : when(value) + " \u2013 " + when(value + step);
        } },
      { label: "Requests", scale: "n", stroke: "#2457c5", fill: "rgba(36, 87, 197, 0.55)", width: 1,
        paths: bars, points: { show: false }, value: count(totals.requests) },
      { label: "Errors", scale: "n", stroke: "#b3261e", fill: "rgba(179, 38, 30, 0.75)", width: 1,
        paths: bars, points: { show: false }, value: count(totals.errors) },
      { label: "Mean latency", scale: "ms", stroke: "#8a5a00", width: 2, dash: [6, 4], spanGaps: false,
        points: { show: true, size: 5, fill: "#8a5a00" },
        value: function (u, value, seriesIndex, at) {
          var shown = at == null ? totals.latency : value;
          return shown == null ? "\u2014" : shown.toFixed(1) + " ms";
        } }
    ],
    axes: [
      {},
      { scale: "n", label: "requests" },
      { scale: "ms", side: 1, label: "ms", grid: { show: false } }
    ]
  };

  // An empty bucket draws no bar (a bar of height 0 would still stroke a line along the axis).
  function barsOf(counts) { return counts.map(function (value) { return value ? value : null; }); }

  var chart = new uPlot(options, [data.time, barsOf(data.requests), barsOf(data.errors), data.latency_ms], target);
  target.setAttribute("data-points", String(data.time.length));

  var pending = null;
  window.addEventListener("resize", function () {
    clearTimeout(pending);
    pending = setTimeout(function () { chart.setSize({ width: width(), height: HEIGHT }); }, 150);
  });
})();
