// The runtimes a comparison may time: one checkbox per runtime GET /models names, enabled when
// the service loaded it for every model (a comparison times every model on every runtime).

import { h } from "./ui.js";

const $ = (id) => document.getElementById(id);
const NOT_LOADED_HINT = "start the service with SEPCONV_COMPARE_RUNTIMES to compare them";

// Where each runtime stands across the models that can serve: loaded by all, or why not.
function runtimeStates(models) {
  const serving = models.filter((m) => m.status !== "failed");
  const names = [...new Set([...serving.map((m) => m.runtime), ...serving.flatMap((m) => (m.runtimes ?? []).map((r) => r.runtime))])];
  return names.map((runtime) => {
    const missing = serving.filter((m) => !(m.runtimes ?? []).some((r) => r.runtime === runtime && r.loaded));
    const errors = missing.map((m) => [m.name, (m.runtimes ?? []).find((r) => r.runtime === runtime)?.error])
      .filter(([, error]) => error);
    return { runtime, loaded: missing.length === 0, errors };
  });
}

const checkboxes = () => [...document.querySelectorAll('#runtime-options input[name="runtimes"]')];

// Says so on the form when no runtime is ticked: a comparison needs one.
function checkChoice() {
  const boxes = checkboxes();
  const message = boxes.length && !boxes.some((box) => box.checked) ? "Choose at least one runtime to compare." : "";
  boxes[0]?.setCustomValidity(message);
}

// Rebuilds the choice from GET /models, keeping what the visitor ticked; the serving runtime
// is ticked when nothing loaded is.
export function offerRuntimes(models) {
  const ticked = new Set(chosenRuntimes());
  const states = runtimeStates(models);
  const serving = models.find((m) => m.status !== "failed")?.runtime;
  if (!states.some((s) => s.loaded && ticked.has(s.runtime)) && serving) ticked.add(serving);

  $("runtime-options").replaceChildren(...states.map(({ runtime, loaded }) =>
    h("label", { class: "checkbox", "data-runtime": runtime },
      h("input", {
        type: "checkbox", name: "runtimes", value: runtime,
        checked: loaded && ticked.has(runtime), disabled: !loaded,
        "aria-describedby": loaded ? null : "runtime-hint",
      }),
      runtime)));
  checkboxes().forEach((box) => box.addEventListener("change", checkChoice));
  checkChoice();

  const unloaded = states.filter((s) => !s.loaded);
  const failed = unloaded.flatMap((s) => s.errors.map(([model, error]) => `${s.runtime} failed to load for ${model}: ${error}`));
  const hint = [];
  if (unloaded.length) hint.push(`Not loaded: ${unloaded.map((s) => s.runtime).join(", ")} (${NOT_LOADED_HINT}).`);
  else if (states.length < 2) hint.push(`Only ${states[0]?.runtime ?? "one runtime"} is loaded: ${NOT_LOADED_HINT}.`);
  hint.push(...failed);
  $("runtime-hint").replaceChildren(...hint.map((line) => h("span", {}, line, " ")));
}

// The runtimes ticked, in the order offered; none before GET /models has answered.
export const chosenRuntimes = () => checkboxes().filter((box) => box.checked && !box.disabled).map((box) => box.value);
