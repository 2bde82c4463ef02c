// Small DOM helpers: elements built from data (never from HTML strings, so text from
// the network is always text), and the one place that shows and hides things.

/**
 * A new element: `h("button", {class: "primary", "data-x": 1, onclick: fn}, "text", child)`.
 * Attributes named `on...` with a function are listeners; `null`/`false` ones are left out.
 * @param {string} tag
 * @param {Record<string, any>} [attrs]
 * @param {...(Node | string | number | null | undefined | false)} children
 * @returns {HTMLElement}
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, ...children);
  return el;
}

/** Append children, strings as text. */
export function append(el, ...children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** @param {Element | null} el @param {boolean} visible */
export function show(el, visible = true) {
  if (el) el.hidden = !visible;
}

/** `document.getElementById`, throwing when the page lacks it (a broken page says so). */
export function byId(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`console: the page has no #${id}`);
  return el;
}

/** An SVG icon from the page's sprite (`<symbol id="i-NAME">`). */
export function icon(name) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "icon");
  svg.setAttribute("aria-hidden", "true");
  const use = document.createElementNS("http://www.w3.org/2000/svg", "use");
  use.setAttribute("href", `#i-${name}`);
  svg.append(use);
  return svg;
}

/** `12:04` (or `12:04:09` with seconds) in the page's language, from Unix seconds or ms. */
export function clockTime(ts, lang, seconds = false) {
  const ms = ts > 1e12 ? ts : ts * 1000;
  return new Date(ms).toLocaleTimeString(lang, { hour: "2-digit", minute: "2-digit", second: seconds ? "2-digit" : undefined });
}
