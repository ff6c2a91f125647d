// Small DOM helpers: elements built from data with textContent only (no HTML strings from the API).
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name in node && name !== "list") node[name] = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Replaces a table's rows: a header from `columns`' keys, one row per item (or one "none" row). */
export function fillTable(table, items, columns, rowAttributes = () => ({})) {
  const header = el(
    "tr",
    {},
    Object.keys(columns).map((name) => el("th", {}, name)),
  );
  const rows = items.length
    ? items.map((item) =>
        el(
          "tr",
          rowAttributes(item),
          Object.values(columns).map((cell) => el("td", {}, cell(item))),
        ),
      )
    : [el("tr", {}, el("td", { className: "empty", colSpan: Object.keys(columns).length }, "none"))];
  table.replaceChildren(el("thead", {}, header), el("tbody", {}, rows));
}

export const badge = (text) => el("span", { className: `state ${text}` }, text);

export function bytes(value) {
  if (value === null || value === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB"];
  let size = value;
  let unit = 0;
  while (size >= 1024 && unit < units.length - 1) {
    size /= 1024;
    unit++;
  }
  return `${size.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

export const time = (iso) => (iso ? new Date(iso).toLocaleTimeString() : "–");
