// Display helpers: enum names, money, sizes, durations, and a tiny element builder.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2).toLowerCase(), value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name in el && name !== "list" && typeof value !== "string") el[name] = value;
    else el.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// JOB_STATUS_PROCESSING -> PROCESSING
export function short(enumName, prefix) {
  if (!enumName) return "";
  return prefix && enumName.startsWith(prefix) ? enumName.slice(prefix.length) : enumName;
}

export const status = (s) => short(s || "JOB_STATUS_UNSPECIFIED", "JOB_STATUS_");
export const stage = (s) => short(s, "JOB_STAGE_").toLowerCase();
export const outputType = (t) => short(t, "OUTPUT_TYPE_");
export const outputStatus = (s) => short(s || "OUTPUT_STATUS_UNSPECIFIED", "OUTPUT_STATUS_");
export const priority = (p) => short(p || "PRIORITY_STANDARD", "PRIORITY_").toLowerCase();

export function money(m) {
  if (!m) return "—";
  const amount = Number(m.micros || 0) / 1e6;
  let text = amount.toFixed(6).replace(/0+$/, "");
  if ((text.split(".")[1] || "").length < 2) text = amount.toFixed(2);
  return `${text} ${m.currency || ""}`.trim();
}

export function bytes(n) {
  n = Number(n || 0);
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let i = -1;
  do {
    n /= 1024;
    i += 1;
  } while (n >= 1024 && i < units.length - 1);
  return `${n.toFixed(n < 10 ? 2 : 1)} ${units[i]}`;
}

export function bitrate(bps) {
  bps = Number(bps || 0);
  if (!bps) return "—";
  return bps >= 1e6 ? `${(bps / 1e6).toFixed(2)} Mb/s` : `${Math.round(bps / 1e3)} kb/s`;
}

// The server's ETA (Job/Output.etaSeconds): absent means unknown, shown as nothing, never 0.
export function eta(s) {
  if (s === undefined || s === null) return "";
  const left = Math.round(Number(s));
  if (left < 90) return `about ${left} s left`;
  if (left < 90 * 60) return `about ${Math.round(left / 60)} min left`;
  return `about ${(left / 3600).toFixed(1)} h left`;
}

export function seconds(s) {
  s = Number(s || 0);
  return s >= 60 ? `${Math.floor(s / 60)}m ${(s % 60).toFixed(0)}s` : `${s.toFixed(2)} s`;
}

export function time(ts) {
  if (!ts) return "—";
  const d = new Date(ts);
  return Number.isNaN(d.getTime()) ? ts : d.toLocaleString();
}

export function progressBar(value, label) {
  const pct = Math.max(0, Math.min(100, Number(value || 0)));
  return h(
    "div",
    { class: "progress", role: "progressbar", "aria-valuenow": pct.toFixed(1), "aria-valuemin": "0", "aria-valuemax": "100", title: label || `${pct.toFixed(1)} %` },
    h("div", { class: "bar", style: `width:${pct}%` }),
    h("span", {}, `${pct.toFixed(0)} %`),
  );
}

export function badge(statusName) {
  const s = status(statusName);
  return h("span", { class: `badge s-${s.toLowerCase()}`, "data-testid": "status" }, s);
}
