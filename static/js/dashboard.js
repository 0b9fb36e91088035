/* Dashboard charts (templates/trials/dashboard.html): every <canvas data-chart="ID"> is drawn with chart.js
   from the JSON spec in <script id="ID" type="application/json"> that trials.dashboard documents.

   bar / line: labels and datasets as given ("stacked", "horizontal", "percent" change the axes);
   heatmap: a scatter on two category axes, one square per cell, coloured red (0) to green (100) by "v",
   grey when there is nothing to colour; a cell with an "href" opens it (the drill-down) when clicked.
   The numbers behind each chart are in the table under it, so the chart only has to be looked at. */
(function () {
  "use strict";

  const PALETTE = ["#1565c0", "#2e7d32", "#ef6c00", "#6a1b9a", "#c62828", "#00838f", "#5d4037", "#9e9d24", "#ad1457"];

  function heatColor(v) {
    if (v === null || v === undefined) return "#cfd8dc";
    const hue = Math.max(0, Math.min(100, v)) * 1.2;  // 0 red, 60 amber, 120 green
    return "hsl(" + hue + ", 65%, 42%)";
  }

  function heatmap(spec) {
    const cells = spec.cells;
    const side = function (context) {
      const area = context.chart.chartArea;
      if (!area) return 6;
      const w = area.width / Math.max(1, spec.x.length), h = area.height / Math.max(1, spec.y.length);
      // a "rect" point of radius r is a square of side r * sqrt(2)
      return Math.max(2, (Math.min(w * 0.9, h - 2) / 2) / Math.SQRT1_2);
    };
    return {
      type: "scatter",
      data: {
        datasets: [{
          label: spec.v_label || "value",
          data: cells.map(function (c) { return {x: c.x, y: c.y, v: c.v, text: c.text, href: c.href}; }),
          pointStyle: "rect",
          pointRadius: side,
          pointHoverRadius: side,
          backgroundColor: cells.map(function (c) { return heatColor(c.v); }),
          borderWidth: 0,
        }],
      },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        scales: {
          x: {type: "category", labels: spec.x, offset: true, position: "top", grid: {display: false}},
          y: {type: "category", labels: spec.y, offset: true, grid: {display: false}},
        },
        plugins: {
          legend: {display: false},
          tooltip: {callbacks: {label: function (item) {
            const c = item.raw;
            return "Site " + c.y + " " + c.x + ": " + (c.v === null ? "nothing due" : c.v + "% on time") +
              " (" + c.text + ")";
          }}},
        },
        onClick: function (event, elements) {
          if (!elements.length) return;
          const cell = cells[elements[0].index];
          if (cell && cell.href) window.location.href = cell.href;
        },
        onHover: function (event, elements) {
          const cell = elements.length ? cells[elements[0].index] : null;
          event.native.target.style.cursor = cell && cell.href ? "pointer" : "default";
        },
      },
    };
  }

  function series(spec) {
    const horizontal = !!spec.horizontal;
    const valueAxis = {beginAtZero: true, stacked: !!spec.stacked, title: {display: !!spec.y_label, text: spec.y_label}};
    if (spec.percent) valueAxis.max = 100;
    const labelAxis = {stacked: !!spec.stacked};
    return {
      type: spec.type,
      data: {
        labels: spec.labels,
        datasets: spec.datasets.map(function (d, i) {
          const color = d.color || PALETTE[i % PALETTE.length];
          return {label: d.label, data: d.data, backgroundColor: color, borderColor: color,
                  spanGaps: true, tension: 0};
        }),
      },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        indexAxis: horizontal ? "y" : "x",
        scales: horizontal ? {x: valueAxis, y: labelAxis} : {x: labelAxis, y: valueAxis},
        plugins: {legend: {display: spec.datasets.length > 1}},
      },
    };
  }

  function draw(canvas) {
    const source = document.getElementById(canvas.dataset.chart);
    if (!source || typeof Chart === "undefined") return;
    const spec = JSON.parse(source.textContent);
    const existing = Chart.getChart(canvas);
    if (existing) existing.destroy();
    new Chart(canvas, spec.type === "heatmap" ? heatmap(spec) : series(spec));
  }

  function drawAll() {
    document.querySelectorAll("canvas[data-chart]").forEach(draw);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", drawAll);
  else drawAll();
})();
