// Players for completed outputs, every one opened from the output's playback URL: `playbackUrl`
// is the HLS master playlist, else the MPD, else the file itself, and `playbackBaseUrl` the
// folder they sit in. The URL's token is part of its path, so the relative entries of a
// playlist or MPD resolve under the same token and the players' default loaders need no help.
// (files[].url are per-file download links: the files table offers those.)
//
// HLS plays in hls.js where Media Source Extensions exist, else in the browser's own HLS
// (Safari on iOS); DASH in dash.js; CMAF offers both manifests of its one set of segments;
// single files in <video>, <audio> or <img>. Also a sprite scrub preview and a per-segment
// bitrate chart.

import * as fmt from "./format.js";

const { h } = fmt;
const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"];
const NATIVE_HLS = "application/vnd.apple.mpegurl";

// The playback URL of one file of an output, from its path inside the output's folder.
function fileUrl(output, path) {
  return output.playbackBaseUrl + path.split("/").map(encodeURIComponent).join("/");
}

// The path inside the output's folder that a URL names (the key of the job's file list).
function pathInFolder(output, url) {
  const base = new URL(output.playbackBaseUrl, location.href);
  const target = new URL(url, base);
  if (target.origin !== base.origin || !target.pathname.startsWith(base.pathname)) return null;
  return decodeURIComponent(target.pathname.slice(base.pathname.length));
}

const endsWith = (url, suffix) => new URL(url, location.href).pathname.endsWith(suffix);

