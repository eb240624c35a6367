/** A tiny element builder: the console has few enough views that a framework would be the bigger part. */

type Child = Node | string | number | false | null | undefined;
type Attrs = Record<string, string | number | boolean | EventListener | undefined>;

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  applyAttrs(el, attrs);
  append(el, children);
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

export function s(tag: string, attrs: Attrs = {}, ...children: Child[]): SVGElement {
  const el = document.createElementNS(SVG_NS, tag);
  applyAttrs(el, attrs);
  append(el, children);
  return el;
}

function applyAttrs(el: Element, attrs: Attrs): void {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    if (typeof value === 'function') el.addEventListener(name.replace(/^on/, ''), value);
    else if (name === 'style') setStyle(el as HTMLElement, String(value));
    else el.setAttribute(name, value === true ? '' : String(value));
  }
}

/** Through the CSSOM: the page's Content-Security-Policy refuses inline style attributes. */
function setStyle(el: HTMLElement | SVGElement, css: string): void {
  for (const declaration of css.split(';')) {
    const at = declaration.indexOf(':');
    if (at > 0) el.style.setProperty(declaration.slice(0, at).trim(), declaration.slice(at + 1).trim());
  }
}

function append(el: Element, children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Local time, to the second; the ISO value is in the title for exactness. */
export function time(iso: string | undefined): HTMLElement {
  if (!iso) return h('span', {}, '–');
  const d = new Date(iso);
  return h('time', { datetime: iso, title: iso }, `${d.toLocaleDateString(undefined, { month: 'short', day: 'numeric' })} ${d.toLocaleTimeString(undefined, { hour12: false })}`);
}
