// Compare view: benchmark the models on the server, following its progress lines, then chart
// and tabulate the result. A run can be cancelled; the result it replaces is marked stale.

import { requestEvents, uploadForm } from "./api.js";
import { latencyChart } from "./charts.js";
import { showMatrix } from "./matrix.js";
import { chosenRuntimes } from "./runtimes.js";
import { summary, table } from "./summary.js";
import { clearError, formatCount, showError } from "./ui.js";

const $ = (id) => document.getElementById(id);
let running = null; // the AbortController of the comparison in progress
// Screen readers hear the status at most this often; the meter and text move on every line.
const ANNOUNCE_EVERY_MS = 3000;

export function setUpCompare({ chosenImage }) {
  const form = $("compare-form");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (running || !form.reportValidity()) return;
    const params = new URLSearchParams({
      repeats: form.elements.repeats.value,
      batch_size: form.elements.batch_size.value,
    });
    const runtimes = chosenRuntimes(); // none until GET /models answers: the service's own
    if (runtimes.length) params.set("runtimes", runtimes.join(","));
    const image = $("use-image").checked ? chosenImage() : null;
    run(form, params, image);
  });
  $("cancel-compare").addEventListener("click", () => running?.abort());
}

async function run(form, params, image) {
  const controller = new AbortController();
  running = controller;
  // The runtimes the service did not load stay disabled after the run.
  const controls = [...form.querySelectorAll("input[type=number], input[name=runtimes], #run-compare")]
    .filter((control) => !control.disabled);
  controls.forEach((control) => (control.disabled = true));
  const hadResult = !$("compare-results").hidden;
  markStale(hadResult ? "a new comparison is running" : null);
  clearError();
  $("compare-outcome").textContent = "";
  const status = startProgress();
  $("cancel-compare").hidden = false;
  $("cancel-compare").focus(); // Run is disabled now: focus would otherwise fall to <body>
  try {
    const options = { signal: controller.signal, ...(image ? { method: "POST", body: uploadForm(image) } : {}) };
    const result = await requestEvents(`/compare?${params}`, options, status.update);
    status.stop();
    render(result);
    markStale(null);
    $("compare-heading").focus();
  } catch (error) {
    status.stop();
    const cancelled = error.name === "AbortError";
    if (!cancelled) showError(error);
    if (hadResult) markStale(cancelled ? "the newer comparison was cancelled" : "the newer comparison failed");
    const outcome = $("compare-outcome");
    outcome.textContent = cancelled ? "Comparison cancelled." : "The comparison failed (see the message above).";
    outcome.focus();
  } finally {
    running = null;
    controls.forEach((control) => (control.disabled = false));
    $("cancel-compare").hidden = true;
  }
}

// The result on screen no longer answers the form: say so, and dim it, until a new one lands.
function markStale(reason) {
  const results = $("compare-results");
  results.dataset.stale = String(Boolean(reason));
  $("stale-note").textContent = reason ? `(previous result: ${reason})` : "";
}

// Shows where the run stands: a meter and a line that move with every server line, and a
// live region that screen readers hear when the state changes and every few seconds.
function startProgress() {
  const box = $("compare-progress");
  const meter = $("compare-meter");
  const visible = $("compare-now");
  const live = $("compare-status");
  const started = performance.now();
  let line = "Sending the request…";
  let state = "sending";
  let announced = { at: 0, state: null };

  const show = () => {
    visible.textContent = line;
    const now = performance.now();
    if (state !== announced.state || now - announced.at >= ANNOUNCE_EVERY_MS) {
      live.textContent = line;
      announced = { at: now, state };
    }
  };
  const update = (event) => {
    if (event.event === "queued") {
      // Counted here too, so the wait visibly moves between the server's lines.
      const waited = Math.round((performance.now() - started) / 1000);
      state = "queued";
      line = "Queued behind another visitor's comparison (the service runs one at a time, so " +
        `that they do not time each other): waiting ${waited} s; it ends within ` +
        `${event.running_ends_in_s} s, and this one gives up after ${event.wait_at_most_s} s.`;
    } else if (event.event === "started") {
      state = "running";
      line = `Running: ${formatCount(event.requested_repeats)} runs asked for, within a ` +
        `${event.budget_s} s time budget.`;
    } else if (event.event === "progress") {
      state = event.phase;
      box.dataset.roundsDone = String(event.rounds_done);
      const elapsed = `${event.elapsed_s.toFixed(1)} s elapsed of the ${event.budget_s} s budget`;
      if (event.phase === "warmup") {
        line = `Warming up: ${event.warmup_done} of ${event.warmup} untimed runs; ${elapsed}.`;
        meter.removeAttribute("value");
      } else {
        line = `${formatCount(event.rounds_done)} of ${formatCount(event.requested_repeats)} ` +
          `runs done; ${elapsed}.`;
        meter.value = event.rounds_done / event.requested_repeats;
      }
    }
    box.dataset.state = state;
    show();
  };

  box.hidden = false;
  meter.removeAttribute("value"); // indeterminate until the first timed round
  show();
  return {
    update,
    stop: () => {
      box.hidden = true;
      delete box.dataset.state;
      delete box.dataset.roundsDone;
      live.textContent = "";
    },
  };
}

function render(result) {
  $("compare-summary").replaceChildren(...summary(result));
  $("compare-table").replaceChildren(table(result));
  $("compare-results").hidden = false;
  const outcome = result.stopped_at_budget
    ? `Stopped at the time budget after ${formatCount(result.repeats)} of ${formatCount(result.requested_repeats)} runs.`
    : `Done: ${formatCount(result.repeats)} runs in ${result.elapsed_s?.toFixed(1) ?? "?"} s.`;
  $("compare-outcome").textContent = outcome;
  // Drawn at the container's own width (measurable once shown), so text is never rescaled.
  const chart = $("latency-chart");
  chart.replaceChildren(latencyChart(result.models, Math.max(chart.clientWidth, 300)));
  showMatrix(result);
}
