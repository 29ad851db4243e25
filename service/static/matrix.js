// The runtime matrix of a comparison over several runtimes: each model on each runtime (speed
// from this run, accuracy from the export's evaluation), and which runtime makes separable
// convolutions pay: their speed-up there against the multiply-adds they save.

import { speedupChart } from "./charts.js";
import { testAccuracy } from "./models.js";
import { formatCount, formatMs, formatPercent, formatRatio, h } from "./ui.js";

const $ = (id) => document.getElementById(id);
const dash = "–";

const COLUMNS = [
  ["p50", "p50 latency", (m) => formatMs(m.latency_ms.p50)],
  ["images-per-second", "images/s", (m) => formatCount(Math.round(m.images_per_second))],
  ["x-tf", "x TF", (m) => (typeof m.speedup_over_tensorflow === "number" ? `${m.speedup_over_tensorflow.toFixed(2)}x` : dash)],
  ["top-1", "top-1 (95% CI)", (m) => testAccuracy(m.runtime_accuracy ?? {})],
  ["agreement", "agrees with fp32", (m) => (typeof m.runtime_accuracy?.agreement === "number" ? formatPercent(m.runtime_accuracy.agreement, 2) : dash)],
];

// One row group per runtime, one row per model in it; headers name both for screen readers.
function matrixTable(result) {
  const { runtimes } = result.matrix;
  return [
    h("caption", { id: "matrix-caption" },
      "Each model on each runtime: latency per engine call and throughput from this run; top-1 " +
      "accuracy and agreement with the fp32 SavedModel from the export's evaluation on the test split."),
    h("thead", {}, h("tr", {},
      h("th", { scope: "col" }, "runtime"), h("th", { scope: "col" }, "model"),
      COLUMNS.map(([key, name]) => h("th", { scope: "col", "data-column": key }, name)))),
    runtimes.map((runtime) => {
      const cells = result.models.filter((m) => m.runtime === runtime);
      return h("tbody", { "data-runtime": runtime }, cells.map((m, index) =>
        h("tr", { "data-runtime": runtime, "data-model": m.model },
          index === 0
            ? h("th", { scope: "rowgroup", rowspan: cells.length },
              runtime, m.precision === "int8" ? h("span", { class: "muted" }, " (int8)") : null)
            : null,
          h("th", { scope: "row" }, m.model),
          COLUMNS.map(([key, , cell]) => {
            const value = cell(m);
            return h("td", { "data-column": key }, value instanceof Node ? value : String(value));
          }))));
    }),
  ];
}

// The sentence to read first: where separable convolutions pay most, and least.
function verdict(matrix) {
  const rows = matrix.separable_speedups.filter((r) => typeof r.speedup === "number");
  if (!rows.length) return "Time both the regular and the separable network to see what separable convolutions buy on each runtime.";
  const share = (r) => (typeof r.depthwise_efficiency === "number"
    ? `, ${formatPercent(r.depthwise_efficiency, 0)} of the ${r.mac_ratio.toFixed(2)}x its multiply-adds allow` : "");
  const best = rows.reduce((a, b) => (b.speedup > a.speedup ? b : a));
  const worst = rows.reduce((a, b) => (b.speedup < a.speedup ? b : a));
  const text = `Separable convolutions pay most on ${best.runtime}: ${best.separable_model} is ` +
    `${formatRatio(best.speedup)} faster there than ${best.regular_model}${share(best)}`;
  return best === worst ? `${text}.` : `${text}; least on ${worst.runtime} (${formatRatio(worst.speedup)}).`;
}

export function showMatrix(result) {
  const section = $("runtime-matrix");
  const matrix = result.matrix;
  section.hidden = !(matrix && matrix.runtimes.length > 1);
  if (section.hidden) return;
  $("matrix-verdict").textContent = verdict(matrix);
  $("matrix-table").replaceChildren(...matrixTable(result).flat());
  const figure = $("speedup-figure");
  figure.hidden = !matrix.separable_speedups.length;
  if (figure.hidden) return;
  const chart = $("speedup-chart");
  // Drawn at the container's own width (measurable once shown), as the latency chart is.
  chart.replaceChildren(speedupChart(matrix, result.models, Math.max(chart.clientWidth, 300)));
  $("speedup-caption").textContent =
    "The separable network's speed-up over the regular one on each runtime (p50 per engine call)" +
    (typeof matrix.mac_ratio === "number"
      ? `, against the ${matrix.mac_ratio.toFixed(2)}x fewer multiply-adds it does (the dashed line: every saved multiply-add turned into time)`
      : " (the models' metadata gives no multiply-add counts to set it against)") +
    ". Beside each runtime: top-1 accuracy on it, separable's vs regular's.";
}
