// Operations: queue depth by priority and the fleet's workers. From the server's /metrics when
// it answers (kiln_queue_depth{priority}: queued tasks of the whole service; kiln_worker_*:
// each worker, see fleet.js), and always this organization's non-terminal jobs by priority
// and status, counted through List.

import { fleetFrom, workersCard } from "./fleet.js";
import * as fmt from "./format.js";

const { h } = fmt;
const ACTIVE = ["JOB_STATUS_PENDING", "JOB_STATUS_PROBING", "JOB_STATUS_AWAITING_CONFIRMATION", "JOB_STATUS_PROCESSING"];
const PRIORITIES = ["PRIORITY_PREMIUM", "PRIORITY_STANDARD", "PRIORITY_ECONOMY"];
const REFRESH_MS = 5000;
const MAX_LIST_PAGES = 20;

// A label value as the text format escapes it: backslash, double quote and newline.
const unescapeLabel = (raw) => raw.replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));

export function parsePrometheus(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = line.match(/^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    for (const l of (m[2] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = unescapeLabel(l[2]);
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return samples;
}

export function renderOps(api, root, { errorText }) {
  const body = h("div", { id: "ops" });
  const source = h("p", { class: "muted small", id: "ops-source" });
  root.append(h("h1", {}, "Operations"), source, body);
  let stopped = false;

  async function fromMetrics() {
    let response;
    try {
      response = await fetch("/metrics");
    } catch {
      return null;
    }
    if (!response.ok) return null;
    const samples = parsePrometheus(await response.text());
    const depth = samples.filter((s) => s.name === "kiln_queue_depth");
    if (!depth.length) return null;
    return {
      depth,
      workers: fleetFrom(samples),
      watchStreams: samples.find((s) => s.name === "kiln_watch_streams"),
    };
  }

  async function fromList() {
    const counts = {};
    let token = "";
    let pages = 0;
    let truncated = false;
    do {
      const answer = await api.call("List", { pageSize: 100, pageToken: token, statuses: ACTIVE });
      for (const job of answer.jobs || []) {
        const p = job.priority || "PRIORITY_STANDARD";
        counts[p] = counts[p] || {};
        counts[p][job.status] = (counts[p][job.status] || 0) + 1;
      }
      token = answer.nextPageToken || "";
      pages += 1;
      if (token && pages >= MAX_LIST_PAGES) truncated = true;
    } while (token && !truncated);
    return { counts, truncated };
  }

  function metricsCards(metrics) {
    if (!metrics) {
      return [h("section", { class: "card" }, h("h2", {}, "Task queue and workers"), h("p", { class: "muted" }, "This server answers no /metrics with kiln_queue_depth: only the job counts below (from List) are available."))];
    }
    return [
      h("section", { class: "card" }, h("h2", {}, "Queued tasks by priority (whole service)"), h("table", { class: "kv", id: "queue-depth" }, metrics.depth.map((s) => h("tr", { "data-priority": s.labels.priority }, h("th", {}, s.labels.priority || "—"), h("td", {}, String(s.value))))), metrics.watchStreams ? h("p", { class: "muted small" }, `${metrics.watchStreams.value} Watch streams open on this server.`) : null),
      workersCard(metrics.workers),
    ];
  }

  async function refresh() {
    try {
      const [metrics, { counts, truncated }] = await Promise.all([fromMetrics(), fromList()]);
      if (stopped) return;
      source.textContent = metrics ? "Queue and workers from the server's /metrics; job counts from List." : "Job counts from List; this server has no /metrics queue gauge.";
      body.replaceChildren(
        ...metricsCards(metrics),
        h(
          "section",
          { class: "card" },
          h("h2", {}, "This organization's jobs waiting or running, by priority"),
          h("table", { id: metrics ? "job-counts" : "queue-depth" }, h("tr", {}, h("th", {}, "priority"), ACTIVE.map((s) => h("th", {}, fmt.status(s))), h("th", {}, "total")), PRIORITIES.map((p) => {
            const row = counts[p] || {};
            const total = Object.values(row).reduce((a, b) => a + b, 0);
            return h("tr", { "data-priority": fmt.priority(p) }, h("th", {}, fmt.priority(p)), ACTIVE.map((s) => h("td", {}, String(row[s] || 0))), h("td", {}, String(total)));
          })),
          truncated ? h("p", { class: "muted small" }, `Only the newest ${MAX_LIST_PAGES * 100} were counted.`) : null,
        ),
      );
    } catch (err) {
      body.replaceChildren(h("p", { class: "error" }, errorText(err)));
    }
  }

  refresh();
  const timer = setInterval(refresh, REFRESH_MS);
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}
