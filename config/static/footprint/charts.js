/* Draws every <canvas data-chart="ID"> from the JSON in <script id="ID" type="application/json">
   (Django's json_script). The JSON is a Chart.js config: {type, data, options}. Pages never
   write chart code of their own, so every chart on every page looks and behaves the same. */
(function () {
  "use strict";

  const palette = ["#0b5cad", "#e8710a", "#1a7f37", "#a142f4", "#c62828", "#00838f", "#9a6700", "#6d4c41"];

  function draw(canvas) {
    const island = document.getElementById(canvas.dataset.chart);
    if (!island || typeof Chart === "undefined") return null;
    const config = JSON.parse(island.textContent);
    (config.data.datasets || []).forEach(function (dataset, index) {
      const colour = dataset.color || palette[index % palette.length];
      if (!dataset.borderColor) dataset.borderColor = colour;
      if (!dataset.backgroundColor) dataset.backgroundColor = config.type === "line" ? colour + "33" : colour;
      delete dataset.color;
    });
    config.options = Object.assign(
      { responsive: true, maintainAspectRatio: false, animation: false, interaction: { mode: "index", intersect: false } },
      config.options || {}
    );
    if (canvas._fpChart) canvas._fpChart.destroy();
    canvas._fpChart = new Chart(canvas, config);
    return canvas._fpChart;
  }

  function drawAll(root) {
    (root || document).querySelectorAll("canvas[data-chart]").forEach(draw);
  }

  window.footprintCharts = { draw: draw, drawAll: drawAll };
  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
})();
