/* Small wrappers over the vendored uPlot (ui/static/vendor), for any page:

     var chart = inferCharts.lineChart(element, {xLabel: "epoch", yLabel: "loss"});
     chart.update([1, 2, 3], [{label: "train loss", values: [0.9, 0.5, 0.4]},
                              {label: "validation loss", values: [1.0, null, 0.6]}]);
     inferCharts.barChart(element, ["neg", "pos"], [10, 12], {yLabel: "rows"});

   Charts fill their element's width and follow it when it resizes. A value that is
   null, NaN or infinite is a gap. Needs uPlot.iife.min.js loaded first. */
(function () {
  "use strict";

  var PALETTE = ["#2457c5", "#d9480f", "#1d7a46", "#8a3ffc", "#b3261e", "#0f7c8c", "#8a5a00", "#5b6475"];
  var DEFAULT_HEIGHT = 240;

  function widthOf(element) {
    return Math.max(element.clientWidth || 0, 200);
  }

  function clean(values) {
    return values.map(function (value) {
      return typeof value === "number" && isFinite(value) ? value : null;
    });
  }

  /* Redraw at the element's new width whenever it changes (phone rotation, window resize). */
  function followWidth(element, getPlot, height) {
    if (typeof ResizeObserver === "undefined") return;
    var last = widthOf(element);
    new ResizeObserver(function () {
      var plot = getPlot(), width = widthOf(element);
      if (plot && width !== last) { last = width; plot.setSize({ width: width, height: height }); }
    }).observe(element);
  }

  /* Lines of series over a shared x (epochs, steps, days). update() redraws in place, or
     builds the chart afresh when the series' names change (a metric that appears later). */
  function lineChart(element, options) {
    options = options || {};
    var height = options.height || DEFAULT_HEIGHT;
    var plot = null, names = "";

    function build(series, data) {
      if (plot) plot.destroy();
      element.textContent = "";
      plot = new uPlot({
        width: widthOf(element), height: height,
        scales: { x: { time: false } },
        axes: [
          { label: options.xLabel || "", incrs: options.integerX === false ? undefined : [1, 2, 5, 10, 20, 50, 100, 200, 500] },
          { label: options.yLabel || "", size: 60 }
        ],
        series: [{ label: options.xLabel || "x" }].concat(series.map(function (one, index) {
          var color = PALETTE[index % PALETTE.length];
          return { label: one.label, stroke: color, width: 2, spanGaps: true, points: { show: true, size: 6, fill: color } };
        })),
        legend: { show: true }
      }, data, element);
    }

    followWidth(element, function () { return plot; }, height);
    return {
      update: function (xs, series) {
        var data = [xs].concat(series.map(function (one) { return clean(one.values); }));
        var seriesNames = series.map(function (one) { return one.label; }).join("\u0000");
        if (!plot || seriesNames !== names) { names = seriesNames; build(series, data); }
        else plot.setData(data);
      },
      destroy: function () { if (plot) plot.destroy(); plot = null; }
    };
  }

  /* One bar per label (label counts, usage per day). Long label lists show every n-th name
     on the axis; hovering a bar names it in the legend. */
  function barChart(element, labels, values, options) {
    options = options || {};
    var height = options.height || DEFAULT_HEIGHT;
    var plot = null;

    function shortName(name) {
      name = String(name);
      return name.length > 14 ? name.slice(0, 13) + "\u2026" : name;
    }

    function build(names, counts) {
      if (plot) plot.destroy();
      element.textContent = "";
      var xs = names.map(function (_, index) { return index; });
      plot = new uPlot({
        width: widthOf(element), height: height,
        scales: {
          x: { time: false, range: function () { return [-0.5, names.length - 0.5]; } },
          y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.1 : 1]; } }
        },
        axes: [
          {
            label: options.xLabel || "",
            splits: function (u) {
              var room = Math.max(1, Math.floor(u.bbox.width / (window.devicePixelRatio || 1) / 90));
              var step = Math.ceil(names.length / room);
              return xs.filter(function (index) { return index % step === 0; });
            },
            values: function (u, splits) { return splits.map(function (index) { return shortName(names[index]); }); },
            grid: { show: false }
          },
          { label: options.yLabel || "", size: 60 }
        ],
        series: [
          { label: options.xLabel || "label", value: function (u, index) { return index == null ? "\u2014" : names[index]; } },
          {
            label: options.yLabel || "count", fill: PALETTE[0] + "cc", stroke: PALETTE[0],
            paths: uPlot.paths.bars({ size: [0.7, 80] }), points: { show: false }
          }
        ],
        legend: { show: true }
      }, [xs, clean(counts)], element);
    }

    build(labels, values);
    followWidth(element, function () { return plot; }, height);
    return {
      update: function (newLabels, newValues) { build(newLabels, newValues); },
      destroy: function () { if (plot) plot.destroy(); plot = null; }
    };
  }

  window.inferCharts = { lineChart: lineChart, barChart: barChart, palette: PALETTE };
})();
