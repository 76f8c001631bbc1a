// kiln dashboard: sign-in, live job list, create form, job page, origins, operations view.
// Plain ES modules; routes are hashes (#/jobs, #/jobs/<id>, #/origins, #/ops) so nothing reloads.

import { Api, ApiError, JobWatch, TERMINAL, applyEvent } from "./api.js";
import * as fmt from "./format.js";
import { renderJobPage } from "./job.js";
import { renderOps } from "./ops.js";
import { renderOrigins } from "./origins.js";

const { h } = fmt;
const KEY_STORAGE = "kiln.apiKey";
const LIST_REFRESH_MS = 4000;
const STATUSES = [
  "JOB_STATUS_PENDING",
  "JOB_STATUS_PROBING",
  "JOB_STATUS_AWAITING_CONFIRMATION",
  "JOB_STATUS_PROCESSING",
  "JOB_STATUS_COMPLETED",
  "JOB_STATUS_PARTIAL",
  "JOB_STATUS_FAILED",
  "JOB_STATUS_REJECTED",
  "JOB_STATUS_CANCELED",
];

// Test and debugging hooks: counters and player errors, never used for behaviour.
window.kiln = { watchEvents: 0, listCalls: 0, playerErrors: [], players: {} };

const view = document.getElementById("view");
let dispose = () => {};

export function toast(message, isError = false) {
  const el = document.getElementById("toast");
  el.textContent = message;
  el.className = isError ? "error" : "";
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (el.hidden = true), isError ? 8000 : 3000);
}

export function errorText(err) {
  if (err instanceof ApiError) return `${err.code}: ${err.rawMessage}`;
  return String(err);
}

function currentApi() {
  const key = sessionStorage.getItem(KEY_STORAGE);
  return key ? new Api(key) : null;
}

function route() {
  dispose();
  dispose = () => {};
  view.replaceChildren();
  delete view.dataset.status;
  const api = currentApi();
  document.getElementById("nav").hidden = !api;
  if (!api) {
    renderSignIn();
    return;
  }
  const hash = location.hash || "#/jobs";
  const job = hash.match(/^#\/jobs\/(job_[A-Za-z0-9]+)$/);
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("active", hash.startsWith(`#/${link.dataset.nav}`));
  }
  if (job) dispose = renderJobPage(api, job[1], view, { toast, errorText });
  else if (hash.startsWith("#/ops")) dispose = renderOps(api, view, { errorText });
  else if (hash.startsWith("#/origins")) dispose = renderOrigins(api, view, { toast, errorText, violations });
  else dispose = renderJobList(api, view);
}

function renderSignIn() {
  const input = h("input", { type: "password", id: "api-key", name: "api-key", placeholder: "kiln_…", autocomplete: "off", required: true, size: 48 });
  const message = h("p", { class: "error", hidden: true });
  const form = h(
    "form",
    {
      class: "card signin",
      id: "signin-form",
      onsubmit: async (event) => {
        event.preventDefault();
        const api = new Api(input.value.trim());
        try {
          // Any authenticated call checks the key; List with one row is the cheapest.
          await api.call("List", { pageSize: 1 });
        } catch (err) {
          message.textContent = err.code === "unauthenticated" ? "That key was not accepted." : errorText(err);
          message.hidden = false;
          return;
        }
        sessionStorage.setItem(KEY_STORAGE, api.key);
        if (!location.hash || location.hash === "#/signin") location.hash = "#/jobs";
        else route();
      },
    },
    h("h1", {}, "Sign in"),
    h("p", { class: "muted" }, "An API key of your organization (", h("code", {}, "kiln create-key"), ", or ", h("code", {}, "var/dev_api_key"), " after ", h("code", {}, "make run"), "). It is kept in this tab's session storage only."),
    h("label", {}, "API key ", input),
    h("button", { type: "submit" }, "Sign in"),
    message,
  );
  view.append(form);
  input.focus();
}

// ---------------------------------------------------------------- job list

