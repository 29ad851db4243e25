// Inline SVG charts drawn from API numbers: no chart library, so the page works offline.

import { formatMs, formatPercent, s } from "./ui.js";

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
  const rows = entries.map((entry, index) => {
    const l = entry.latency_ms;
    const y = 16 + row * index + row / 2 + 8;
    return s("g", { class: `series series-${index}`, "data-model": entry.model },
      s("title", {}, `${entry.model}: min ${formatMs(l.min)}, p50 ${formatMs(l.p50)}, ` +
        `p95 ${formatMs(l.p95)}, p99 ${formatMs(l.p99)}, max ${formatMs(l.max)}`),
      s("text", { x: left, y: y - 16, class: "name" }, entry.model),
      s("line", { class: "whisker", x1: x(l.min), x2: x(l.max), y1: y, y2: y }),
      s("rect", { class: "box", x: x(l.p50), y: y - 8, width: Math.max(x(l.p99) - x(l.p50), 1), height: 16 }),
      ["p50", "p95", "p99"].map((key) =>
        s("line", { class: `mark ${key}`, x1: x(l[key]), x2: x(l[key]), y1: y - 12, y2: y + 12 })),
      s("text", { x: x(l.max) + 8, y: y + 4, class: "value" }, `p50 ${formatMs(l.p50)}`),
    );
  });
  const description = entries
    .map((e) => `${e.model}: p50 ${formatMs(e.latency_ms.p50)}, p99 ${formatMs(e.latency_ms.p99)}`)
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

export function historyChart(epochs, index = 0, width = 360, height = 230) {
  const [left, right, top, bottom] = [44, 12, 12, 62];
  const last = Math.max(epochs.length, 2);
  // Position by index, not epoch number, so a history that starts mid-run still fills the axis.
  const x = (index) => left + ((width - left - right) * index) / (last - 1);
  const y = (accuracy) => top + (height - top - bottom) * (1 - accuracy);
  const series = [
    { key: "accuracy", name: "training", class: "train" },
    { key: "val_accuracy", name: "validation", class: "validation" },
  ];
  const step = Math.ceil(epochs.length / 8);

  const yTicks = [0, 0.25, 0.5, 0.75, 1].map((a) =>
    s("g", { class: "tick" },
      s("line", { x1: left, x2: width - right, y1: y(a), y2: y(a) }),
      s("text", { x: left - 6, y: y(a) + 4, "text-anchor": "end" }, formatPercent(a, 0))));
  const xTicks = epochs
    .map((e, i) => [e, i])
    .filter(([, i]) => i % step === 0)
    .map(([e, i]) => s("text", { class: "tick", x: x(i), y: height - bottom + 16, "text-anchor": "middle" }, String(e.epoch ?? i + 1)));
  const lines = series.map((line) => {
    const points = epochs.map((e, i) => [i, e.epoch ?? i + 1, e[line.key]])
      .filter(([, , value]) => typeof value === "number");
    return s("g", { class: `line ${line.class}` },
      s("polyline", { points: points.map(([i, , v]) => `${x(i)},${y(v)}`).join(" ") }),
      points.map(([i, epoch, v]) => s("circle", { cx: x(i), cy: y(v), r: 2.5 },
        s("title", {}, `epoch ${epoch}, ${line.name} accuracy ${formatPercent(v)}`))));
  });
  const legend = series.map((line, i) =>
    s("g", { class: `line ${line.class}`, transform: `translate(${left + i * 110}, ${height - 6})` },
      s("line", { x1: 0, x2: 22, y1: -4, y2: -4 }),
      s("text", { x: 28, y: 0 }, `${line.name}`)));
  const final = epochs[epochs.length - 1];
  return s("svg", {
    viewBox: `0 0 ${width} ${height}`, class: `history-chart series-${index}`, role: "img",
    "aria-label": `Accuracy per epoch over ${epochs.length} epochs; last epoch: training ` +
      `${formatPercent(final.accuracy ?? 0)}, validation ${formatPercent(final.val_accuracy ?? 0)}`,
  },
  yTicks, xTicks,
  s("text", { class: "axis-title", x: (left + width - right) / 2, y: height - bottom + 32, "text-anchor": "middle" }, "epoch"),
  lines, legend);
}
