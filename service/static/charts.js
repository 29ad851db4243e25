// Inline SVG charts drawn from API numbers: no chart library, so the page works offline.

import { formatMs, formatPercent, formatRatio, s } from "./ui.js";

// Round axis steps (1, 2 or 5 times a power of ten) so tick labels read cleanly.
function niceTicks(max, count = 5) {
  const raw = max / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((m) => m >= raw);
  const ticks = [];
  for (let i = 0; ticks.length === 0 || ticks[ticks.length - 1] < max; i += 1) {
    ticks.push(Number((i * step).toPrecision(6)));
  }
  return ticks;
}

// One colour per model (not per row), so a model keeps its colour on every runtime.
const seriesIndex = (entries) => {
  const models = [...new Set(entries.map((e) => e.model))];
  return (entry) => models.indexOf(entry.model);
};

// "regular" alone, or "regular (onnxruntime)" when the entries span several runtimes.
const entryName = (entries) => (new Set(entries.map((e) => e.runtime)).size > 1
  ? (entry) => `${entry.model} (${entry.runtime})`
  : (entry) => entry.model);

export function latencyChart(entries, width = 560) {
  // Names sit above their rows rather than beside them, so a phone-wide chart keeps its plot.
  const [left, right, row] = [12, 92, 56];
  const height = 16 + row * entries.length + 40;
  const ticks = niceTicks(Math.max(...entries.map((e) => e.latency_ms.max)) || 1);
  const top = ticks[ticks.length - 1];
  const x = (ms) => left + ((width - left - right) * ms) / top;
  const axisY = height - 40;

  const grid = ticks.map((t) =>
    s("g", { class: "tick" },
      s("line", { x1: x(t), x2: x(t), y1: 8, y2: axisY }),
      s("text", { x: x(t), y: axisY + 16, "text-anchor": "middle" }, String(t))),
  );
  const series = seriesIndex(entries);
  const name = entryName(entries);
  const rows = entries.map((entry, index) => {
    const l = entry.latency_ms;
    const y = 16 + row * index + row / 2 + 8;
    return s("g", { class: `series series-${series(entry)}`, "data-model": entry.model, "data-runtime": entry.runtime },
      s("title", {}, `${name(entry)}: min ${formatMs(l.min)}, p50 ${formatMs(l.p50)}, ` +
        `p95 ${formatMs(l.p95)}, p99 ${formatMs(l.p99)}, max ${formatMs(l.max)}`),
      s("text", { x: left, y: y - 16, class: "name" }, name(entry)),
      s("line", { class: "whisker", x1: x(l.min), x2: x(l.max), y1: y, y2: y }),
      s("rect", { class: "box", x: x(l.p50), y: y - 8, width: Math.max(x(l.p99) - x(l.p50), 1), height: 16 }),
      ["p50", "p95", "p99"].map((key) =>
        s("line", { class: `mark ${key}`, x1: x(l[key]), x2: x(l[key]), y1: y - 12, y2: y + 12 })),
      s("text", { x: x(l.max) + 8, y: y + 4, class: "value" }, `p50 ${formatMs(l.p50)}`),
    );
  });
  const description = entries
    .map((e) => `${name(e)}: p50 ${formatMs(e.latency_ms.p50)}, p99 ${formatMs(e.latency_ms.p99)}`)
    .join("; ");
  return s("svg", {
    viewBox: `0 0 ${width} ${height}`, class: "latency-chart", role: "img",
    "aria-label": `Latency distribution. ${description}`,
  },
  grid,
  s("line", { class: "axis", x1: left, x2: width - right, y1: axisY, y2: axisY }),
  s("text", { class: "axis-title", x: (left + width - right) / 2, y: axisY + 34, "text-anchor": "middle" }, "latency (ms)"),
  rows);
}

