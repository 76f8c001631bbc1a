// Players for completed outputs: hls.js (HLS, CMAF), dash.js (DASH, CMAF), <video>/<audio>
// for files, images for thumbnails; a sprite scrub preview and a per-segment bitrate chart.
//
// Every output file has its own signed URL, so a playlist's relative entries (v0/index.m3u8,
// v0/seg_001.m4s) would be fetched unsigned. Both players get a hook that maps any URL inside
// the output's folder to that file's signed URL, by origin and path.

import * as fmt from "./format.js";

const { h } = fmt;
const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"];

function signedResolver(files) {
  const byPath = new Map();
  for (const file of files) {
    if (!file.url) continue;
    const url = new URL(file.url, location.href);
    byPath.set(url.origin + url.pathname, url.href);
  }
  return (raw) => {
    const url = new URL(raw, location.href);
    return byPath.get(url.origin + url.pathname) || raw;
  };
}

function recordError(output, player, type, details, fatal) {
  const entry = { outputId: output.id, player, type: String(type), details: String(details), fatal: Boolean(fatal), time: Date.now() };
  window.kiln.playerErrors.push(entry);
  return entry;
}

const topLevel = (files, suffix) => files.find((f) => !f.path.includes("/") && f.path.endsWith(suffix));

export function renderOutputMedia(output, node, { sprite }) {
  const type = fmt.outputType(output.spec?.type);
  const files = output.files || [];
  const disposers = [];
  const master = topLevel(files, ".m3u8");
  const mpd = topLevel(files, ".mpd");

  if (type === "CMAF" && master && mpd) {
    // One set of segments, two manifests: play either.
    const holder = h("div");
    let current = () => {};
    const pick = h("select", { class: "protocol" }, h("option", { value: "hls" }, "HLS (hls.js)"), h("option", { value: "dash" }, "DASH (dash.js)"));
    const mount = () => {
      current();
      holder.replaceChildren();
      current = pick.value === "hls" ? hlsPlayer(output, master, holder, sprite) : dashPlayer(output, mpd, holder, sprite);
    };
    pick.addEventListener("change", mount);
    node.append(h("label", { class: "small" }, "Manifest ", pick), holder);
    mount();
    disposers.push(() => current());
  } else if (master) {
    disposers.push(hlsPlayer(output, master, node, sprite));
  } else if (mpd) {
    disposers.push(dashPlayer(output, mpd, node, sprite));
  } else if (["MP4", "WEBM", "MOV", "MKV"].includes(type)) {
    disposers.push(filePlayer(output, files[0], node, sprite));
  } else if (["MP3", "M4A", "OPUS", "WAV"].includes(type)) {
    node.append(h("audio", { controls: true, preload: "metadata", src: files[0].url }));
  } else if (["JPG", "PNG", "WEBP", "GIF"].includes(type)) {
    const images = files.filter((f) => !f.path.endsWith(".vtt"));
    const isSprite = output.spec?.thumbnail?.mode === "THUMBNAIL_MODE_SPRITE";
    node.append(
      h(
        "div",
        {},
        isSprite ? h("p", { class: "muted small" }, "Sprite sheet: the scrub preview of this job's players (hover the bar under a player).") : null,
        h("div", { class: "thumbs" }, images.slice(0, 24).map((f) => h("a", { href: f.url, target: "_blank", rel: "noopener" }, h("img", { src: f.url, alt: f.path, loading: "lazy", class: isSprite ? "sprite-sheet" : "" })))),
        images.length > 24 ? h("p", { class: "muted small" }, `and ${images.length - 24} more`) : null,
      ),
    );
  }
  if (master || mpd) {
    const chart = h("div", { class: "chart" });
    node.append(chart);
    bitrateChart(output, master, mpd, chart).catch((err) => chart.replaceChildren(h("p", { class: "error small" }, `bitrate chart: ${err}`)));
  }
  return () => disposers.forEach((d) => d());
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

function hlsPlayer(output, master, node, sprite) {
  const shell = playerShell(output, "hls", node);
  if (!window.Hls || !Hls.isSupported()) {
    shell.onError("setup", window.Hls ? "MediaSource is not supported here" : "hls.js is not installed (make dashboard-deps)", true);
    return () => {};
  }
  const resolve = signedResolver(output.files);
  const Base = Hls.DefaultConfig.loader;
  class SignedLoader extends Base {
    load(context, config, callbacks) {
      context.url = resolve(context.url);
      super.load(context, config, callbacks);
    }
  }
  const hls = new Hls({ loader: SignedLoader });
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
  hls.loadSource(master.url);
  hls.attachMedia(shell.video);
  const scrub = sprite ? spriteScrub(sprite, shell.video, shell.wrap) : () => {};
  window.kiln.players[`${output.id}:hls`].engine = hls;
  return () => {
    scrub();
    hls.destroy();
  };
}

function dashPlayer(output, mpd, node, sprite) {
  const shell = playerShell(output, "dash", node);
  if (!window.dashjs) {
    shell.onError("setup", "dash.js is not installed (make dashboard-deps)", true);
    return () => {};
  }
  const resolve = signedResolver(output.files);
  const events = dashjs.MediaPlayer.events;
  const player = dashjs.MediaPlayer().create();
  player.updateSettings({ debug: { logLevel: dashjs.Debug.LOG_LEVEL_WARNING } });
  player.addRequestInterceptor((request) => {
    request.url = resolve(request.url);
    return Promise.resolve(request);
  });
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
  player.initialize(shell.video, mpd.url, false);
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
  shell.video.src = file.url;
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
  const resolve = (image) => {
    const base = vtt.path.includes("/") ? vtt.path.slice(0, vtt.path.lastIndexOf("/") + 1) : "";
    return (sprite.files.find((f) => f.path === base + image) || {}).url;
  };
  fetch(vtt.url)
    .then((r) => r.text())
    .then((text) => {
      cues = parseSpriteVtt(text);
      wrap.dataset.spriteCues = String(cues.length);
    });
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

const dirname = (path) => (path.includes("/") ? path.slice(0, path.lastIndexOf("/") + 1) : "");

function joinPath(base, relative) {
  const parts = (base + relative).split("/");
  const out = [];
  for (const part of parts) {
    if (part === "..") out.pop();
    else if (part !== "." && part !== "") out.push(part);
  }
  return out.join("/");
}

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

async function bitrateChart(output, master, mpd, container) {
  const files = output.files || [];
  const sizes = new Map(files.map((f) => [f.path, Number(f.sizeBytes || 0)]));
  const urls = new Map(files.map((f) => [f.path, f.url]));
  const series = master ? await hlsSeries(master, sizes, urls) : dashSeries(await (await fetch(mpd.url)).text(), dirname(mpd.path), sizes);
  window.kiln.charts = window.kiln.charts || {};
  window.kiln.charts[output.id] = series;
  drawChart(container, series, master ? "the HLS media playlists" : "the MPD's segment timeline");
}

async function hlsSeries(master, sizes, urls) {
  const variants = parseMaster(await (await fetch(master.url)).text());
  const series = [];
  for (const variant of variants) {
    const mediaPath = joinPath(dirname(master.path), variant.uri);
    if (!urls.get(mediaPath)) continue;
    const segments = parseMedia(await (await fetch(urls.get(mediaPath))).text());
    let t = 0;
    const points = [];
    for (const segment of segments) {
      const size = segment.rangeBytes ?? sizes.get(joinPath(dirname(mediaPath), segment.uri));
      if (size !== undefined && segment.duration > 0) points.push({ t, duration: segment.duration, kbps: (size * 8) / segment.duration / 1000 });
      t += segment.duration;
    }
    series.push({ label: `${variant.resolution ? variant.resolution.split("x")[1] + "p" : mediaPath} (${Math.round(variant.bandwidth / 1000)} kb/s declared)`, points });
  }
  return series;
}

// Video representations of a SegmentTemplate + SegmentTimeline MPD (what FFmpeg's dash muxer
// writes): each S element is d ticks long and repeats r more times; $Number$ counts segments.
export function dashSeries(text, base, sizes) {
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
          const size = sizes.get(joinPath(base, name));
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
