// A comparison's answer in words and numbers: the trade-off (speed, accuracy, size, each
// against the model it is measured on), how the run went, and the table of every figure.

import { formatCount, formatMs, formatPercent, formatRatio, h } from "./ui.js";

const points = (fraction) => `${Math.abs(fraction * 100).toFixed(1)} points`;

// As the server's headline writes it (service/core/comparison.py, _p_phrase).
function pPhrase(p) {
  if (p < 0.0001) return "p < 0.0001";
  return p < 0.01 ? `p = ${Number(p.toPrecision(1))}` : `p = ${p.toFixed(2)}`;
}

function accuracyLine(accuracy) {
  if (!accuracy) return "unknown: the models' metadata holds no test evaluation to compare.";
  const { model, versus, difference, difference_interval: interval, mcnemar_p: p, test_images: images } = accuracy;
  const less = difference < 0;
  const text = Math.abs(difference) < 0.0005
    ? `${model} is about as accurate as ${versus}`
    : `${model} is ${points(difference)} ${less ? "less" : "more"} accurate than ${versus}`;
  const details = [];
  if (interval) {
    // Stated in the sentence's own direction, as the server's headline does.
    const [low, high] = less ? [-interval.high, -interval.low] : [interval.low, interval.high];
    details.push(`${Math.round((interval.level ?? 0.95) * 100)}% CI ${(low * 100).toFixed(1)} to ${(high * 100).toFixed(1)} points`);
  }
  if (p !== null && p !== undefined) details.push(`McNemar ${pPhrase(p)}`);
  else details.push("test accuracies not paired image by image");
  if (images) details.push(`${formatCount(images)} test images`);
  return `${text} (${details.join(", ")}).`;
}

// "separable has 6.8x fewer parameters than regular (174,821 vs 1,186,378)".
function sizeLine(models, key, noun) {
  const known = models.filter((m) => m[key]);
  if (known.length < 2) return null;
  const small = known.reduce((a, b) => (b[key] < a[key] ? b : a));
  const large = known.reduce((a, b) => (b[key] > a[key] ? b : a));
  if (small.model === large.model) return null;
  return `${small.model} has ${formatRatio(large[key] / small[key])} fewer ${noun} than ${large.model} ` +
    `(${formatCount(small[key])} vs ${formatCount(large[key])}).`;
}

function runLine(result) {
  const { repeats, requested_repeats: requested, batch_size: batchSize, device, input } = result;
  const elapsed = result.elapsed_s === null || result.elapsed_s === undefined ? "" : ` in ${result.elapsed_s.toFixed(1)} s`;
  return `${formatCount(repeats)} timed runs of batch size ${batchSize}${elapsed} on ${device}, ${input} input` +
    (repeats < requested ? ` (of ${formatCount(requested)} asked for).` : ".");
}

export function summary(result) {
  const { summary: s, models } = result;
  const speed = s.speedup_versus && s.speedup_versus !== s.fastest
    ? `${s.fastest} is ${formatRatio(s.speedup)} faster at p50 latency than ${s.speedup_versus}.`
    : `${s.fastest} alone was timed.`;
  const rows = [
    ["Speed", speed],
    ["Accuracy", accuracyLine(s.accuracy)],
    ["Size", [sizeLine(models, "parameters", "parameters"), sizeLine(models, "macs_per_image", "multiply-adds per image")]
      .filter(Boolean).join(" ") || "–"],
    ["Run", runLine(result)],
  ];
  if (s.agreement !== null && s.agreement !== undefined) {
    rows.push(["Labels", s.agreement ? "Both models predict the same label." : "The models predict different labels."]);
  }
  const parts = [
    // The server's sentence: the speed gain, against what, and the accuracy it costs.
    h("p", { class: "headline" }, s.headline ? `${s.headline}.` : speed),
    h("dl", { class: "trade-off" }, rows.map(([term, text]) =>
      h("div", { "data-row": term.toLowerCase() }, h("dt", {}, term), h("dd", {}, text)))),
  ];
  if (result.stopped_at_budget) {
    parts.push(h("p", { class: "notice budget", id: "budget-notice" },
      `Stopped at the time budget: ${formatCount(result.repeats)} of the ${formatCount(result.requested_repeats)} ` +
      `runs asked for were timed in ${result.elapsed_s?.toFixed(1) ?? "?"} s (the service's ` +
      "SEPCONV_COMPARE_BUDGET_S, warm-up included). Its percentiles rest on those runs only."));
  }
  return parts;
}

export function table({ models }) {
  const rows = [
    ["p50 latency", (m) => formatMs(m.latency_ms.p50)],
    ["p95 latency", (m) => formatMs(m.latency_ms.p95)],
    ["p99 latency", (m) => formatMs(m.latency_ms.p99)],
    ["mean ± std", (m) => `${formatMs(m.latency_ms.mean)} ± ${formatMs(m.latency_ms.std)}`],
    ["min – max", (m) => `${formatMs(m.latency_ms.min)} – ${formatMs(m.latency_ms.max)}`],
    ["throughput at p50", (m) => `${formatCount(Math.round(m.images_per_second))} images/s`],
    ["parameters", (m) => formatCount(m.parameters)],
    ["MACs per image", (m) => formatCount(m.macs_per_image)],
    // This runtime's own when the export recorded it (an int8 artifact scores its own).
    ["test accuracy", (m) => {
      const accuracy = m.runtime_accuracy?.test_accuracy ?? m.test_accuracy;
      return accuracy === null || accuracy === undefined ? "–" : formatPercent(accuracy);
    }],
    ["runtime", (m) => m.runtime],
    ["prediction", (m) => (m.prediction ? `${m.prediction.label} (${formatPercent(m.prediction.confidence)})` : "–")],
  ];
  const several = new Set(models.map((m) => m.runtime)).size > 1;
  return h("tbody", {},
    h("tr", {}, h("td", {}), models.map((m) =>
      h("th", { scope: "col", "data-model": m.model, "data-runtime": m.runtime }, several ? `${m.model} (${m.runtime})` : m.model))),
    rows.map(([name, cell]) =>
      h("tr", {}, h("th", { scope: "row" }, name),
        models.map((m) => h("td", { "data-model": m.model, "data-runtime": m.runtime }, cell(m))))),
  );
}
