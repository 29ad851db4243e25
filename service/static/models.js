// Models view: one row per model the service knows, from GET /models.

import { requestJson } from "./api.js";
import { formatBytes, formatCount, formatPercent, h } from "./ui.js";

const COLUMNS = [
  ["name", (m) => m.name],
  ["version", (m) => m.version ?? "–"],
  ["status", (m) => h("span", { class: `status ${m.status}`, title: m.error ?? "" }, m.status)],
  ["parameters", (m) => formatCount(m.parameters)],
  ["MACs per image", (m) => formatCount(m.macs_per_image)],
  ["size", (m) => formatBytes(m.size_bytes)],
  ["test accuracy (95% CI)", (m) => testAccuracy(m)],
  ["epochs", (m) => m.epochs ?? "–"],
  ["device", (m) => m.device ?? "–"],
  ["runtime", (m) => m.runtime],
];

// The accuracy with its Wilson interval: 10,000 test images leave about +/- 0.85 points.
function testAccuracy(m) {
  if (m.test_accuracy === null || m.test_accuracy === undefined) return "–";
  const interval = m.test_accuracy_interval;
  if (!interval) return formatPercent(m.test_accuracy);
  const span = `${formatPercent(interval.low)}–${formatPercent(interval.high)}`;
  return h("span", { title: `95% Wilson interval on ${m.test_images ?? "?"} test images` },
    `${formatPercent(m.test_accuracy)} (${span})`);
}

const text = (value) => (value instanceof Node ? value : String(value ?? ""));

export async function loadModels() {
  const { models } = await requestJson("/models");
  document.getElementById("models-table").replaceChildren(
    h("thead", {}, h("tr", {}, COLUMNS.map(([name]) => h("th", { scope: "col" }, name)))),
    h("tbody", {}, models.map((m) =>
      h("tr", { "data-model": m.name }, COLUMNS.map(([, cell]) => h("td", {}, text(cell(m))))))),
  );
  return models;
}
