// Draw every <figure class="chart" data-chart='{...}'> with uPlot (the spec comes from
// modelyard/ui/charts.py), on load and after each htmx swap; mark it data-drawn="1" once drawn.
(function () {
  "use strict";
  const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563"];

  function lineOptions(spec, width, height) {
    const series = [{}];
    spec.series.forEach(function (s, i) {
      series.push({
        label: s.label, stroke: COLORS[i % COLORS.length], width: 2,
        facets: [{scale: "x", auto: true}, {scale: "y", auto: true}],
        // A lone point draws no line: draw it as a point (mode 2 ignores points.show).
        paths: s.x.length > 1 ? uPlot.paths.linear() : uPlot.paths.points(),
        points: {show: s.x.length <= 30},
      });
    });
    return {
      mode: 2, width: width, height: height, series: series, legend: {show: true},
      scales: {x: {time: false, auto: true}, y: {auto: true}},
      axes: [{label: spec.x_label}, {label: spec.y_label}],
      cursor: {drag: {x: false, y: false}},
      hooks: spec.diagonal ? {draw: [drawDiagonal]} : {},
    };
  }

  function drawDiagonal(u) {
    const ctx = u.ctx;
    const x0 = u.valToPos(0, "x", true), x1 = u.valToPos(1, "x", true);
    const y0 = u.valToPos(0, "y", true), y1 = u.valToPos(1, "y", true);
    ctx.save();
    ctx.strokeStyle = "#9ca3af";
    ctx.setLineDash([4, 4]);
    ctx.beginPath();
    ctx.moveTo(x0, y0);
    ctx.lineTo(x1, y1);
    ctx.stroke();
    ctx.restore();
  }

  function barOptions(spec, width, height) {
    const series = [{label: spec.x_label}];
    spec.series.forEach(function (s, i) {
      const color = COLORS[i % COLORS.length];
      series.push({label: s.label, stroke: color, fill: color + "55", width: 1,
                   paths: uPlot.paths.bars({size: [0.95, Infinity], align: 1}),
                   points: {show: false}});
    });
    // x holds each bin's left edge: widen the scale by one bin so the last bar shows whole.
    const xs = (spec.series[0] || {x: []}).x;
    const step = xs.length > 1 ? xs[1] - xs[0] : 1;
    const lo = xs.length ? xs[0] : 0, hi = xs.length ? xs[xs.length - 1] + step : 1;
    return {
      width: width, height: height, series: series,
      scales: {x: {time: false, range: [lo, hi]},
               y: {range: function (u, min, max) { return [0, max > 0 ? max * 1.05 : 1]; }}},
      axes: [{label: spec.x_label}, {label: spec.y_label}],
      cursor: {drag: {x: false, y: false}},
    };
  }

  function draw(el) {
    if (el.dataset.drawn === "1" || typeof uPlot === "undefined") {
      return;
    }
    const spec = JSON.parse(el.dataset.chart);
    const width = Math.max(240, Math.min(el.clientWidth || 480, 720));
    const height = parseInt(el.dataset.height || "260", 10);
    let opts, data;
    if (spec.kind === "bars") {
      opts = barOptions(spec, width, height);
      const first = spec.series[0] || {x: [], y: []};
      data = [first.x].concat(spec.series.map(function (s) { return s.y; }));
    } else {
      opts = lineOptions(spec, width, height);
      data = [null].concat(spec.series.map(function (s) { return [s.x, s.y]; }));
    }
    new uPlot(opts, data, el);
    el.dataset.drawn = "1";
  }

  function drawAll(root) {
    (root || document).querySelectorAll("figure.chart[data-chart]").forEach(draw);
  }

  function showError(event) {
    const flash = document.getElementById("flash");
    if (!flash) {
      return;
    }
    let message = event.detail.xhr.statusText || "the request failed";
    try {
      message = JSON.parse(event.detail.xhr.responseText).message || message;
    } catch (e) {
      message = event.detail.xhr.responseText || message;
    }
    flash.textContent = message;
    flash.className = "flash error";
  }

  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  document.addEventListener("htmx:afterSettle", function (event) { drawAll(event.target); });
  document.addEventListener("htmx:responseError", showError);
})();
