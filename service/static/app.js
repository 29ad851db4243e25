// Entry point: accessible tabs; each view fetches its data when it is shown.

import { setUpCompare } from "./compare.js";
import { loadHistories } from "./history.js";
import { loadModels } from "./models.js";
import { setUpPredict } from "./predict.js";
import { offerRuntimes } from "./runtimes.js";
import { showError } from "./ui.js";

const tabs = [...document.querySelectorAll('[role="tab"]')];
let chosenImage = null;
let historiesLoaded = false;

// Model statuses change while models load, so the table refreshes on every visit; training
// histories do not, so they are fetched once.
async function load(panel) {
  if (panel === "panel-models") await loadModels();
  if (panel === "panel-compare") {
    // The runtimes offered follow the models' loaded ones, so they refresh on every visit too.
    const models = await loadModels();
    offerRuntimes(models);
    if (historiesLoaded) return;
    historiesLoaded = true;
    try {
      await loadHistories(models);
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
  // replaceState fires no hashchange, so selecting never loops back through the listener.
  history.replaceState(null, "", `#${panel.replace("panel-", "")}`);
  load(panel).catch(showError);
}

const tabOf = (hash) => tabs.find((tab) => tab.id === `tab-${hash.slice(1)}`);

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
// A link to #compare (or #models) on an open page switches to that view.
window.addEventListener("hashchange", () => {
  const tab = tabOf(location.hash);
  if (tab && tab.getAttribute("aria-selected") !== "true") select(tab);
});

setUpPredict({
  onImage: (file) => {
    chosenImage = file;
    document.getElementById("use-image").disabled = false;
  },
});
setUpCompare({ chosenImage: () => chosenImage });

select(tabOf(location.hash) ?? tabs[0], { focus: false });
