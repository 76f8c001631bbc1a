// The job page: status, per-output progress, input info, costs, error, actions, the event
// timeline from Watch, and players for every completed output.

import { JobWatch, TERMINAL, applyEvent, eventKind } from "./api.js";
import * as fmt from "./format.js";
import { renderOutputMedia } from "./players.js";

const { h } = fmt;
const RETRYABLE = new Set(["JOB_STATUS_FAILED", "JOB_STATUS_REJECTED", "JOB_STATUS_CANCELED", "JOB_STATUS_PARTIAL"]);

export function renderJobPage(api, id, root, { toast, errorText }) {
  let job = null;
  let stopped = false;
  let scheduled = false;
  const timeline = [];
  const mounted = new Map(); // output id -> {key, node, dispose}: players survive re-renders

  const header = h("section", { class: "job-head" });
  const actions = h("div", { class: "actions", id: "job-actions" });
  const errorBox = h("section", { class: "card error-box", id: "job-error", hidden: true });
  const summary = h("section", { class: "grid" });
  const outputsBox = h("section", { id: "outputs" });
  const timelineList = h("ol", { class: "timeline", id: "timeline" });
  root.append(
    h("p", {}, h("a", { href: "#/jobs" }, "← all jobs")),
    header,
    actions,
    errorBox,
    summary,
    h("h2", {}, "Outputs"),
    outputsBox,
    h("details", { class: "card", open: true }, h("summary", {}, "Event timeline (Watch)"), timelineList),
  );

  function scheduleRender() {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(() => {
      scheduled = false;
      if (!stopped && job) render();
    });
  }

  function render() {
    root.dataset.status = fmt.status(job.status);
    header.replaceChildren(
      h("h1", {}, job.id, " ", fmt.badge(job.status)),
      h("div", { class: "row" }, fmt.progressBar(job.progress), h("span", { class: "muted", id: "job-eta" }, fmt.eta(job.etaSeconds)), h("span", { class: "muted", id: "job-stage" }, job.stage ? `stage: ${fmt.stage(job.stage)}` : ""), h("span", { class: "muted" }, `attempt ${job.attempt || 1} · priority ${fmt.priority(job.priority)} · created ${fmt.time(job.createTime)}`)),
    );
    renderActions();
    if (job.error) {
      errorBox.hidden = false;
      errorBox.replaceChildren(h("h2", {}, "Error"), h("p", {}, h("code", { id: "error-code" }, job.error.code), " ", job.error.message), h("p", { class: "muted small" }, `stage ${fmt.stage(job.error.stage) || "—"} · ${job.error.retryable ? "retryable" : "not retryable"}`));
    } else errorBox.hidden = true;
    summary.replaceChildren(renderInput(), renderCosts(), renderRequest());
    renderOutputs();
  }

  let shownActions = "";
  function renderActions() {
    const buttons = [];
    const act = (label, idName, method, confirmText) =>
      h(
        "button",
        {
          type: "button",
          id: idName,
          onclick: async (event) => {
            if (confirmText && !window.confirm(confirmText)) return;
            event.target.disabled = true;
            try {
              const answer = await api.call(method, { id });
              job = { ...answer.job };
              toast(`${label}: ${fmt.status(job.status)}${answer.deletedFiles ? `, ${answer.deletedFiles} files removed` : ""}`);
              if (!TERMINAL.has(job.status)) ensureWatch();
              render();
            } catch (err) {
              toast(errorText(err), true);
              event.target.disabled = false;
            }
          },
        },
        label,
      );
    if (job.status === "JOB_STATUS_AWAITING_CONFIRMATION") {
      buttons.push(h("span", { class: "estimate" }, `Estimated cost ${fmt.money(job.estimatedCost)}`), act("Confirm", "action-confirm", "Confirm", `Start this job? Estimated cost ${fmt.money(job.estimatedCost)}.`));
    }
    if (!TERMINAL.has(job.status)) buttons.push(act("Cancel", "action-cancel", "Cancel", "Cancel this job? Completed outputs stay."));
    if (RETRYABLE.has(job.status)) buttons.push(act("Retry", "action-retry", "Retry"));
    if (TERMINAL.has(job.status) && (job.outputs || []).some((o) => (o.files || []).length)) {
      buttons.push(act("Delete outputs", "action-delete", "DeleteOutputs", "Delete every stored file of this job? The record stays."));
    }
    // Progress events re-render the page several times a second: rebuilding buttons that
    // did not change would swap the element under a user's click (mousedown on the old
    // button, mouseup on the new one) and the click would be lost.
    const shown = JSON.stringify(buttons.map((b) => [b.id, b.textContent]));
    if (shown === shownActions) return;
    shownActions = shown;
    actions.replaceChildren(...buttons);
  }

  function renderInput() {
    const info = job.inputInfo;
    const rows = [h("tr", {}, h("th", {}, "URL"), h("td", { class: "wrap" }, job.inputUrl))];
    for (const url of job.concatInputUrls || []) rows.push(h("tr", {}, h("th", {}, "then"), h("td", { class: "wrap" }, url)));
    if (info) {
      rows.push(h("tr", {}, h("th", {}, "Container"), h("td", {}, info.container || "—")), h("tr", {}, h("th", {}, "Duration"), h("td", {}, fmt.seconds(info.durationSeconds))), h("tr", {}, h("th", {}, "Size"), h("td", {}, fmt.bytes(info.sizeBytes))), h("tr", {}, h("th", {}, "Bitrate"), h("td", {}, fmt.bitrate(info.bitrate))));
      for (const s of info.streams || []) {
        const what = s.kind === "video" ? `${s.width}×${s.height} @ ${Number(s.frameRate || 0).toFixed(2)} fps${s.rotation ? `, rotated ${s.rotation}°` : ""}${s.pixelFormat ? `, ${s.pixelFormat}` : ""}` : s.kind === "audio" ? `${s.channels || 0} ch, ${s.sampleRate || 0} Hz` : "";
        rows.push(h("tr", {}, h("th", {}, `#${s.index || 0} ${s.kind}`), h("td", {}, `${s.codec || "?"} ${what} ${s.bitrate ? `(${fmt.bitrate(s.bitrate)})` : ""}`)));
      }
    } else rows.push(h("tr", {}, h("td", { colspan: 2, class: "muted" }, "Not probed yet.")));
    return h("div", { class: "card", id: "input-info" }, h("h2", {}, "Input"), h("table", { class: "kv" }, rows));
  }

  function renderCosts() {
    const rows = [h("tr", {}, h("th", {}, ""), h("th", {}, "estimate"), h("th", {}, "actual")), h("tr", {}, h("th", {}, "Job"), h("td", { id: "cost-estimate" }, fmt.money(job.estimatedCost)), h("td", { id: "cost-actual" }, fmt.money(job.actualCost)))];
    (job.outputs || []).forEach((o, i) => rows.push(h("tr", {}, h("th", {}, `#${i + 1} ${fmt.outputType(o.spec?.type)}`), h("td", {}, fmt.money(o.estimatedCost)), h("td", {}, fmt.money(o.actualCost)))));
    return h("div", { class: "card" }, h("h2", {}, "Cost"), h("table", { class: "kv" }, rows), variantCosts());
  }

  // Adaptive outputs price each video variant; the variants add up to the output's figures.
  function variantCosts() {
    const ladders = (job.outputs || []).map((o, i) => [o, i]).filter(([o]) => (o.variantPricing || []).length);
    if (!ladders.length) return null;
    const head = h("tr", {}, ...["output", "variant", "codec", "priced at", "rate / min", "estimate", "actual", "billed"].map((t) => h("th", {}, t)));
    const rows = [];
    for (const [o, i] of ladders) {
      for (const v of o.variantPricing) {
        const name = v.dropped ? "dropped" : v.name;
        rows.push(
          h(
            "tr",
            { class: "variant-cost", "data-output-id": o.id, "data-variant": String(v.index || 0), "data-estimate-micros": v.estimatedCost ? String(v.estimatedCost.micros || 0) : "", "data-actual-micros": v.actualCost ? String(v.actualCost.micros || 0) : "" },
            h("td", {}, `#${i + 1} ${fmt.outputType(o.spec?.type)}`),
            h("td", {}, `${name} (${v.resolution || "source"})`),
            h("td", {}, `${fmt.short(v.codec, "VIDEO_CODEC_")} ${fmt.short(v.quality, "QUALITY_").toLowerCase()}`),
            h("td", {}, `${v.pricedHeight || 0}p @ ${Number(v.fps || 0).toFixed(2)} fps`),
            h("td", {}, fmt.money(v.ratePerMinute)),
            h("td", {}, fmt.money(v.estimatedCost)),
            h("td", {}, fmt.money(v.actualCost)),
            h("td", {}, v.actualCost ? fmt.seconds(v.billedSeconds || 0) : "—"),
          ),
        );
      }
    }
    return h("details", { id: "variant-costs", open: "" }, h("summary", {}, "Per variant"), h("table", { class: "variant-costs" }, head, rows));
  }

  function renderRequest() {
    const rows = [];
    for (const [k, v] of Object.entries(job.metadata || {})) rows.push(h("tr", {}, h("th", {}, k), h("td", {}, v)));
    const times = [["created", job.createTime], ["probed", job.probeTime], ["confirmed", job.confirmTime], ["started", job.startTime], ["ended", job.completeTime]];
    for (const [label, ts] of times) if (ts) rows.push(h("tr", {}, h("th", {}, label), h("td", {}, fmt.time(ts))));
    if (job.webhookUrl) rows.push(h("tr", {}, h("th", {}, "webhook"), h("td", { class: "wrap" }, job.webhookUrl)));
    if (job.idempotencyKey) rows.push(h("tr", {}, h("th", {}, "idempotency key"), h("td", {}, job.idempotencyKey)));
    return h("div", { class: "card" }, h("h2", {}, "Details"), h("table", { class: "kv" }, rows));
  }

  function renderOutputs() {
    const outputs = job.outputs || [];
    const sprite = outputs.find((o) => o.status === "OUTPUT_STATUS_COMPLETED" && o.spec?.thumbnail?.mode === "THUMBNAIL_MODE_SPRITE" && o.playbackBaseUrl);
    const cards = outputs.map((output, index) => {
      const card = h(
        "article",
        { class: "card output", "data-output-id": output.id, "data-output-type": fmt.outputType(output.spec?.type), "data-output-status": fmt.outputStatus(output.status) },
        h("h3", {}, `#${index + 1} ${fmt.outputType(output.spec?.type)} `, h("span", { class: `tag o-${fmt.outputStatus(output.status).toLowerCase()}` }, fmt.outputStatus(output.status)), h("span", { class: "muted small" }, ` ${output.id}${output.spec?.preset ? ` · preset ${output.spec.preset}` : ""}`)),
        fmt.progressBar(output.progress),
        output.etaSeconds === undefined ? null : h("p", { class: "muted small eta" }, fmt.eta(output.etaSeconds)),
        variantsLine(output),
        qcRow(output),
        output.error ? h("p", { class: "error" }, h("code", {}, output.error.code), ` ${output.error.message}`) : null,
        (output.notes || []).map((n) => h("p", { class: "muted small" }, `note: ${n}`)),
      );
      // Output events carry no links (Get and the completed event do): players wait for the
      // playback URL.
      if (output.status === "OUTPUT_STATUS_COMPLETED" && output.playbackUrl && (output.files || []).length) {
        // A player is built once per output (and per set of files): re-renders keep it playing.
        const key = output.files.map((f) => f.path).join("|") + (sprite ? `|${sprite.id}` : "");
        let media = mounted.get(output.id);
        if (!media || media.key !== key) {
          media?.dispose();
          const node = h("div", { class: "media" });
          media = { key, node, dispose: renderOutputMedia(output, node, { sprite, errorText, mintGrant }) };
          mounted.set(output.id, media);
        }
        card.append(media.node, filesTable(output));
      } else if (mounted.has(output.id)) {
        mounted.get(output.id).dispose();
        mounted.delete(output.id);
      }
      return card;
    });
    outputsBox.replaceChildren(...cards);
  }

  // A playback grant for one encrypted output (its key token), for the signed-in key.
  async function mintGrant(outputId) {
    const answer = await api.call("CreatePlaybackGrant", { id, outputId });
    return answer.grants[0];
  }

  // The quality-control report (docs/qc.md): a verdict badge, then every check that did not pass.
  function qcRow(output) {
    const report = output.qc;
    if (!report) return null;
    const word = (v) => fmt.short(v, "QC_VERDICT_").toLowerCase();
    const flagged = (report.checks || []).filter((c) => c.verdict !== "QC_VERDICT_PASS");
    const checks = flagged.map((c) => h("span", { class: `tag qc-${word(c.verdict)}`, "data-check": c.name, title: c.detail || "" }, `${c.name} ${Number(c.value || 0)} ${c.unit}${c.threshold === undefined ? "" : ` (threshold ${c.threshold})`}`));
    return h("p", { class: "qc small", "data-qc-verdict": word(report.verdict) }, "QC ", h("span", { class: `badge qc-${word(report.verdict)}` }, word(report.verdict)), " ", checks);
  }

  function variantsLine(output) {
    const variants = (output.spec?.video || []).map((v) => `${fmt.short(v.codec, "VIDEO_CODEC_")} ${v.resolution}${v.bitrateKbps ? ` ${v.bitrateKbps} kb/s` : ""}`);
    return variants.length ? h("p", { class: "muted small" }, variants.join(" · ")) : null;
  }

  function filesTable(output) {
    const files = output.files || [];
    return h(
      "details",
      { class: "files" },
      h("summary", {}, `${files.length} file${files.length === 1 ? "" : "s"}, ${fmt.bytes(files.reduce((n, f) => n + Number(f.sizeBytes || 0), 0))}`),
      h("table", {}, h("tr", {}, ["path", "size", "type", "codec", "size px", "duration", "bitrate"].map((c) => h("th", {}, c))), files.map((f) => h("tr", {}, h("td", {}, f.url ? h("a", { href: f.url, target: "_blank", rel: "noopener" }, f.path) : f.path), h("td", {}, fmt.bytes(f.sizeBytes)), h("td", {}, f.mimeType || ""), h("td", {}, f.codec || ""), h("td", {}, f.width ? `${f.width}×${f.height}` : ""), h("td", {}, f.durationSeconds ? fmt.seconds(f.durationSeconds) : ""), h("td", {}, fmt.bitrate(f.bitrate))))),
    );
  }

  function describe(event) {
    const kind = eventKind(event);
    if (kind === "snapshot") return `snapshot: ${fmt.status(event.snapshot.job.status)}`;
    if (kind === "statusChange") {
      const c = event.statusChange;
      return `${fmt.status(c.fromStatus)} → ${fmt.status(c.toStatus)}${c.stage ? ` (${fmt.stage(c.stage)})` : ""}${c.error ? ` ${c.error.code}: ${c.error.message}` : ""}`;
    }
    if (kind === "progress") return `progress ${Number(event.progress.progress || 0).toFixed(1)} %${event.progress.stage ? ` (${fmt.stage(event.progress.stage)})` : ""}`;
    if (kind === "output") {
      const o = event.output.output;
      const index = (job?.outputs || []).findIndex((x) => x.id === o.id);
      return `output #${index + 1} ${fmt.outputStatus(o.status)} ${Number(o.progress || 0).toFixed(1)} %${o.error ? ` ${o.error.code}` : ""}`;
    }
    if (kind === "completed") return `completed: ${fmt.status(event.completed.job.status)}`;
    return kind;
  }

  function addTimeline(event) {
    const kind = eventKind(event);
    if (kind === "heartbeat" || kind === "snapshot") return;
    // Consecutive progress events fold into one line, so a long encode stays readable.
    const last = timelineList.lastElementChild;
    const text = describe(event);
    const time = event.time ? new Date(event.time).toLocaleTimeString() : "";
    const item = h("li", { class: `ev-${kind}`, "data-kind": kind }, h("span", { class: "seq" }, `#${event.sequence || 0}`), h("span", { class: "muted" }, time), " ", text);
    timeline.push(event);
    if (last && last.dataset.kind === kind && kind === "progress") last.replaceWith(item);
    else timelineList.append(item);
  }

  let refreshing = false;
  let refreshAgain = false;
  function refreshDetails() {
    if (refreshing) {
      refreshAgain = true;
      return;
    }
    refreshing = true;
    api
      .call("Get", { id })
      .then((answer) => {
        // An answer from before a later status change is dropped; that change asks again.
        if (!stopped && answer.job.status === job.status) {
          job = { ...answer.job, progress: Math.max(Number(answer.job.progress || 0), Number(job.progress || 0)) };
          scheduleRender();
        }
      })
      .catch(() => {})
      .finally(() => {
        refreshing = false;
        if (refreshAgain && !stopped) {
          refreshAgain = false;
          refreshDetails();
        }
      });
  }

  let watch = null;
  function ensureWatch() {
    if (watch && !watch.done) return;
    // after_sequence=0: the whole event log for the timeline, then live events.
    const after = watch ? watch.lastSequence ?? 0 : 0;
    watch = new JobWatch(api, id, {
      afterSequence: after,
      onEvent: (event) => {
        if (stopped) return;
        window.kiln.watchEvents += 1;
        addTimeline(event);
        job = applyEvent(job, event);
        // Status changes carry no costs, input info or times: fetch the job for those.
        if ("statusChange" in event) refreshDetails();
        const done = event.output?.output;
        if (done?.status === "OUTPUT_STATUS_COMPLETED" && !done.playbackUrl) refreshDetails();
        scheduleRender();
      },
      onError: (err) => toast(`Watch: ${errorText(err)} (resuming)`, true),
    });
  }

  api
    .call("Get", { id })
    .then((answer) => {
      if (stopped) return;
      job = answer.job;
      render();
      ensureWatch();
    })
    .catch((err) => root.append(h("p", { class: "error" }, errorText(err))));

  return () => {
    stopped = true;
    watch?.stop();
    for (const media of mounted.values()) media.dispose();
  };
}
