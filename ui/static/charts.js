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

  /* The y axis fits the values: from 0 (or the lowest value, when one is negative) to a little above
     the highest. With options.unitInterval (accuracy, F1: capped at 1) it is 0-1 while no value
     passes 1: uPlot's own range pads a flat line at 1 to an axis of 0-2. */
  function fittedRange(options) {
    return function (u, min, max) {
      if (min == null || max == null || !isFinite(min) || !isFinite(max)) return [0, 1];
      if (options.unitInterval && min >= 0 && max <= 1) return [0, 1];
      var low = Math.min(0, min), high = Math.max(0, max);
      var pad = (high - low) * 0.05 || 1;  // all zero: an axis of 0-1
      return [low < 0 ? low - pad : 0, high + pad];
    };
  }

  /* A number as a legend shows it: up to 4 significant digits, no trailing zeros. */
  function readable(value) {
    if (typeof value !== "number" || !isFinite(value)) return "\u2014";
    return String(Number(value.toPrecision(4)));
  }

  function lastOf(values) {
    for (var i = values.length - 1; i >= 0; i--) if (values[i] != null) return values[i];
    return null;
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
     builds the chart afresh when the series' names change (a metric that appears later).
     The legend reads the hovered point, and the latest one (named "latest") otherwise. */
  function lineChart(element, options) {
    options = options || {};
    var height = options.height || DEFAULT_HEIGHT;
    var plot = null, names = "";

    function build(series, data) {
      if (plot) plot.destroy();
      element.textContent = "";
      plot = new uPlot({
        width: widthOf(element), height: height,
        scales: { x: { time: false }, y: { range: fittedRange(options) } },
        axes: [
          { label: options.xLabel || "", incrs: options.integerX === false ? undefined : [1, 2, 5, 10, 20, 50, 100, 200, 500] },
          { label: options.yLabel || "", size: 60 }
        ],
        series: [{
          label: options.xLabel || "x",
          value: function (u, value, index, at) {
            return at == null ? readable(lastOf(u.data[0])) + " (latest)" : readable(value);
          }
        }].concat(series.map(function (one, index) {
          var color = PALETTE[index % PALETTE.length];
          return {
            label: one.label, stroke: color, width: 2, spanGaps: true, points: { show: true, size: 6, fill: color },
            value: function (u, value, seriesIndex, at) {
              return readable(at == null ? lastOf(u.data[seriesIndex]) : value);
            }
          };
        })),
        legend: { show: true },
        // The y axis drawn, as data-y-range="min max": what a reader (or a test) sees of the scale.
        hooks: { draw: [function (u) { element.setAttribute("data-y-range", u.scales.y.min + " " + u.scales.y.max); }] }
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
     on the axis; hovering a bar names it in the legend, which reads the total otherwise. */
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
          {
            label: options.xLabel || "label",
            value: function (u, index) {
              return index == null ? "all " + names.length : names[index];
            }
          },
          {
            label: options.yLabel || "count", fill: PALETTE[0] + "cc", stroke: PALETTE[0],
            paths: uPlot.paths.bars({ size: [0.7, 80] }), points: { show: false },
            value: function (u, value, seriesIndex, at) {
              return readable(at == null ? total(u.data[seriesIndex]) : value);
            }
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

  function total(values) {
    return values.reduce(function (sum, value) { return sum + (value || 0); }, 0);
  }

  window.inferCharts = { lineChart: lineChart, barChart: barChart, palette: PALETTE };
})();
