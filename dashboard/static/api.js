// Connect JSON over fetch: unary calls are plain POSTs; Watch is a server stream of
// enveloped frames (1 flag byte, 4-byte big-endian length, JSON; flag 2 ends the stream).

const END_STREAM = 0x02;
const JOBS = "kiln.v1.JobService";

export class ApiError extends Error {
  constructor(code, message, httpStatus = 0, details = []) {
    super(`${code}: ${message}`);
    this.code = code;
    this.rawMessage = message;
    this.httpStatus = httpStatus;
    this.details = details;
  }
}

export const TERMINAL = new Set([
  "JOB_STATUS_COMPLETED",
  "JOB_STATUS_PARTIAL",
  "JOB_STATUS_FAILED",
  "JOB_STATUS_REJECTED",
  "JOB_STATUS_CANCELED",
]);

export class Api {
  constructor(key) {
    this.key = key;
  }

  headers(contentType) {
    return { "Content-Type": contentType, Authorization: `Bearer ${this.key}` };
  }

  async call(method, body = {}, service = JOBS) {
    let response;
    try {
      response = await fetch(`/${service}/${method}`, {
        method: "POST",
        headers: this.headers("application/json"),
        body: JSON.stringify(body),
      });
    } catch (err) {
      throw new ApiError("unavailable", String(err));
    }
    const text = await response.text();
    let data = {};
    try {
      data = text ? JSON.parse(text) : {};
    } catch {
      data = { code: "unknown", message: text };
    }
    if (!response.ok) {
      throw new ApiError(data.code || "unknown", data.message || text, response.status, data.details || []);
    }
    return data;
  }

  // Yields each WatchResponse; returns at the end frame; throws ApiError on a stream error.
  async *watch(request, signal) {
    const payload = new TextEncoder().encode(JSON.stringify(request));
    const envelope = new Uint8Array(5 + payload.length);
    new DataView(envelope.buffer).setUint32(1, payload.length, false);
    envelope.set(payload, 5);
    let response;
    try {
      response = await fetch(`/${JOBS}/Watch`, {
        method: "POST",
        headers: { ...this.headers("application/connect+json"), "Connect-Protocol-Version": "1" },
        body: envelope,
        signal,
      });
    } catch (err) {
      if (signal?.aborted) return;
      throw new ApiError("unavailable", String(err));
    }
    if (!response.ok) {
      const text = await response.text();
      let data = {};
      try {
        data = JSON.parse(text);
      } catch {
        data = { code: "unknown", message: text };
      }
      throw new ApiError(data.code || "unknown", data.message || text, response.status);
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = new Uint8Array(0);
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (err) {
        if (signal?.aborted) return;
        throw new ApiError("unavailable", String(err));
      }
      if (chunk.done) break;
      const joined = new Uint8Array(buffer.length + chunk.value.length);
      joined.set(buffer);
      joined.set(chunk.value, buffer.length);
      buffer = joined;
      while (buffer.length >= 5) {
        const flags = buffer[0];
        const length = new DataView(buffer.buffer, buffer.byteOffset, 5).getUint32(1, false);
        if (buffer.length < 5 + length) break;
        const message = JSON.parse(decoder.decode(buffer.subarray(5, 5 + length)));
        buffer = buffer.slice(5 + length);
        if (flags & END_STREAM) {
          if (message.error) throw new ApiError(message.error.code, message.error.message || "");
          return;
        }
        yield message;
      }
    }
    if (!signal?.aborted) throw new ApiError("unavailable", "stream closed without an end frame");
  }
}

// The kind of a WatchResponse: snapshot, statusChange, progress, output, heartbeat, completed.
export function eventKind(event) {
  for (const kind of ["snapshot", "statusChange", "progress", "output", "heartbeat", "completed"]) {
    if (kind in event) return kind;
  }
  return "unknown";
}

// Applies one Watch event to a job object (a copy is returned; the input is not changed).
export function applyEvent(job, event) {
  const kind = eventKind(event);
  if (kind === "snapshot") return event.snapshot.job;
  if (kind === "completed") return event.completed.job;
  if (!job) return job;
  const next = { ...job };
  if (kind === "statusChange") {
    const change = event.statusChange;
    next.status = change.toStatus;
    next.stage = change.stage;
    // A new status makes the last estimate stale; the next progress event brings one.
    delete next.etaSeconds;
    if (change.error) next.error = change.error;
    else if (!TERMINAL.has(change.toStatus)) delete next.error;
  } else if (kind === "progress") {
    next.progress = event.progress.progress || 0;
    // Absent in the event: the server no longer has an estimate, so none is shown.
    if (event.progress.etaSeconds === undefined) delete next.etaSeconds;
    else next.etaSeconds = event.progress.etaSeconds;
    if (event.progress.stage) next.stage = event.progress.stage;
  } else if (kind === "output") {
    const output = event.output.output;
    next.outputs = (job.outputs || []).map((o) => {
      if (o.id !== output.id) return o;
      const merged = { ...o, ...output };
      if (output.etaSeconds === undefined) delete merged.etaSeconds;
      return merged;
    });
  }
  return next;
}

// One Watch kept open: resumes with after_sequence after a dropped stream (server restart,
// network), until the job is terminal or stop() is called.
export class JobWatch {
  constructor(api, id, { onEvent, onError, afterSequence } = {}) {
    this.api = api;
    this.id = id;
    this.onEvent = onEvent || (() => {});
    this.onError = onError || (() => {});
    this.lastSequence = afterSequence;
    this.controller = new AbortController();
    this.done = false;
    this.run();
  }

  stop() {
    this.done = true;
    this.controller.abort();
  }

  async run() {
    let failures = 0;
    while (!this.done) {
      const request = { id: this.id };
      if (this.lastSequence !== undefined) request.afterSequence = String(this.lastSequence);
      try {
        for await (const event of this.api.watch(request, this.controller.signal)) {
          failures = 0;
          const sequence = Number(event.sequence || 0);
          if (eventKind(event) !== "heartbeat" || this.lastSequence === undefined) {
            this.lastSequence = Math.max(this.lastSequence ?? 0, sequence);
          }
          this.onEvent(event);
          if ("completed" in event) this.done = true;
        }
        // A clean end: completed was the last event, or (resumed at the end) nothing left.
        this.done = true;
      } catch (err) {
        if (this.done) return;
        const retryable = err.code === "unavailable" || err.code === "unknown" || err.code === "internal";
        this.onError(err);
        if (!retryable) {
          this.done = true;
          return;
        }
        failures += 1;
        await new Promise((resolve) => setTimeout(resolve, Math.min(500 * 2 ** failures, 5000)));
      }
    }
  }
}
