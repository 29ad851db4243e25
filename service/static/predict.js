// Predict view: pick, drop or paste an image, or press an example, then show both models'
// answers side by side.

import { requestJson, uploadForm } from "./api.js";
import { formatMs, formatPercent, h, showError, whileBusy } from "./ui.js";

const TOP_K = 5;
let originalUrl = null;

export function setUpPredict({ onImage }) {
  const panel = document.getElementById("panel-predict");
  const input = document.getElementById("file-input");
  const dropzone = document.getElementById("dropzone");

  const examples = [...document.querySelectorAll("#examples button")];
  const classify = async (file, source = "") => {
    // One request at a time: a drop or paste during a prediction would race its answer.
    if (!file || panel.hasAttribute("aria-busy")) return;
    onImage(file);
    const shown = await whileBusy(panel, [input, ...examples], () => predict(file, source));
    // The control that started it is disabled meanwhile, which drops focus to <body>: put it
    // on the answer, or on the error that took its place.
    document.getElementById(shown ? "predict-heading" : "alert").focus();
  };

  for (const button of examples) {
    button.addEventListener("click", async () => {
      const src = button.dataset.src;
      const name = src.split("/").pop();
      let file;
      try {
        const response = await fetch(src);
        if (!response.ok) throw new Error(`the example ${name} is missing (HTTP ${response.status})`);
        const blob = await response.blob();
        file = new File([blob], name, { type: blob.type });
      } catch (error) {
        showError(error);
        document.getElementById("alert").focus();
        return;
      }
      classify(file, `(example: ${name})`);
    });
  }

  input.addEventListener("change", () => classify(input.files[0]));
  listClasses();
  dropzone.addEventListener("dragover", (event) => {
    event.preventDefault();
    dropzone.classList.add("dragging");
  });
  dropzone.addEventListener("dragleave", () => dropzone.classList.remove("dragging"));
  dropzone.addEventListener("drop", (event) => {
    event.preventDefault();
    dropzone.classList.remove("dragging");
    classify(event.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (event) => {
    if (panel.hidden) return;
    const file = [...event.clipboardData.files].find((f) => f.type.startsWith("image/"));
    if (file) classify(file);
  });
}

async function predict(file, source) {
  const results = document.getElementById("predict-results");
  results.hidden = true;
  const body = await requestJson(`/predict?top_k=${TOP_K}&preview=true`, {
    method: "POST",
    body: uploadForm(file),
  });

  if (originalUrl) URL.revokeObjectURL(originalUrl);
  originalUrl = URL.createObjectURL(file);
  document.getElementById("original-image").src = originalUrl;
  document.getElementById("preview-image").src = body.preview ?? "";
  const { format, width, height, mode } = body.image;
  document.getElementById("image-info").textContent = `(${format}, ${width}x${height}, ${mode})`;

  const badge = document.getElementById("agreement");
  badge.dataset.agreement = String(body.agreement);
  badge.textContent = body.agreement
    ? `Models agree: ${body.predictions[0].label}`
    : `Models disagree: ${body.predictions.map((p) => `${p.model} says ${p.label}`).join(", ")}`;

  document.getElementById("prediction-cards").replaceChildren(...body.predictions.map(card));
  document.getElementById("predict-source").textContent = source || `(${file.name || "pasted image"})`;
  results.hidden = false;
  return true;
}

function card(prediction) {
  const bars = prediction.top_k.map(({ label, probability }) =>
    h("li", { class: label === prediction.label ? "bar top" : "bar" },
      h("span", { class: "bar-label" }, label),
      h("span", { class: "bar-track", "aria-hidden": "true" }, fill(probability)),
      h("span", { class: "bar-value" }, formatPercent(probability))),
  );
  const batch = prediction.batch_size > 1 ? ` (batch of ${prediction.batch_size})` : "";
  return h("article", { class: "card", "data-model": prediction.model },
    h("h2", {}, prediction.model),
    h("p", { class: "verdict" },
      h("span", { class: "label" }, prediction.label), " ",
      h("span", { class: "confidence" }, formatPercent(prediction.confidence))),
    h("p", { class: "meta" }, "Latency ",
      h("span", { class: "latency", "data-latency-ms": prediction.latency_ms },
        formatMs(prediction.latency_ms)), batch),
    h("ol", { class: "bars", "aria-label": `Top ${TOP_K} classes for ${prediction.model}` }, bars),
  );
}

function fill(probability) {
  const bar = h("span", { class: "bar-fill" });
  bar.style.setProperty("width", formatPercent(probability, 2));
  return bar;
}

// The classes the models answer, from GET /models (the page's copy stands until it answers).
async function listClasses() {
  try {
    const { models } = await requestJson("/models");
    const classes = models.find((m) => m.classes?.length)?.classes;
    if (classes) document.getElementById("class-names").textContent = classes.join(", ");
  } catch {
    // The page's own list (CIFAR-10's) stays; the views report the service's errors.
  }
}
