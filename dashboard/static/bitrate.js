// The bitrate of each variant per segment: segment size (the job's file list) ÷ its duration,
// from the HLS media playlists or the MPD's segment timeline, drawn on a canvas.

import { h } from "./format.js";
import { fetchText, pathInFolder } from "./playback.js";

const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"];

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

export async function bitrateChart(output, hlsUrl, mpdUrl, container) {
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
