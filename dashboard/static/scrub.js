// The sprite scrub preview: a bar under a player that shows the sprite tile of the hovered
// time (from the sprite output's WebVTT map) and seeks on a click.

import * as fmt from "./format.js";
import { fetchText, fileUrl } from "./playback.js";

const { h } = fmt;

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

export function spriteScrub(sprite, video, wrap) {
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