async function fetchText(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${response.status} ${response.statusText} for ${new URL(url, location.href).pathname.split("/").pop()}`);
  return response.text();
}

function recordError(output, player, type, details, fatal) {
  const entry = { outputId: output.id, player, type: String(type), details: String(details), fatal: Boolean(fatal), time: Date.now() };
  window.kiln.playerErrors.push(entry);
  return entry;
}

export function renderOutputMedia(output, node, { sprite }) {
  const type = fmt.outputType(output.spec?.type);
  const files = output.files || [];
  const url = output.playbackUrl;
  const disposers = [];
  const hlsUrl = endsWith(url, ".m3u8") ? url : null;
  // A CMAF output's playback URL is its HLS master playlist; its MPD is in the same folder.
  const mpdUrl = endsWith(url, ".mpd") ? url : type === "CMAF" ? fileUrl(output, "manifest.mpd") : null;
  node.append(playbackUrls(output, hlsUrl && mpdUrl ? [["HLS", hlsUrl], ["DASH", mpdUrl]] : [["Playback URL", url]]));

  if (hlsUrl && mpdUrl) {
    // One set of segments, two manifests: play either.
    const holder = h("div");
    let current = () => {};
    const pick = h("select", { class: "protocol" }, h("option", { value: "hls" }, "HLS"), h("option", { value: "dash" }, "DASH (dash.js)"));
    const mount = () => {
      current();
      holder.replaceChildren();
      current = pick.value === "hls" ? hlsPlayer(output, hlsUrl, holder, sprite) : dashPlayer(output, mpdUrl, holder, sprite);
    };
    pick.addEventListener("change", mount);
    node.append(h("label", { class: "small" }, "Manifest ", pick), holder);
    mount();
    disposers.push(() => current());
  } else if (hlsUrl) {
    disposers.push(hlsPlayer(output, hlsUrl, node, sprite));
  } else if (mpdUrl) {
    disposers.push(dashPlayer(output, mpdUrl, node, sprite));
  } else if (["MP4", "WEBM", "MOV", "MKV"].includes(type)) {
    disposers.push(filePlayer(output, files[0], node, sprite));
  } else if (["MP3", "M4A", "OPUS", "WAV"].includes(type)) {
    node.append(h("audio", { controls: true, preload: "metadata", src: url }));
  } else if (["JPG", "PNG", "WEBP", "GIF"].includes(type)) {
    const images = files.filter((f) => !f.path.endsWith(".vtt"));
    const isSprite = output.spec?.thumbnail?.mode === "THUMBNAIL_MODE_SPRITE";
    node.append(
      h(
        "div",
        {},
        isSprite ? h("p", { class: "muted small" }, "Sprite sheet: the scrub preview of this job's players (hover the bar under a player).") : null,
        h(
          "div",
          { class: "thumbs" },
          images.slice(0, 24).map((f) => {
            const src = fileUrl(output, f.path);
            return h("a", { href: src, target: "_blank", rel: "noopener" }, h("img", { src, alt: f.path, loading: "lazy", class: isSprite ? "sprite-sheet" : "" }));
          }),
        ),
        images.length > 24 ? h("p", { class: "muted small" }, `and ${images.length - 24} more`) : null,
      ),
    );
  }
  if (hlsUrl || mpdUrl) {
    const chart = h("div", { class: "chart" });
    node.append(chart);
    bitrateChart(output, hlsUrl, mpdUrl, chart).catch((err) => chart.replaceChildren(h("p", { class: "error small" }, `bitrate chart: ${err}`)));
  }
  return () => disposers.forEach((d) => d());
}

// The URLs to hand to any player, each with a copy button, and when they stop working.
function playbackUrls(output, entries) {
  const expires = output.playbackUrlExpireTime ? `works until ${fmt.time(output.playbackUrlExpireTime)}` : "does not expire";
  return h(
    "div",
    { class: "playback-urls small" },
    entries.map(([label, url]) => {
      const field = h("input", { class: "playback-url", readOnly: true, value: url, "aria-label": `${label} URL`, "data-label": label });
      const button = h("button", { type: "button", class: "copy", onclick: () => copyField(field, button) }, "Copy");
      return h("div", { class: "playback-url-row" }, h("span", { class: "muted" }, label), field, button);
    }),
    h("span", { class: "muted" }, expires),
  );
}

async function copyField(field, button) {
  field.select();
  try {
    await navigator.clipboard.writeText(field.value);
    button.textContent = "Copied";
  } catch {
    // The Clipboard API exists only in secure contexts (not plain http to another host):
    // the URL is selected for the keyboard instead.
    button.textContent = "Selected: copy with Ctrl+C";
  }
}

function playerShell(output, kind, node) {
  const video = h("video", { controls: true, muted: true, playsInline: true, preload: "auto", "data-player": kind });
  video.muted = true;
  const picker = h("select", { class: "rendition", "data-testid": "rendition" }, h("option", { value: "auto" }, "auto"));
  const info = h("span", { class: "muted small player-info" });
  const errors = h("ul", { class: "error small player-errors" });
  const wrap = h("div", { class: "player", "data-player": kind }, video, h("div", { class: "player-bar" }, h("label", { class: "small" }, "Rendition ", picker), info), errors);
  node.append(wrap);
  const onError = (type, details, fatal) => {
    recordError(output, kind, type, details, fatal);
    errors.append(h("li", {}, `${kind} ${fatal ? "fatal " : ""}error: ${type} ${details}`));
  };
  video.addEventListener("error", () => onError("media", video.error?.message || `code ${video.error?.code}`, true));
  window.kiln.players[`${output.id}:${kind}`] = { kind, video, picker };
  return { video, picker, info, wrap, onError };
}

function hlsPlayer(output, url, node, sprite) {
  const shell = playerShell(output, "hls", node);
  let stop;
  if (window.Hls?.isSupported()) {
    const hls = hlsJs(shell, output, url);
    stop = () => hls.destroy();
  } else if (shell.video.canPlayType(NATIVE_HLS)) {
    // The browser's own HLS (Safari on iOS has no MSE): it picks renditions itself.
    shell.picker.parentElement.hidden = true;
    shell.info.textContent = "the browser's own HLS player";
    shell.video.src = url;
    window.kiln.players[`${output.id}:hls`].engine = "native";
    stop = () => {
      shell.video.removeAttribute("src");
      shell.video.load();
    };
  } else {
    shell.onError("setup", window.Hls ? "this browser plays HLS neither through MediaSource nor natively" : "hls.js is not installed (make dashboard-deps)", true);
    return () => {};
  }
  const scrub = sprite ? spriteScrub(sprite, shell.video, shell.wrap) : () => {};
  return () => {
    scrub();
    stop();
  };
}

function hlsJs(shell, output, url) {
  const hls = new Hls();
  hls.on(Hls.Events.ERROR, (_event, data) => {
    // "aborted" is hls.js cancelling its own fragment load (a rendition switch, a seek): kept
    // in the error record, but shown as a note rather than a failure.
    if (data.details === Hls.ErrorDetails.INTERNAL_ABORTED && !data.fatal) {
      recordError(output, "hls", data.type, data.details, false);
      shell.info.dataset.note = "a fragment load was aborted by a switch";
      return;
    }
    shell.onError(data.type, data.details, data.fatal);
  });
  hls.on(Hls.Events.MANIFEST_PARSED, () => {
    shell.picker.replaceChildren(h("option", { value: "-1" }, "auto"), ...hls.levels.map((level, i) => h("option", { value: String(i) }, `${level.height || "?"}p · ${Math.round(level.bitrate / 1000)} kb/s`)));
  });
  hls.on(Hls.Events.LEVEL_SWITCHED, (_event, data) => {
    const level = hls.levels[data.level];
    shell.info.textContent = level ? `playing ${level.width}×${level.height}, ${Math.round(level.bitrate / 1000)} kb/s${hls.autoLevelEnabled ? " (auto)" : ""}` : "";
    shell.wrap.dataset.level = String(data.level);
  });
  shell.picker.addEventListener("change", () => {
    // nextLevel switches at the next fragment; currentLevel would abort the one loading.
    hls.nextLevel = Number(shell.picker.value);
  });
  hls.loadSource(url);
  hls.attachMedia(shell.video);
  window.kiln.players[`${output.id}:hls`].engine = hls;
  return hls;
}

function dashPlayer(output, url, node, sprite) {
  const shell = playerShell(output, "dash", node);
  if (!window.dashjs) {
    shell.onError("setup", "dash.js is not installed (make dashboard-deps)", true);
    return () => {};
  }
  const events = dashjs.MediaPlayer.events;
  const player = dashjs.MediaPlayer().create();
  player.updateSettings({ debug: { logLevel: dashjs.Debug.LOG_LEVEL_WARNING } });
  player.on(events.ERROR, (e) => shell.onError("error", e.error ? `${e.error.code} ${e.error.message}` : JSON.stringify(e), true));
  player.on(events.PLAYBACK_ERROR, (e) => shell.onError("playbackError", e.error?.message || "playback error", true));
  player.on(events.STREAM_INITIALIZED, () => {
    const reps = player.getRepresentationsByType("video") || [];
    shell.picker.replaceChildren(h("option", { value: "auto" }, "auto"), ...reps.map((rep) => h("option", { value: rep.id }, `${rep.height || "?"}p · ${Math.round(rep.bandwidth / 1000)} kb/s`)));
  });
  player.on(events.QUALITY_CHANGE_RENDERED, (e) => {
    if (e.mediaType !== "video") return;
    const rep = e.newRepresentation;
    shell.info.textContent = rep ? `playing ${rep.width}×${rep.height}, ${Math.round(rep.bandwidth / 1000)} kb/s` : "";
    shell.wrap.dataset.level = rep ? String(rep.id) : "";
  });
  shell.picker.addEventListener("change", () => {
    const auto = shell.picker.value === "auto";
    player.updateSettings({ streaming: { abr: { autoSwitchBitrate: { video: auto } } } });
    if (!auto) player.setRepresentationForTypeById("video", shell.picker.value, true);
  });
  player.initialize(shell.video, url, false);
  const scrub = sprite ? spriteScrub(sprite, shell.video, shell.wrap) : () => {};
  window.kiln.players[`${output.id}:dash`].engine = player;
  return () => {
    scrub();
    player.destroy();
  };
}

function filePlayer(output, file, node, sprite) {
  const shell = playerShell(output, "file", node);
  shell.picker.parentElement.hidden = true;
  shell.video.src = output.playbackUrl;
  shell.info.textContent = `${file.width || "?"}×${file.height || "?"} ${file.codec || ""}, ${fmt.bitrate(file.bitrate)}`;
  const scrub = sprite ? spriteScrub(sprite, shell.video, shell.wrap) : () => {};
  return () => {
    scrub();
    shell.video.removeAttribute("src");
    shell.video.load();
  };
}

// ---------------------------------------------------------------- sprite scrub preview

function vttTime(text) {
  const parts = text.trim().split(":").map(Number);
  return parts.reduce((total, part) => total * 60 + part, 0);
}

export function parseSpriteVtt(text) {
  const cues = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const m = lines[i].match(/^\s*([\d:.]+)\s+-->\s+([\d:.]+)/);
    if (!m) continue;
    const target = (lines[i + 1] || "").trim();
    const xywh = target.match(/^(.*)#xywh=(\d+),(\d+),(\d+),(\d+)$/);
    if (!xywh) continue;
    cues.push({ start: vttTime(m[1]), end: vttTime(m[2]), image: xywh[1], x: +xywh[2], y: +xywh[3], w: +xywh[4], h: +xywh[5] });
  }
  return cues;
}

function spriteScrub(sprite, video, wrap) {
  const vtt = (sprite.files || []).find((f) => f.path.endsWith(".vtt"));
  if (!vtt) return () => {};
  const bar = h("div", { class: "scrub", title: "hover for a preview, click to seek" }, h("div", { class: "scrub-played" }));
  const preview = h("div", { class: "scrub-preview", hidden: true }, h("div", { class: "tile" }), h("span", {}));
  bar.append(preview);
  wrap.insertBefore(bar, video.nextSibling);
  let cues = [];
  // The cues name their sheet relative to the VTT, as the WebVTT thumbnail convention has it.
  const vttUrl = fileUrl(sprite, vtt.path);
  const resolve = (image) => new URL(image, vttUrl).href;
  fetchText(vttUrl)
    .then((text) => {
      cues = parseSpriteVtt(text);
      wrap.dataset.spriteCues = String(cues.length);
    })
    .catch((err) => (bar.title = `no scrub preview: ${err.message}`));
  const duration = () => video.duration || (cues.length ? cues[cues.length - 1].end : 0);
  const at = (event) => {
    const box = bar.getBoundingClientRect();
    const frac = Math.max(0, Math.min(1, (event.clientX - box.left) / box.width));
    return { frac, t: frac * duration(), px: event.clientX - box.left };
  };
  bar.addEventListener("mousemove", (event) => {
    const { t, px } = at(event);
    const cue = cues.find((c) => t >= c.start && t < c.end) || cues[cues.length - 1];
    if (!cue) return;
    const tile = preview.firstChild;
    tile.style.cssText = `width:${cue.w}px;height:${cue.h}px;background:url("${resolve(cue.image)}") -${cue.x}px -${cue.y}px`;
    preview.lastChild.textContent = fmt.seconds(t);
    preview.style.left = `${Math.max(0, px - cue.w / 2)}px`;
    preview.hidden = false;
  });
  bar.addEventListener("mouseleave", () => (preview.hidden = true));
  bar.addEventListener("click", (event) => {
    video.currentTime = at(event).t;
  });
  const tick = () => (bar.firstChild.style.width = `${duration() ? (100 * video.currentTime) / duration() : 0}%`);
  video.addEventListener("timeupdate", tick);
  return () => video.removeEventListener("timeupdate", tick);
}

// ---------------------------------------------------------------- bitrate per segment

function attributes(line) {
  const attrs = {};
  for (const m of line.matchAll(/([A-Z0-9-]+)=("[^"]*"|[^,]*)/g)) attrs[m[1]] = m[2].replace(/^"|"$/g, "");
  return attrs;
}

export function parseMaster(text) {
  const variants = [];
  const lines = text.split(/\r?\n/).map((l) => l.trim());
  lines.forEach((line, i) => {
    if (!line.startsWith("#EXT-X-STREAM-INF:")) return;
    const attrs = attributes(line.slice(18));
    const uri = lines.slice(i + 1).find((l) => l && !l.startsWith("#"));
    variants.push({ uri, bandwidth: Number(attrs.BANDWIDTH || 0), resolution: attrs.RESOLUTION || "" });
  });
  return variants;
}

export function parseMedia(text) {
  const segments = [];
  let duration = null;
  let range = null;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line.startsWith("#EXTINF:")) duration = parseFloat(line.slice(8));
    else if (line.startsWith("#EXT-X-BYTERANGE:")) range = Number(line.slice(17).split("@")[0]);
    else if (line && !line.startsWith("#") && duration !== null) {
      segments.push({ uri: line, duration, rangeBytes: range });
      duration = null;
      range = null;
    }
  }
  return segments;
}

async function bitrateChart(output, hlsUrl, mpdUrl, container) {
  const sizes = new Map((output.files || []).map((f) => [f.path, Number(f.sizeBytes || 0)]));
  // A segment's size, from the job's file list, by the URL a manifest resolves it to.
  const sizeAt = (url) => sizes.get(pathInFolder(output, url));
  const series = hlsUrl ? await hlsSeries(hlsUrl, sizeAt) : dashSeries(await fetchText(mpdUrl), mpdUrl, sizeAt);
  window.kiln.charts = window.kiln.charts || {};
  window.kiln.charts[output.id] = series;
  drawChart(container, series, hlsUrl ? "the HLS media playlists" : "the MPD's segment timeline");
}

async function hlsSeries(masterUrl, sizeAt) {
  const variants = parseMaster(await fetchText(masterUrl));
  const series = [];
  for (const variant of variants) {
    const mediaUrl = new URL(variant.uri, masterUrl).href;
    const segments = parseMedia(await fetchText(mediaUrl));
    let t = 0;
    const points = [];
    for (const segment of segments) {
      const size = segment.rangeBytes ?? sizeAt(new URL(segment.uri, mediaUrl));
      if (size !== undefined && segment.duration > 0) points.push({ t, duration: segment.duration, kbps: (size * 8) / segment.duration / 1000 });
      t += segment.duration;
    }
    series.push({ label: `${variant.resolution ? variant.resolution.split("x")[1] + "p" : variant.uri} (${Math.round(variant.bandwidth / 1000)} kb/s declared)`, points });
  }
  return series;
}

// Video representations of a SegmentTemplate + SegmentTimeline MPD (what FFmpeg's dash muxer
// writes): each S element is d ticks long and repeats r more times; $Number$ counts segments.
export function dashSeries(text, mpdUrl, sizeAt) {
  const doc = new DOMParser().parseFromString(text, "application/xml");
  const series = [];
  for (const set of doc.getElementsByTagName("AdaptationSet")) {
    const reps = [...set.getElementsByTagName("Representation")];
    const isVideo = set.getAttribute("contentType") === "video" || reps.some((r) => (r.getAttribute("mimeType") || "").startsWith("video"));
    if (!isVideo) continue;
    for (const rep of reps) {
      const template = rep.getElementsByTagName("SegmentTemplate")[0] || set.getElementsByTagName("SegmentTemplate")[0];
      if (!template) continue;
      const timescale = Number(template.getAttribute("timescale") || 1);
      const media = template.getAttribute("media") || "";
      let number = Number(template.getAttribute("startNumber") || 1);
      let ticks = 0;
      const points = [];
      for (const s of template.getElementsByTagName("S")) {
        if (s.hasAttribute("t")) ticks = Number(s.getAttribute("t"));
        const d = Number(s.getAttribute("d"));
        for (let i = 0; i <= Number(s.getAttribute("r") || 0); i++) {
          const name = media
            .replaceAll("$RepresentationID$", rep.getAttribute("id"))
            .replaceAll("$Bandwidth$", rep.getAttribute("bandwidth"))
            .replaceAll("$Time$", String(ticks))
            .replace(/\$Number(?:%0(\d+)d)?\$/g, (_m, width) => String(number).padStart(Number(width || 0), "0"));
          const size = sizeAt(new URL(name, mpdUrl));
          if (size !== undefined && d > 0) points.push({ t: ticks / timescale, duration: d / timescale, kbps: (size * 8) / (d / timescale) / 1000 });
          ticks += d;
          number += 1;
        }
      }
      series.push({ label: `${rep.getAttribute("height") || "?"}p (${Math.round(Number(rep.getAttribute("bandwidth") || 0) / 1000)} kb/s declared)`, points });
    }
  }
  return series;
}

function drawChart(container, series, source) {
  const width = 640;
  const height = 220;
  const pad = { left: 56, right: 12, top: 12, bottom: 30 };
  const canvas = h("canvas", { width, height, class: "bitrate-chart", "data-series": String(series.length) });
  const ctx = canvas.getContext("2d");
  const maxT = Math.max(1, ...series.flatMap((s) => s.points.map((p) => p.t + p.duration)));
  const maxK = Math.max(1, ...series.flatMap((s) => s.points.map((p) => p.kbps))) * 1.1;
  const x = (t) => pad.left + (t / maxT) * (width - pad.left - pad.right);
  const y = (k) => height - pad.bottom - (k / maxK) * (height - pad.top - pad.bottom);
  ctx.font = "11px system-ui, sans-serif";
  ctx.strokeStyle = "#d4d4d8";
  ctx.fillStyle = "#52525b";
  for (let i = 0; i <= 4; i++) {
    const k = (maxK * i) / 4;
    ctx.beginPath();
    ctx.moveTo(pad.left, y(k));
    ctx.lineTo(width - pad.right, y(k));
    ctx.stroke();
    ctx.fillText(`${Math.round(k)}`, 4, y(k) + 4);
  }
  ctx.fillText("kb/s", pad.left + 4, pad.top + 10);
  for (let i = 0; i <= 5; i++) {
    const t = (maxT * i) / 5;
    ctx.fillText(`${t.toFixed(1)} s`, x(t) - 10, height - 10);
  }
  series.forEach((s, i) => {
    ctx.strokeStyle = COLORS[i % COLORS.length];
    ctx.lineWidth = 2;
    ctx.beginPath();
    s.points.forEach((p, j) => {
      // A step per segment: the bitrate holds for the segment's duration.
      if (j === 0) ctx.moveTo(x(p.t), y(p.kbps));
      else ctx.lineTo(x(p.t), y(p.kbps));
      ctx.lineTo(x(p.t + p.duration), y(p.kbps));
    });
    ctx.stroke();
  });
  const legend = h("div", { class: "legend small" }, series.map((s, i) => h("span", {}, h("i", { style: `background:${COLORS[i % COLORS.length]}` }), ` ${s.label}, ${s.points.length} segments`)));
  container.replaceChildren(h("div", { class: "small muted" }, `Bitrate per segment: segment size (the job's file list) ÷ its duration (${source})`), canvas, legend);
}
