// Compare view: benchmark both models on the server, then chart and tabulate the result.

import { requestJson, uploadForm } from "./api.js";
import { historyChart, latencyChart } from "./charts.js";
import { formatCount, formatMs, formatPercent, formatRatio, h, showError, whileBusy } from "./ui.js";

export function setUpCompare({ chosenImage }) {
  const form = document.getElementById("compare-form");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!form.reportValidity()) return;
    const params = new URLSearchParams({
      repeats: form.elements.repeats.value,
      batch_size: form.elements.batch_size.value,
    });
    const image = document.getElementById("use-image").checked ? chosenImage() : null;
    const options = image ? { method: "POST", body: uploadForm(image) } : {};
    const controls = [...form.querySelectorAll("input[type=number], button")];
    whileBusy(form, controls, async () => render(await requestJson(`/compare?${params}`, options)));
  });
}

function render(result) {
  document.getElementById("compare-summary").replaceChildren(...sentences(result));
  document.getElementById("compare-table").replaceChildren(table(result));
  document.getElementById("compare-results").hidden = false;
  // Drawn at the container's own width (measurable once shown), so text is never rescaled.
  const chart = document.getElementById("latency-chart");
  chart.replaceChildren(latencyChart(result.models, Math.max(chart.clientWidth, 300)));
}

function sentences({ summary, repeats, batch_size: batchSize, device, input }) {
  // The server's headline states the speed gain, against what, and the accuracy it costs.
  const lines = [`${summary.headline || `${summary.fastest} is ${formatRatio(summary.speedup)} faster at p50`}.`];
  const sizes = [];
  if (summary.parameter_ratio) sizes.push(`${formatRatio(summary.parameter_ratio)} the parameters`);
  if (summary.mac_ratio) sizes.push(`${formatRatio(summary.mac_ratio)} the multiply-adds`);
  if (sizes.length) lines.push(`The largest model has ${sizes.join(" and ")} of the smallest.`);
  if (summary.agreement !== null) lines.push(summary.agreement ? "Both models predict the same label." : "The models predict different labels.");
  lines.push(`${repeats} timed runs of batch size ${batchSize} on ${device}, ${input} input.`);
  return lines.map((line) => h("span", { class: "sentence" }, line, " "));
}

function table({ models }) {
  const rows = [
    ["p50 latency", (m) => formatMs(m.latency_ms.p50)],
    ["p95 latency", (m) => formatMs(m.latency_ms.p95)],
    ["p99 latency", (m) => formatMs(m.latency_ms.p99)],
    ["mean ± std", (m) => `${formatMs(m.latency_ms.mean)} ± ${formatMs(m.latency_ms.std)}`],
    ["min – max", (m) => `${formatMs(m.latency_ms.min)} – ${formatMs(m.latency_ms.max)}`],
    ["throughput", (m) => `${formatCount(Math.round(m.images_per_second))} images/s`],
    ["parameters", (m) => formatCount(m.parameters)],
    ["MACs per image", (m) => formatCount(m.macs_per_image)],
    ["test accuracy", (m) => (m.test_accuracy === null ? "–" : formatPercent(m.test_accuracy))],
    ["runtime", (m) => m.runtime],
    ["prediction", (m) => (m.prediction ? `${m.prediction.label} (${formatPercent(m.prediction.confidence)})` : "–")],
  ];
  return h("tbody", {},
    h("tr", {}, h("td", {}), models.map((m) => h("th", { scope: "col", "data-model": m.model }, m.model))),
    rows.map(([name, cell]) =>
      h("tr", {}, h("th", { scope: "row" }, name),
        models.map((m) => h("td", { "data-model": m.model }, cell(m))))),
  );
}

export async function loadHistories(names) {
  const container = document.getElementById("history-charts");
  const figures = await Promise.all(names.map(async (name, index) => {
    let content;
    try {
      const history = await requestJson(`/models/${encodeURIComponent(name)}/history`);
      content = history.epochs.length ? historyChart(history.epochs, index) : null;
    } catch (error) {
      if (error.status !== 404) showError(error);
    }
    return h("figure", { class: "card history", "data-model": name },
      content ?? h("p", { class: "empty" }, "No training history for this model."),
      h("figcaption", {}, `${name}: accuracy per epoch`));
  }));
  container.replaceChildren(...figures);
}
