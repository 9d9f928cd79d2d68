/* The job page's curves: drawn from the job the page carries, then, while the job runs,
   from the page's JSON route (the API's GET /jobs/{id}) every 1.5 s until it ends, and redraws the loss and metric charts per epoch. #loss-chart's
   data-points says how many epochs are plotted. */
(function () {
  "use strict";

  var section = document.getElementById("job-charts");
  if (!section || !window.infer || !window.inferCharts || !window.uPlot) return;

  var FINAL = ["succeeded", "failed", "cancelled"];
  var LOSSES = ["train_loss", "validation_loss"];
  // Numbers an epoch carries that are not a metric of the model (or, the learning rate, on another scale;
  // train_metrics_rows: how many training rows its train_ metrics read).
  var NOT_METRICS = ["epoch", "step", "elapsed_s", "learning_rate", "train_metrics_rows"].concat(LOSSES);

  var lossElement = document.getElementById("loss-chart");
  var metricElement = document.getElementById("metric-chart");
  var note = document.getElementById("charts-note");
  var lossChart = inferCharts.lineChart(lossElement, { xLabel: "epoch", yLabel: "loss" });
  // Accuracy and F1 are capped at 1: their axis is 0-1 (wider only for a metric past 1, a log loss).
  var metricChart = inferCharts.lineChart(metricElement, { xLabel: "epoch", yLabel: "value", unitInterval: true });

  function isNumber(value) { return typeof value === "number"; }

  function numericKeys(epochs, skip) {
    var keys = [];
    epochs.forEach(function (epoch) {
      Object.keys(epoch).forEach(function (key) {
        if (skip.indexOf(key) < 0 && keys.indexOf(key) < 0 && isNumber(epoch[key])) keys.push(key);
      });
    });
    return keys;
  }

  function series(epochs, keys) {
    return keys.map(function (key) {
      return { label: key.replace(/_/g, " "), values: epochs.map(function (epoch) { return epoch[key]; }) };
    });
  }

  function draw(job) {
    var epochs = (job.epochs || []).slice().sort(function (a, b) { return a.epoch - b.epoch; });
    var xs = epochs.map(function (epoch) { return epoch.epoch; });
    if (epochs.length) {
      var losses = LOSSES.filter(function (key) { return epochs.some(function (e) { return isNumber(e[key]); }); });
      lossChart.update(xs, series(epochs, losses));
      var metrics = numericKeys(epochs, NOT_METRICS);
      if (metrics.length) metricChart.update(xs, series(epochs, metrics));
      else metricElement.textContent = "This task reports no metrics beyond its loss.";
    }
    lossElement.setAttribute("data-points", String(xs.length));
    if (note) {
      note.textContent = epochs.length ? epochs.length + (epochs.length === 1 ? " epoch" : " epochs") +
        (FINAL.indexOf(job.status) >= 0 ? " (" + job.status + ")." : " so far; updating while the job runs.")
        : (FINAL.indexOf(job.status) >= 0 ? "The job " + job.status + " before finishing an epoch."
                                          : "The curves appear as epochs finish.");
    }
  }

  var first = window.infer.pageData("job-data");
  if (first) draw(first);
  if (first && FINAL.indexOf(first.status) >= 0) return;
  var url = section.getAttribute("data-json-url");
  setTimeout(function () {
    window.infer.every(1500, function () {
      return window.infer.getJSON(url).then(function (job) {
        draw(job);
        return FINAL.indexOf(job.status) >= 0;
      });
    });
  }, first ? 1500 : 0);
})();
