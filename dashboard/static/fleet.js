// The fleet in the operations view: one row per worker, from the server's /metrics
// (kiln_worker_info{worker_id,host,version,state,task_kinds} with kiln_worker_capacity,
// kiln_worker_running_tasks and kiln_worker_last_contact_seconds). These are the whole
// service's workers, not this organization's: the browser sees them only because it reaches
// /metrics. Host and version are what each worker said of itself, so they are only ever
// written as text nodes.

import * as fmt from "./format.js";

const { h } = fmt;
// What needs the operator first.
const STATE_ORDER = { LOST: 0, DRAINING: 1, ACTIVE: 2 };
const STATE_CLASS = { LOST: "s-failed", DRAINING: "s-awaiting_confirmation", ACTIVE: "s-completed" };

// [{ id, host, version, state, taskKinds, capacity, running, silentSeconds }] from samples.
export function fleetFrom(samples) {
  const byId = new Map();
  const worker = (id) => {
    if (!byId.has(id)) byId.set(id, { id, capacity: 0, running: 0, silentSeconds: 0 });
    return byId.get(id);
  };
  for (const s of samples) {
    const id = s.labels.worker_id;
    if (id === undefined) continue;
    if (s.name === "kiln_worker_info") {
      const { host, version, state, task_kinds: kinds } = s.labels;
      Object.assign(worker(id), { host, version, state, taskKinds: kinds ? kinds.split(",") : [] });
    } else if (s.name === "kiln_worker_capacity") worker(id).capacity = s.value;
    else if (s.name === "kiln_worker_running_tasks") worker(id).running = s.value;
    else if (s.name === "kiln_worker_last_contact_seconds") worker(id).silentSeconds = s.value;
  }
  return [...byId.values()]
    .filter((w) => w.state)
    .sort((a, b) => (STATE_ORDER[a.state] ?? 3) - (STATE_ORDER[b.state] ?? 3) || a.id.localeCompare(b.id));
}

function ago(seconds) {
  return seconds < 60 ? `${Math.round(seconds)} s ago` : `${fmt.seconds(seconds)} ago`;
}

function summary(workers) {
  const count = (state) => workers.filter((w) => w.state === state).length;
  const busy = workers.reduce((sum, w) => sum + w.running, 0);
  const slots = workers.filter((w) => w.state !== "LOST").reduce((sum, w) => sum + w.capacity, 0);
  return `${workers.length} workers: ${count("ACTIVE")} active, ${count("DRAINING")} draining, ${count("LOST")} lost; ${busy} of the live workers' ${slots} task slots busy.`;
}

function row(w) {
  return h(
    "tr",
    { "data-worker-id": w.id, "data-state": w.state, class: w.state === "LOST" ? "lost" : null },
    h("td", { class: "wrap" }, w.id),
    h("td", {}, w.host),
    h("td", {}, h("span", { class: `badge ${STATE_CLASS[w.state] || ""}`, "data-testid": "worker-state" }, w.state)),
    h("td", { "data-testid": "worker-load", title: "tasks running / task slots" }, `${w.running} / ${w.capacity}`),
    h("td", {}, w.taskKinds.map((kind) => h("span", { class: "tag" }, kind.toLowerCase()))),
    h("td", { "data-testid": "worker-contact" }, ago(w.silentSeconds)),
    h("td", {}, w.version || "—"),
  );
}

export function workersCard(workers) {
  const heading = h("h2", {}, "Workers (whole service)");
  const note = h("p", { class: "muted small" }, "LOST: not heard from for a whole lease; its tasks are being taken back. A worker silent for an hour leaves this list (", h("code", {}, "kiln workers list"), " still shows it).");
  if (!workers.length) {
    return h("section", { class: "card", id: "workers" }, heading, h("p", { class: "muted", id: "workers-empty" }, "No workers have announced themselves."), note);
  }
  const head = h("tr", {}, ["worker", "host", "state", "running / slots", "task kinds", "last contact", "version"].map((c) => h("th", {}, c)));
  return h("section", { class: "card", id: "workers" }, heading, h("p", { class: "small", id: "workers-summary" }, summary(workers)), h("table", { id: "workers-table" }, head, workers.map(row)), note);
}
