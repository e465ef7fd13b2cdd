// Draws the dashboard's charts from JSON embedded in the page. No network access: uPlot is
// served by the gateway itself.
(function () {
  "use strict";

  function data(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  function width(el) {
    return Math.max(el.clientWidth || 0, 320);
  }

  var palette = ["#2563eb", "#16a34a", "#f59e0b", "#dc2626", "#7c3aed", "#0891b2"];

  function lineChart(el, xs, series) {
    if (!el || typeof uPlot === "undefined") return;
    var opts = {
      title: el.dataset.title,
      width: width(el),
      height: 220,
      series: [{}].concat(series.map(function (s, i) {
        return { label: s.label, stroke: palette[i % palette.length], width: 2, fill: i === 0 ? "rgba(37,99,235,0.08)" : undefined };
      })),
      axes: [{}, { size: 70 }],
    };
    new uPlot(opts, [xs].concat(series.map(function (s) { return s.values; })), el);
    el.dataset.rendered = "true";
    el.dataset.points = String(xs.length);
  }

  function barChart(el, labels, values, label) {
    if (!el || typeof uPlot === "undefined" || labels.length === 0) return;
    var xs = labels.map(function (_, i) { return i; });
    var opts = {
      title: el.dataset.title,
      width: width(el),
      height: 200,
      scales: { x: { time: false, range: [-0.5, labels.length - 0.5] }, y: { range: function (_, __, max) { return [0, (max || 1) * 1.1]; } } },
      series: [{}, { label: label, stroke: palette[0], fill: "rgba(37,99,235,0.35)", paths: uPlot.paths.bars({ size: [0.6, 60] }), points: { show: false } }],
      axes: [{ values: function (_, ticks) { return ticks.map(function (t) { return labels[t] || ""; }); } }, { size: 70 }],
    };
    new uPlot(opts, [xs, values], el);
    el.dataset.rendered = "true";
    el.dataset.points = String(xs.length);
  }

  var series = data("series-data");
  if (series) {
    var xs = series.map(function (p) { return Date.parse(p.t) / 1000; });
    function col(name) { return series.map(function (p) { return p[name]; }); }
    lineChart(document.getElementById("chart-requests"), xs, [{ label: "requests", values: col("requests") }, { label: "errors", values: col("errors") }]);
    lineChart(document.getElementById("chart-tokens"), xs, [
      { label: "input", values: col("input_tokens") },
      { label: "output", values: col("output_tokens") },
      { label: "cached", values: col("cached_tokens") },
    ]);
    lineChart(document.getElementById("chart-cost"), xs, [{ label: "USD", values: col("cost_usd") }]);
    var total = col("requests").reduce(function (a, b) { return a + b; }, 0);
    document.body.dataset.chartRequests = String(total);
  }

  var providers = data("providers-data");
  if (providers) {
    barChart(document.getElementById("chart-providers"), providers.map(function (p) { return p.key; }), providers.map(function (p) { return p.cost_usd; }), "USD");
  }

  var reviews = data("reviews-data");
  if (reviews && reviews.length && typeof uPlot !== "undefined") {
    // Days are categories here: a time axis over one or two days would span years.
    var el = document.getElementById("chart-reviews");
    var labels = reviews.map(function (d) { return d.day; });
    var idx = labels.map(function (_, i) { return i; });
    var tiers = ["trivial", "lite", "full"];
    new uPlot({
      title: el.dataset.title,
      width: width(el),
      height: 220,
      scales: { x: { time: false, range: [-0.5, labels.length - 0.5] }, y: { range: function (_, __, max) { return [0, (max || 1) * 1.2]; } } },
      series: [{}].concat(tiers.map(function (tier, i) {
        return { label: tier, stroke: palette[i], width: 2, points: { size: 8 } };
      })),
      axes: [{ values: function (_, ticks) { return ticks.map(function (t) { return labels[t] || ""; }); } }, { size: 50 }],
    }, [idx].concat(tiers.map(function (tier) { return reviews.map(function (d) { return d[tier] || 0; }); })), el);
    el.dataset.rendered = "true";
  }

  var evals = data("evals-data");
  if (evals && evals.length) {
    lineChart(document.getElementById("chart-evals"), evals.map(function (p) { return Date.parse(p.t) / 1000; }), [
      { label: "precision", values: evals.map(function (p) { return p.precision; }) },
      { label: "recall", values: evals.map(function (p) { return p.recall; }) },
    ]);
  }
})();