function renderJobList(api, root) {
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const state = {
    status: params.get("status") || "",
    meta: params.get("meta") || "",
    tokens: [""], // page tokens of the pages visited; tokens[i] opens page i
    page: 0,
    nextToken: "",
    order: [],
    jobs: new Map(),
    watches: new Map(),
    timer: null,
    stopped: false,
  };

  const statusSelect = h("select", { id: "filter-status", name: "status" }, h("option", { value: "" }, "any status"), STATUSES.map((s) => h("option", { value: s, selected: s === state.status }, fmt.status(s))));
  const metaInput = h("input", { id: "filter-meta", name: "meta", placeholder: "key=value", value: state.meta, size: 18 });
  const tbody = h("tbody", { id: "job-rows" });
  const pageInfo = h("span", { class: "muted" });
  const prev = h("button", { type: "button", id: "page-prev", onclick: () => goPage(state.page - 1) }, "← Newer");
  const next = h("button", { type: "button", id: "page-next", onclick: () => goPage(state.page + 1) }, "Older →");
  const note = h("p", { class: "muted small" });

  statusSelect.addEventListener("change", () => {
    state.status = statusSelect.value;
    resetPaging();
  });
  metaInput.addEventListener("change", () => {
    state.meta = metaInput.value.trim();
    render();
    syncWatches();
  });

  root.append(
    h("section", { class: "toolbar" }, h("h1", {}, "Jobs"), h("label", {}, "Status ", statusSelect), h("label", {}, "Metadata ", metaInput), h("span", { class: "grow" }), prev, pageInfo, next),
    renderCreatePanel(api, (job) => {
      // Show the new job at once (the next List would find it too) and watch it live.
      if (state.page === 0 && (!state.status || state.status === job.status)) {
        state.jobs.set(job.id, job);
        if (!state.order.includes(job.id)) state.order.unshift(job.id);
        render();
        syncWatches();
      }
    }),
    h(
      "table",
      { class: "jobs" },
      h("thead", {}, h("tr", {}, ["Job", "Created", "Status", "Stage", "Progress", "Priority", "Outputs", "Metadata", "Cost"].map((c) => h("th", {}, c)))),
      tbody,
    ),
    note,
  );

  function metaFilter() {
    const [key, ...rest] = state.meta.split("=");
    if (!key) return null;
    return { key: key.trim(), value: rest.join("=").trim() };
  }

  function visibleIds() {
    const filter = metaFilter();
    return state.order.filter((id) => {
      const job = state.jobs.get(id);
      if (!job) return false;
      if (state.status && job.status !== state.status && !state.watches.has(id)) return false;
      if (!filter) return true;
      const value = (job.metadata || {})[filter.key];
      return value !== undefined && (filter.value === "" || value === filter.value);
    });
  }

  function row(job) {
    const meta = Object.entries(job.metadata || {}).map(([k, v]) => h("span", { class: "tag" }, `${k}=${v}`));
    const cost = job.actualCost ? fmt.money(job.actualCost) : job.estimatedCost ? `~${fmt.money(job.estimatedCost)}` : "—";
    return h(
      "tr",
      { "data-job-id": job.id, "data-status": fmt.status(job.status), "data-progress": Number(job.progress || 0).toFixed(1), onclick: () => (location.hash = `#/jobs/${job.id}`) },
      h("td", {}, h("a", { href: `#/jobs/${job.id}` }, job.id)),
      h("td", {}, fmt.time(job.createTime)),
      h("td", {}, fmt.badge(job.status), job.error ? h("span", { class: "error small", title: job.error.message }, ` ${job.error.code}`) : null),
      h("td", {}, fmt.stage(job.stage)),
      h("td", {}, fmt.progressBar(job.progress)),
      h("td", {}, fmt.priority(job.priority)),
      h("td", {}, (job.outputs || []).map((o) => h("span", { class: `tag o-${fmt.outputStatus(o.status).toLowerCase()}`, title: fmt.outputStatus(o.status) }, fmt.outputType(o.spec?.type)))),
      h("td", {}, meta),
      h("td", {}, cost),
    );
  }

  function render() {
    const ids = visibleIds();
    tbody.replaceChildren(...ids.map((id) => row(state.jobs.get(id))));
    if (!ids.length) tbody.append(h("tr", {}, h("td", { colspan: 9, class: "muted" }, state.order.length ? "No job on this page matches the metadata filter." : "No jobs yet.")));
    prev.disabled = state.page === 0;
    next.disabled = !state.nextToken;
    pageInfo.textContent = `page ${state.page + 1}`;
    const live = [...state.watches.keys()].length;
    note.textContent = `${live} live Watch stream${live === 1 ? "" : "s"}; new jobs are found by re-listing every ${LIST_REFRESH_MS / 1000} s.` + (metaFilter() ? " The metadata filter applies to the jobs of this page (List has no metadata filter)." : "");
  }

  function updateRow(id) {
    const old = tbody.querySelector(`tr[data-job-id="${id}"]`);
    if (old) old.replaceWith(row(state.jobs.get(id)));
  }

  function syncWatches() {
    const visible = new Set(visibleIds());
    for (const [id, watch] of state.watches) {
      const job = state.jobs.get(id);
      if (!visible.has(id) || watch.done || (job && TERMINAL.has(job.status))) {
        watch.stop();
        state.watches.delete(id);
      }
    }
    for (const id of visible) {
      const job = state.jobs.get(id);
      if (TERMINAL.has(job.status) || state.watches.has(id)) continue;
      const watch = new JobWatch(api, id, {
        onEvent: (event) => {
          if (state.stopped) return;
          window.kiln.watchEvents += 1;
          state.jobs.set(id, applyEvent(state.jobs.get(id), event));
          updateRow(id);
          if (watch.done || TERMINAL.has(state.jobs.get(id).status)) {
            watch.stop();
            state.watches.delete(id);
          }
        },
      });
      state.watches.set(id, watch);
    }
  }

  async function refresh() {
    try {
      window.kiln.listCalls += 1;
      const answer = await api.call("List", { pageSize: 20, pageToken: state.tokens[state.page], statuses: state.status ? [state.status] : [] });
      if (state.stopped) return;
      state.order = (answer.jobs || []).map((job) => job.id);
      for (const job of answer.jobs || []) {
        // A job with an open Watch has the fresher live state; List fills in what events do
        // not carry (costs, input info, times).
        const live = state.watches.has(job.id) ? state.jobs.get(job.id) : null;
        state.jobs.set(job.id, live ? { ...job, status: live.status, stage: live.stage, progress: live.progress, outputs: live.outputs, error: live.error } : job);
      }
      state.nextToken = answer.nextPageToken || "";
      render();
      syncWatches();
    } catch (err) {
      if (err.code === "unauthenticated") signOut();
      else toast(errorText(err), true);
    }
  }

  function resetPaging() {
    state.tokens = [""];
    state.page = 0;
    history.replaceState(null, "", `#/jobs?${new URLSearchParams({ status: state.status, meta: state.meta })}`);
    refresh();
  }

  function goPage(page) {
    if (page < 0) return;
    if (page > state.page) {
      if (!state.nextToken) return;
      state.tokens[page] = state.nextToken;
    }
    state.page = page;
    refresh();
  }

  refresh();
  state.timer = setInterval(refresh, LIST_REFRESH_MS);
  return () => {
    state.stopped = true;
    clearInterval(state.timer);
    for (const watch of state.watches.values()) watch.stop();
  };
}

