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
      var opts = {
        width: Math.max(300, el.clientWidth || 600),
        height: 240,
        scales: { y: { range: [0, Math.max(1, Number(el.dataset.max) || 0)] } },
        series: [{}, { label: el.dataset.label || "", stroke: "#2563eb", fill: "rgba(37,99,235,0.12)", width: 2 }],
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
