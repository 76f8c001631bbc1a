// Origins: the organization's own storage (S3 and GCS buckets, HTTP servers) that jobs read
// their input from and write their outputs to. OriginService over Connect JSON.
//
// A secret (S3 secret access key, GCS service-account key) is typed into a password input, sent once in CreateOrigin and cleared from the form whatever the answer:
// the server never returns it, and this page shows only its fingerprint.

import * as fmt from "./format.js";

const { h } = fmt;
const ORIGINS = "kiln.v1.OriginService";
const PAGE_SIZE = 100;
const USES = {
  ORIGIN_USE_INPUT: "input",
  ORIGIN_USE_OUTPUT: "output",
  ORIGIN_USE_INPUT_AND_OUTPUT: "input and output",
};

export function kindOf(origin) {
  for (const kind of ["s3", "gcs", "http"]) if (origin[kind]) return kind;
  return "";
}

// Where the objects are, in one line: a bucket URL and its store, or the base URL.
export function where(origin) {
  const kind = kindOf(origin);
  if (kind === "s3") {
    const s3 = origin.s3;
    const place = `s3://${s3.bucket || ""}/${s3.prefix || ""}`.replace(/\/$/, "");
    const store = s3.endpointUrl || `AWS ${s3.region || "us-east-1"}`;
    return `${place} (${store}${s3.pathStyle ? ", path-style" : ""})`;
  }
  if (kind === "gcs") return `gs://${origin.gcs.bucket || ""}/${origin.gcs.prefix || ""}`.replace(/\/$/, "");
  if (kind === "http") return origin.http.baseUrl || "";
  return "—";
}

// What tells the stored secret apart; never the secret, which answers do not carry.
export function fingerprint(origin) {
  const kind = kindOf(origin);
  if (kind === "s3") return origin.s3.secretAccessKeyFingerprint || "—";
  if (kind === "gcs") return origin.gcs.serviceAccountKeyFingerprint || "server credentials";
  if (kind === "http" && origin.http.headerName) return `${origin.http.headerName}: ${origin.http.headerValueFingerprint || "—"}`;
  return "—";
}

