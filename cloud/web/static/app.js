// Luling web platform: draws the plots. Everything else is server-rendered
// HTML that htmx swaps in.
(function () {
  "use strict";
  function drawPlots() {
    document.querySelectorAll("[data-plot]").forEach(function (el) {
      if (el.dataset.drawn) return;
      el.dataset.drawn = "1";
      var d = JSON.parse(el.dataset.plot || "{}");
      var t = d.t || [], v = d.v || [];
      if (t.length === 0) {
        el.textContent = "No data in this range yet.";
        return;
      }
      // The y axis runs from 0 to the lot's capacity, or else to the data's
      // highest value; sparse series show their points.
      var top = Number(el.dataset.max) || 0, shown = 0;
      v.forEach(function (x) { if (x !== null) { shown++; if (x > top && !el.dataset.max) top = x * 1.1; } });
      var opts = {
        width: Math.max(300, el.clientWidth || 600),
        height: 240,
        scales: { y: { range: [0, Math.max(1, top)] } },
        series: [{}, { label: el.dataset.label || "", stroke: "#2563eb", fill: "rgba(37,99,235,0.12)", width: 2,
                       spanGaps: false, points: { show: shown < 60, size: 6 } }],
        axes: [{}, { size: 50 }]
      };
      var plot = new uPlot(opts, [t, v], el);
      window.addEventListener("resize", function () {
        plot.setSize({ width: Math.max(300, el.clientWidth), height: 240 });
      });
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", drawPlots);
  } else {
    drawPlots();
  }
})();