// The separable network's speed-up over the regular one on each runtime, a bar each, against
// the multiply-add ratio (a dashed line: the speed-up if every saved MAC saved its time), with
// both networks' top-1 accuracy on that runtime beside the runtime's name.
export function speedupChart(matrix, entries, width = 560) {
  const [left, right, row, head] = [12, 100, 58, 24];
  const rows = matrix.separable_speedups.filter((r) => typeof r.speedup === "number");
  const macRatio = matrix.mac_ratio;
  const height = head + row * rows.length + 40;
  const ticks = niceTicks(Math.max(macRatio ?? 0, ...rows.map((r) => r.speedup)) || 1);
  const top = ticks[ticks.length - 1];
  const x = (ratio) => left + ((width - left - right) * ratio) / top;
  const axisY = height - 40;
  const accuracyOf = (model, runtime) =>
    entries.find((e) => e.model === model && e.runtime === runtime)?.runtime_accuracy?.test_accuracy;
  const top1 = (r) => {
    const [separable, regular] = [accuracyOf(r.separable_model, r.runtime), accuracyOf(r.regular_model, r.runtime)];
    return typeof separable === "number" && typeof regular === "number"
      ? `top-1 ${formatPercent(separable)} vs ${formatPercent(regular)}` : "top-1 unknown";
  };
  const share = (r) => (typeof r.depthwise_efficiency === "number" ? ` (${formatPercent(r.depthwise_efficiency, 0)})` : "");

  const grid = ticks.map((t) =>
    s("g", { class: "tick" },
      s("line", { x1: x(t), x2: x(t), y1: head, y2: axisY }),
      s("text", { x: x(t), y: axisY + 16, "text-anchor": "middle" }, `${t}x`)));
  const reference = typeof macRatio === "number"
    ? s("g", { class: "mac-ratio" },
      s("line", { x1: x(macRatio), x2: x(macRatio), y1: head - 6, y2: axisY }),
      s("text", { x: x(macRatio), y: head - 10, "text-anchor": "middle" }, `${macRatio.toFixed(2)}x fewer MACs`))
    : null;
  const bars = rows.map((r, index) => {
    const y = head + row * index + row / 2 + 8;
    return s("g", {
      class: "speedup series-1", "data-runtime": r.runtime,
      "data-speedup": r.speedup, "data-efficiency": r.depthwise_efficiency ?? "",
    },
    s("title", {}, `${r.runtime}: separable ${formatRatio(r.speedup)} faster than regular${share(r)}; ${top1(r)}`),
    s("text", { x: left, y: y - 16, class: "name" }, r.runtime),
    s("text", { x: width - 12, y: y - 16, class: "accuracy", "text-anchor": "end" }, top1(r)),
    s("rect", { class: "bar", x: left, y: y - 8, width: Math.max(x(r.speedup) - left, 1), height: 16 }),
    s("text", { x: x(r.speedup) + 8, y: y + 4, class: "value" }, `${formatRatio(r.speedup)}${share(r)}`));
  });
  const description = rows.map((r) => `${r.runtime}: ${formatRatio(r.speedup)}${share(r)}, ${top1(r)}`).join("; ");
  return s("svg", {
    viewBox: `0 0 ${width} ${height}`, class: "speedup-chart", role: "img",
    "aria-label": "The separable network's speed-up over the regular one per runtime" +
      (typeof macRatio === "number" ? `, against its ${macRatio.toFixed(2)}x fewer multiply-adds` : "") +
      `. ${description}`,
  },
  grid, reference,
  s("line", { class: "axis", x1: left, x2: width - right, y1: axisY, y2: axisY }),
  s("text", { class: "axis-title", x: (left + width - right) / 2, y: axisY + 34, "text-anchor": "middle" },
    "speed-up of separable over regular (p50)"),
  bars);
}