export function renderOrigins(api, root, { toast, errorText, violations }) {
  let stopped = false;
  const tbody = h("tbody", { id: "origin-rows" });
  root.append(
    h("section", { class: "toolbar" }, h("h1", {}, "Origins")),
    h("p", { class: "muted small" }, "Storage of this organization that jobs read from (", h("code", {}, "input_origin_id"), " + ", h("code", {}, "input_path"), ") and write to (", h("code", {}, "output_origin_id"), "). The server tries an origin before saving it; its secret is never shown again, only a fingerprint."),
    renderCreatePanel(api, { toast, errorText, violations, onCreated: refresh }),
    h("table", { class: "origins" }, h("thead", {}, h("tr", {}, ["Name", "Kind", "Where", "Use", "Secret (fingerprint)", "Id", ""].map((c) => h("th", {}, c)))), tbody),
  );

  function row(origin) {
    const remove = h(
      "button",
      {
        type: "button",
        class: "origin-delete",
        onclick: async (event) => {
          if (!window.confirm(`Delete origin ${origin.name} (${origin.id})? Jobs can no longer use it.`)) return;
          event.target.disabled = true;
          try {
            await api.call("DeleteOrigin", { id: origin.id }, ORIGINS);
            toast(`Deleted ${origin.name}`);
            refresh();
          } catch (err) {
            toast(errorText(err), true);
            event.target.disabled = false;
          }
        },
      },
      "Delete",
    );
    return h(
      "tr",
      { "data-origin-id": origin.id },
      h("td", {}, origin.name),
      h("td", {}, kindOf(origin)),
      h("td", { class: "wrap" }, where(origin), origin.publicBaseUrl ? h("div", { class: "muted small" }, `public: ${origin.publicBaseUrl}`) : null),
      h("td", {}, USES[origin.use] || "—"),
      h("td", { class: "fingerprint" }, fingerprint(origin)),
      h("td", { class: "muted small" }, origin.id),
      h("td", {}, remove),
    );
  }

  async function listAll() {
    const origins = [];
    let token = "";
    do {
      const answer = await api.call("ListOrigins", { pageSize: PAGE_SIZE, pageToken: token }, ORIGINS);
      origins.push(...(answer.origins || []));
      token = answer.nextPageToken || "";
    } while (token && !stopped);
    return origins;
  }

  async function refresh() {
    try {
      const origins = await listAll();
      if (stopped) return;
      tbody.replaceChildren(...origins.map(row));
      if (!origins.length) tbody.append(h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No origins yet: jobs use the server's own storage.")));
    } catch (err) {
      if (!stopped) tbody.replaceChildren(h("tr", {}, h("td", { colspan: 7, class: "error" }, errorText(err))));
    }
  }

  refresh();
  return () => {
    stopped = true;
  };
}

function renderCreatePanel(api, { toast, errorText, violations, onCreated }) {
  const message = h("div", { class: "error", hidden: true, id: "origin-error" });
  const text = (id, placeholder, size = 40) => h("input", { id, name: id, placeholder, size, autocomplete: "off" });
  // Secrets: never echoed on screen, never offered by the browser's autofill or password store.
  const secret = (id, placeholder) => h("input", { type: "password", id, name: id, placeholder, size: 40, autocomplete: "new-password" });

  const name = text("origin-name", "renditions", 30);
  const kind = h("select", { id: "origin-kind" }, ["s3", "gcs", "http"].map((k) => h("option", { value: k }, { s3: "S3-compatible bucket", gcs: "Google Cloud Storage bucket", http: "HTTP(S) server (input only)" }[k])));
  const use = h("select", { id: "origin-use" }, h("option", { value: "" }, "default (buckets: input and output; http: input)"), Object.entries(USES).map(([value, label]) => h("option", { value }, label)));
  const publicBaseUrl = text("origin-public-base-url", "https://cdn.example.com (optional)");

  const s3 = {
    endpointUrl: text("origin-s3-endpoint", "https://host:port (empty: AWS S3)"),
    region: text("origin-s3-region", "us-east-1, auto for R2", 16),
    bucket: text("origin-s3-bucket", "bucket", 30),
    prefix: text("origin-s3-prefix", "renditions/2026 (optional)", 30),
    pathStyle: h("input", { type: "checkbox", id: "origin-s3-path-style" }),
    accessKeyId: text("origin-s3-access-key-id", "access key id", 30),
    secretAccessKey: secret("origin-s3-secret", "secret access key"),
  };
  const gcs = {
    bucket: text("origin-gcs-bucket", "bucket", 30),
    prefix: text("origin-gcs-prefix", "prefix (optional)", 30),
    serviceAccountKeyJson: secret("origin-gcs-key", "service-account key JSON (empty: the server's credentials)"),
  };
  // No header fields: the server refuses HTTP origins with credentials for now (workers read
  // them directly and would have to hold the header).
  const http = {
    baseUrl: text("origin-http-base-url", "https://media.example.com/videos"),
  };
  const secrets = [s3.secretAccessKey, gcs.serviceAccountKeyJson];

  const fieldsets = {
    s3: h(
      "div",
      { class: "origin-fields", "data-kind": "s3" },
      h("label", {}, "Endpoint ", s3.endpointUrl),
      h("label", {}, "Region ", s3.region),
      h("label", {}, "Bucket ", s3.bucket),
      h("label", {}, "Prefix ", s3.prefix),
      h("label", {}, s3.pathStyle, " path-style addressing (MinIO, SeaweedFS)"),
      h("label", {}, "Access key id ", s3.accessKeyId),
      h("label", {}, "Secret access key ", s3.secretAccessKey),
    ),
    gcs: h("div", { class: "origin-fields", "data-kind": "gcs" }, h("label", {}, "Bucket ", gcs.bucket), h("label", {}, "Prefix ", gcs.prefix), h("label", {}, "Service-account key ", gcs.serviceAccountKeyJson)),
    http: h("div", { class: "origin-fields", "data-kind": "http" }, h("label", {}, "Base URL ", http.baseUrl), h("span", { class: "muted small" }, "Read without credentials; input paths are appended to the base URL.")),
  };
  const showKind = () => {
    for (const [k, fieldset] of Object.entries(fieldsets)) fieldset.hidden = k !== kind.value;
  };
  kind.addEventListener("change", showKind);
  showKind();

  // Only what was filled in: the server names every required field that is missing.
  function filled(fields) {
    const out = {};
    for (const [key, input] of Object.entries(fields)) {
      if (input.type === "checkbox") {
        if (input.checked) out[key] = true;
      } else if (input.value.trim()) {
        out[key] = input.type === "password" ? input.value : input.value.trim();
      }
    }
    return out;
  }

  function request() {
    const origin = { name: name.value.trim() };
    if (use.value) origin.use = use.value;
    if (publicBaseUrl.value.trim()) origin.publicBaseUrl = publicBaseUrl.value.trim();
    origin[kind.value] = filled({ s3, gcs, http }[kind.value]);
    return { origin };
  }

  const submit = h("button", { type: "submit", id: "origin-submit" }, "Check and save");
  const form = h(
    "form",
    {
      id: "origin-form",
      onsubmit: async (event) => {
        event.preventDefault();
        message.hidden = true;
        const body = request();
        // Cleared before the call returns, whatever it answers: the secret stays in no field.
        for (const input of secrets) input.value = "";
        submit.disabled = true;
        try {
          const answer = await api.call("CreateOrigin", body, ORIGINS);
          toast(`Created ${answer.origin.name} (${answer.origin.id})`);
          form.reset();
          showKind();
          onCreated(answer.origin);
        } catch (err) {
          message.replaceChildren(errorText(err), ...violations(err).map((v) => h("div", {}, `${v.field}: ${v.description}`)));
          message.hidden = false;
        } finally {
          submit.disabled = false;
        }
      },
    },
    h("div", { class: "origin-fields" }, h("label", {}, "Name ", name), h("label", {}, "Kind ", kind), h("label", {}, "Use ", use), h("label", {}, "Public base URL ", publicBaseUrl)),
    fieldsets.s3,
    fieldsets.gcs,
    fieldsets.http,
    submit,
    message,
  );
  return h("details", { class: "card create", id: "origin-create-panel" }, h("summary", {}, "New origin"), form);
}
