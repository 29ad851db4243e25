// Training curves: every model's history from GET /models/{name}/history, on one chart.

import { requestJson } from "./api.js";
import { historyChart } from "./charts.js";
import { h, showError } from "./ui.js";

// The epoch whose weights the model ships with. Training keeps the epoch of lowest validation
// loss (training/history.py, BestWeights); the API names it when it can, else it is read off
// the history by the same rule.
function restoredEpoch(model, history) {
  const named = model.best_epoch ?? history.best_epoch ?? history.restored_epoch;
  if (Number.isInteger(named)) return named;
  const scored = history.epochs.map((e, i) => ({ epoch: e.epoch ?? i + 1, loss: e.val_loss }))
    .filter((e) => typeof e.loss === "number");
  if (!scored.length) return null;
  return scored.reduce((best, e) => (e.loss < best.loss ? e : best)).epoch;
}

export async function loadHistories(models) {
  const figure = document.getElementById("history-chart");
  const series = [];
  const missing = [];
  await Promise.all(models.map(async (model, index) => {
    try {
      const history = await requestJson(`/models/${encodeURIComponent(model.name)}/history`);
      if (history.epochs.length) {
        series.push({ name: model.name, index, epochs: history.epochs, restoredEpoch: restoredEpoch(model, history) });
        return;
      }
    } catch (error) {
      if (error.status !== 404) showError(error);
    }
    missing.push(model.name);
  }));
  series.sort((a, b) => a.index - b.index);
  const notes = missing.sort().map((name) =>
    h("p", { class: "empty", "data-model": name }, `No training history for ${name}.`));
  if (!series.length) {
    figure.replaceChildren(...notes);
    return;
  }
  const width = Math.max(figure.clientWidth - 24, 440);
  const kept = series.filter((m) => m.restoredEpoch)
    .map((m) => `${m.name} ships the weights of epoch ${m.restoredEpoch}`);
  figure.replaceChildren(
    historyChart(series, width),
    h("figcaption", {},
      "Accuracy per epoch: training (solid) and validation (dashed). The ring marks the epoch " +
      "of lowest validation loss, whose weights training kept" +
      (kept.length ? ` (${kept.join("; ")})` : "") + "."),
    ...notes,
  );
}
