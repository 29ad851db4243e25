// Models view: one row per model the service knows, from GET /models.

import { requestJson } from "./api.js";
import { formatBytes, formatCount, formatPercent, h } from "./ui.js";

// Accuracy right after the name, so a phone shows it without scrolling the table sideways.
const COLUMNS = [
  ["name", (m) => m.name],
  ["test accuracy (95% CI)", (m) => testAccuracy(m)],
  ["status", (m) => h("span", { class: `status ${m.status}`, title: m.error ?? "" }, m.status)],
  ["parameters", (m) => formatCount(m.parameters)],
  ["MACs per image", (m) => formatCount(m.macs_per_image)],
  ["size", (m) => sizes(m)],
  ["epochs", (m) => m.epochs ?? "–"],
  ["version", (m) => m.version ?? "–"],
  ["device", (m) => m.device ?? "–"],
  ["runtime", (m) => m.runtime],
];

// The accuracy with its Wilson interval: 10,000 test images leave about +/- 0.85 points.
export function testAccuracy(m) {
  if (m.test_accuracy === null || m.test_accuracy === undefined) return "–";
  const interval = m.test_accuracy_interval;
  if (!interval) return formatPercent(m.test_accuracy);
  const span = `${formatPercent(interval.low)}–${formatPercent(interval.high)}`;
  return h("span", { title: `95% Wilson interval on ${m.test_images ?? "?"} test images` },
    `${formatPercent(m.test_accuracy)} (${span})`);
}

// Each artifact's own size when the service lists the runtimes; else the version folder's,
// which counts every artifact (and the plots) together, and says so.
function sizes(m) {
  const artifacts = (m.runtimes ?? []).filter((r) => typeof r.size_bytes === "number");
  if (!artifacts.length) {
    return h("span", { class: "size folder", title: "The whole version folder: every artifact and plot in it" },
      `${formatBytes(m.size_bytes)} (folder)`);
  }
  return h("ul", { class: "sizes" }, artifacts.map((r) =>
    h("li", { "data-runtime": r.runtime },
      `${r.runtime}${r.precision && r.precision !== "float32" ? ` (${r.precision})` : ""}: ${formatBytes(r.size_bytes)}`)));
}

const text = (value) => (value instanceof Node ? value : String(value ?? ""));

// A table wider than its box scrolls sideways; the cue says so, and goes once it has scrolled.
function cueScrolling() {
  const box = document.getElementById("models-scroll");
  const cue = document.getElementById("models-scroll-cue");
  const update = () => {
    const overflows = box.scrollWidth > box.clientWidth + 1;
    const atEnd = box.scrollLeft + box.clientWidth >= box.scrollWidth - 1;
    box.classList.toggle("overflows", overflows && !atEnd);
    cue.hidden = !overflows;
  };
  if (!box.dataset.cued) {
    box.dataset.cued = "true";
    box.addEventListener("scroll", update, { passive: true });
    window.addEventListener("resize", update);
  }
  update();
}

export async function loadModels() {
  const { models } = await requestJson("/models");
  document.getElementById("models-table").replaceChildren(
    h("thead", {}, h("tr", {}, COLUMNS.map(([name]) => h("th", { scope: "col", "data-column": name }, name)))),
    h("tbody", {}, models.map((m) =>
      h("tr", { "data-model": m.name }, COLUMNS.map(([name, cell]) => h("td", { "data-column": name }, text(cell(m))))))),
  );
  if (!document.getElementById("panel-models").hidden) cueScrolling();
  return models;
}