// ---------------------------------------------------------------- create

const EXAMPLE_REQUEST = {
  input_url: "file:///path/to/var/inputs/sample.mp4",
  outputs: [
    { preset: "hls_h264_ladder" },
    { type: "OUTPUT_TYPE_MP4", video: [{ codec: "VIDEO_CODEC_H264", resolution: "480p" }] },
  ],
  metadata: { team: "web" },
};

function renderCreatePanel(api, onCreated) {
  const message = h("div", { class: "error", hidden: true, id: "create-error" });
  const inputUrl = h("input", { id: "create-input", name: "input_url", placeholder: "file:///…/var/inputs/sample.mp4 or https://…", size: 60 });
  const presetBox = h("div", { class: "presets", id: "create-presets" }, h("span", { class: "muted" }, "loading presets…"));
  const prioritySelect = h("select", { id: "create-priority" }, ["PRIORITY_STANDARD", "PRIORITY_ECONOMY", "PRIORITY_PREMIUM"].map((p) => h("option", { value: p }, fmt.priority(p))));
  const delayed = h("input", { type: "checkbox", id: "create-delayed" });
  const metadata = h("textarea", { id: "create-metadata", rows: 2, cols: 30, placeholder: "team=web\ncampaign=spring" });
  const json = h("textarea", { id: "create-json", rows: 12, cols: 80, spellcheck: "false" });
  json.value = JSON.stringify(EXAMPLE_REQUEST, null, 2);
  const modeJson = h("input", { type: "radio", name: "create-mode", id: "mode-json", value: "json" });
  const modePreset = h("input", { type: "radio", name: "create-mode", id: "mode-preset", value: "preset", checked: true });
  const presetFields = h("div", { class: "preset-fields" }, h("label", {}, "Input URL ", inputUrl), h("div", {}, "Outputs from presets: ", presetBox), h("label", {}, "Priority ", prioritySelect), h("label", {}, delayed, " delayed start (wait for Confirm after the estimate)"), h("label", { class: "top" }, "Metadata ", metadata));
  const jsonFields = h("div", { class: "json-fields", hidden: true }, h("p", { class: "muted small" }, "A whole CreateRequest as Connect JSON (snake_case or camelCase field names)."), json);
  const switchMode = () => {
    presetFields.hidden = modeJson.checked;
    jsonFields.hidden = !modeJson.checked;
  };
  modeJson.addEventListener("change", switchMode);
  modePreset.addEventListener("change", switchMode);

  const panel = h(
    "details",
    { class: "card create", id: "create-panel" },
    h("summary", {}, "New job"),
    h(
      "form",
      {
        id: "create-form",
        onsubmit: async (event) => {
          event.preventDefault();
          message.hidden = true;
          let request;
          try {
            request = modeJson.checked ? JSON.parse(json.value) : presetRequest();
          } catch (err) {
            message.textContent = `Not valid JSON: ${err.message}`;
            message.hidden = false;
            return;
          }
          if (!request) return;
          try {
            const answer = await api.call("Create", request);
            toast(`Created ${answer.job.id}`);
            onCreated(answer.job);
          } catch (err) {
            message.replaceChildren(errorText(err), ...violations(err).map((v) => h("div", {}, `${v.field}: ${v.description}`)));
            message.hidden = false;
          }
        },
      },
      h("div", { class: "modes" }, h("label", {}, modePreset, " Presets"), h("label", {}, modeJson, " JSON spec")),
      presetFields,
      jsonFields,
      h("button", { type: "submit", id: "create-submit" }, "Create"),
      message,
    ),
  );

  function presetRequest() {
    const chosen = [...presetBox.querySelectorAll("input:checked")].map((box) => ({ preset: box.value }));
    if (!chosen.length || !inputUrl.value.trim()) {
      message.textContent = "Give an input URL and pick at least one preset.";
      message.hidden = false;
      return null;
    }
    const meta = {};
    for (const line of metadata.value.split("\n")) {
      const [key, ...rest] = line.split("=");
      if (key.trim()) meta[key.trim()] = rest.join("=").trim();
    }
    return { inputUrl: inputUrl.value.trim(), outputs: chosen, priority: prioritySelect.value, delayedStart: delayed.checked, metadata: meta };
  }

  api
    .call("ListPresets", { pageSize: 100 }, "kiln.v1.PresetService")
    .then((answer) => {
      presetBox.replaceChildren(...(answer.presets || []).map((preset) => h("label", { class: "preset", title: preset.description || "" }, h("input", { type: "checkbox", value: preset.id }), ` ${preset.id}${preset.system ? "" : ` (${preset.name})`}`)));
    })
    .catch((err) => presetBox.replaceChildren(h("span", { class: "error" }, errorText(err))));
  return panel;
}

// Field violations of a google.rpc.BadRequest detail, when the server sent its debug form.
function violations(err) {
  const found = [];
  for (const detail of err.details || []) {
    for (const v of detail.debug?.fieldViolations || []) found.push(v);
  }
  return found;
}

export function signOut() {
  sessionStorage.removeItem(KEY_STORAGE);
  location.hash = "#/signin";
  route();
}

document.getElementById("sign-out").addEventListener("click", signOut);
window.addEventListener("hashchange", route);
route();
