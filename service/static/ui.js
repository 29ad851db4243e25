// Small DOM helpers shared by the views: element builders, number formats, alert and busy state.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(element, attributes, children) {
  for (const [name, value] of Object.entries(attributes ?? {})) {
    if (value !== null && value !== undefined && value !== false) element.setAttribute(name, value);
  }
  element.append(...children.flat().filter((child) => child !== null && child !== undefined));
  return element;
}

export const h = (tag, attributes, ...children) =>
  build(document.createElement(tag), attributes, children);
export const s = (tag, attributes, ...children) =>
  build(document.createElementNS(SVG_NS, tag), attributes, children);

export function formatMs(ms) {
  if (ms === 0) return "0 ms";
  const digits = ms < 1 ? 2 : ms < 100 ? 1 : 0;
  return `${ms.toFixed(digits)} ms`;
}
export const formatPercent = (p, digits = 1) => `${(p * 100).toFixed(digits)}%`;
export const formatCount = (n) => (n === null || n === undefined ? "–" : n.toLocaleString("en-US"));
export const formatRatio = (r) => `${r.toFixed(1)}x`;

export function formatBytes(bytes) {
  if (bytes === null || bytes === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

const alertRegion = () => document.getElementById("alert");

export function showError(error) {
  const message = error.message || String(error);
  const meta = [error.code, error.requestId && `request ${error.requestId}`].filter(Boolean);
  alertRegion().replaceChildren(
    h("strong", {}, "Error: "),
    message.charAt(0).toUpperCase() + message.slice(1),
    meta.length ? h("small", {}, meta.join(" · ")) : null,
  );
}

export const clearError = () => alertRegion().replaceChildren();

// Marks `container` busy while `work` runs; the busy state is always cleared, even on failure.
export async function whileBusy(container, controls, work) {
  const spinner = container.querySelector(".spinner");
  container.setAttribute("aria-busy", "true");
  controls.forEach((control) => (control.disabled = true));
  if (spinner) spinner.hidden = false;
  clearError();
  try {
    return await work();
  } catch (error) {
    showError(error);
    return undefined;
  } finally {
    container.removeAttribute("aria-busy");
    controls.forEach((control) => (control.disabled = false));
    if (spinner) spinner.hidden = true;
  }
}