// Both models' accuracy per epoch on one chart: training solid, validation dashed, each model
// in its colour, and a ring with a dotted line on the epoch whose weights were kept.
export function historyChart(models, width = 720, height = 300) {
  const [left, right, top, bottom] = [44, 16, 14, 56 + 18 * models.length];
  const plotBottom = height - bottom;
  const lastEpoch = Math.max(2, ...models.flatMap((m) => m.epochs.map((e, i) => e.epoch ?? i + 1)));
  const x = (epoch) => left + ((width - left - right) * (epoch - 1)) / (lastEpoch - 1);
  const y = (accuracy) => top + (plotBottom - top) * (1 - accuracy);
  const kinds = [
    { key: "accuracy", name: "training", class: "train" },
    { key: "val_accuracy", name: "validation", class: "validation" },
  ];
  const step = Math.ceil(lastEpoch / 10);

  const yTicks = [0, 0.25, 0.5, 0.75, 1].map((a) =>
    s("g", { class: "tick" },
      s("line", { x1: left, x2: width - right, y1: y(a), y2: y(a) }),
      s("text", { x: left - 6, y: y(a) + 4, "text-anchor": "end" }, formatPercent(a, 0))));
  const xTicks = Array.from({ length: lastEpoch }, (_, i) => i + 1)
    .filter((epoch) => (epoch - 1) % step === 0 || epoch === lastEpoch)
    .map((epoch) => s("text", { class: "tick", x: x(epoch), y: plotBottom + 16, "text-anchor": "middle" }, String(epoch)));

  const series = models.map((model) => {
    const lines = kinds.map((kind) => {
      const points = model.epochs.map((e, i) => [e.epoch ?? i + 1, e[kind.key]])
        .filter(([, value]) => typeof value === "number");
      return s("g", { class: `line ${kind.class}` },
        s("polyline", { points: points.map(([epoch, v]) => `${x(epoch)},${y(v)}`).join(" ") }),
        points.map(([epoch, v]) => s("circle", { cx: x(epoch), cy: y(v), r: 2.5 },
          s("title", {}, `${model.name}, epoch ${epoch}: ${kind.name} accuracy ${formatPercent(v)}`))));
    });
    const kept = model.epochs.find((e, i) => (e.epoch ?? i + 1) === model.restoredEpoch);
    const marker = kept && typeof kept.val_accuracy === "number"
      ? s("g", { class: "restored", "data-epoch": model.restoredEpoch },
        s("line", { x1: x(model.restoredEpoch), x2: x(model.restoredEpoch), y1: top, y2: plotBottom }),
        s("circle", { cx: x(model.restoredEpoch), cy: y(kept.val_accuracy), r: 6 },
          s("title", {}, `${model.name}: the weights of epoch ${model.restoredEpoch} were kept ` +
            `(validation accuracy ${formatPercent(kept.val_accuracy)})`)))
      : null;
    return s("g", { class: `series series-${model.index}`, "data-model": model.name }, lines, marker);
  });

  // One legend row per model: its name, then its two lines and its kept epoch.
  const legend = models.map((model, row) =>
    s("g", { class: `series series-${model.index}`, transform: `translate(${left}, ${plotBottom + 50 + 18 * row})` },
      s("text", { x: 0, y: 0, class: "name" }, model.name),
      kinds.map((kind, i) => s("g", { class: `line ${kind.class}`, transform: `translate(${90 + i * 110}, 0)` },
        s("line", { x1: 0, x2: 22, y1: -4, y2: -4 }),
        s("text", { x: 28, y: 0 }, kind.name))),
      model.restoredEpoch
        ? s("g", { class: "restored", transform: "translate(320, 0)" },
          s("circle", { cx: 6, cy: -4, r: 5 }),
          s("text", { x: 16, y: 0 }, `kept epoch ${model.restoredEpoch}`))
        : null));

  const description = models.map((m) => {
    const final = m.epochs[m.epochs.length - 1];
    const kept = m.restoredEpoch ? `, weights of epoch ${m.restoredEpoch} kept` : "";
    return `${m.name}: ${m.epochs.length} epochs, last validation accuracy ` +
      `${formatPercent(final.val_accuracy ?? 0)}${kept}`;
  }).join("; ");
  return s("svg", {
    viewBox: `0 0 ${width} ${height}`, class: "history-chart", role: "img",
    "aria-label": `Training and validation accuracy per epoch. ${description}`,
  },
  yTicks, xTicks,
  s("text", { class: "axis-title", x: (left + width - right) / 2, y: plotBottom + 30, "text-anchor": "middle" }, "epoch"),
  series, legend);
}
