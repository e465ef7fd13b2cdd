// Draws the dashboard's charts from JSON embedded in the page. No network access: uPlot is
// served by the gateway itself.
(function () {
  "use strict";

  function data(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  function width(el) {
    // The card's width, so a phone screen gets a narrower chart instead of a wider page.
    return Math.max(el.clientWidth || 0, 200);
  }

  // Dollar tick labels with as many decimals as the tick step needs, and more until no two ticks
  // read the same (small costs such as $0.0003 steps would otherwise all show "$0.00"). The labels
  // drawn are kept on the element (data-y-ticks) for tests and assistive tools.
  function usdTicks(el) {
    return function (_u, splits, _axis, _space, incr) {
      var decimals = incr >= 1 ? 0 : Math.min(10, Math.max(2, Math.ceil(-Math.log10(incr) - 1e-9)));
      var labels;
      for (;;) {
        labels = splits.map(function (v) {
          return (v < 0 ? "-$" : "$") + Math.abs(v).toLocaleString("en-US", { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
        });
        var unique = labels.filter(function (l, i) { return labels.indexOf(l) === i; });
        if (unique.length === labels.length || decimals >= 10) break;
        decimals += 1;
      }
      el.dataset.yTicks = JSON.stringify(labels);
      return labels;
    };
  }

  var palette = ["#2563eb", "#16a34a", "#f59e0b", "#dc2626", "#7c3aed", "#0891b2"];

  function lineChart(el, xs, series, money) {
    if (!el || typeof uPlot === "undefined") return;
    var opts = {
      title: el.dataset.title,
      width: width(el),
      height: 220,
      series: [{}].concat(series.map(function (s, i) {
        // Money lines have gaps (unpriced hours): points keep a lone priced hour visible.
        return { label: s.label, stroke: palette[i % palette.length], width: 2, fill: i === 0 ? "rgba(37,99,235,0.08)" : undefined,
                 points: money ? { show: true, size: 5 } : undefined };
      })),
      axes: [{}, money ? { size: 80, values: usdTicks(el) } : { size: 70 }],
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
      // Categories sit on whole numbers; uPlot may also tick between them, and those stay blank.
      axes: [{ values: function (_, ticks) { return ticks.map(function (t) { return Number.isInteger(t) ? labels[t] || "" : ""; }); } },
             { size: 80, values: usdTicks(el) }],
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
    // A bucket whose requests all lack a price has a NULL cost: a gap in the line, not a $0 point.
    lineChart(document.getElementById("chart-cost"), xs, [{ label: "USD", values: col("cost_usd") }], true);
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
      axes: [{ values: function (_, ticks) { return ticks.map(function (t) { return Number.isInteger(t) ? labels[t] || "" : ""; }); } }, { size: 50 }],
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
