// Entry point: accessible tabs; each view fetches its data when it is shown.

import { loadHistories, setUpCompare } from "./compare.js";
import { loadModels } from "./models.js";
import { setUpPredict } from "./predict.js";
import { showError } from "./ui.js";

const tabs = [...document.querySelectorAll('[role="tab"]')];
let chosenImage = null;
let historiesLoaded = false;

// Model statuses change while models load, so the table refreshes on every visit; training
// histories do not, so they are fetched once.
async function load(panel) {
  if (panel === "panel-models") await loadModels();
  if (panel === "panel-compare" && !historiesLoaded) {
    historiesLoaded = true;
    try {
      await loadHistories((await loadModels()).map((m) => m.name));
    } catch (error) {
      historiesLoaded = false;
      throw error;
    }
  }
}

function select(tab, { focus = true } = {}) {
  for (const other of tabs) {
    const selected = other === tab;
    other.setAttribute("aria-selected", String(selected));
    other.tabIndex = selected ? 0 : -1;
    document.getElementById(other.getAttribute("aria-controls")).hidden = !selected;
  }
  if (focus) tab.focus();
  const panel = tab.getAttribute("aria-controls");
  history.replaceState(null, "", `#${panel.replace("panel-", "")}`);
  load(panel).catch(showError);
}

document.querySelector('[role="tablist"]').addEventListener("keydown", (event) => {
  const index = tabs.indexOf(document.activeElement);
  if (index < 0) return;
  const next = {
    ArrowRight: (index + 1) % tabs.length,
    ArrowLeft: (index - 1 + tabs.length) % tabs.length,
    Home: 0,
    End: tabs.length - 1,
  }[event.key];
  if (next === undefined) return;
  event.preventDefault();
  select(tabs[next]);
});
tabs.forEach((tab) => tab.addEventListener("click", () => select(tab)));

setUpPredict({
  onImage: (file) => {
    chosenImage = file;
    document.getElementById("use-image").disabled = false;
  },
});
setUpCompare({ chosenImage: () => chosenImage });

const initial = tabs.find((tab) => tab.id === `tab-${location.hash.slice(1)}`) ?? tabs[0];
select(initial, { focus: false });
