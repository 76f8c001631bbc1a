// Plays adaptive ladders with hls.js / dash.js and files in <video>, in Debian's chromium driven
// by playwright-core, and reports every error AND warning the players raise.
//
// Usage: node play_outputs.mjs CASES_JSON
// CASES_JSON: { "page": URL of any page on the origin that serves the files,
//               "hls": URL of hls.min.js, "dash": URL of dash.all.min.js,
//               "cases": [{ "name", "player": "hls" | "dash" | "file", "url",
//                           "files": { "<absolute url without query>": "<signed url>" },
//                           "hlsConfig": { extra hls.js settings } }] }
// `files` maps every file of an output to its signed URL: playlists name their segments by
// relative path, which would otherwise be fetched unsigned. Prints one JSON line:
// { "supported": { type: MediaSource.isTypeSupported(type) for config.probeTypes },
//   "results": [{ name, starts: { mime: first buffered second }, time, duration, ended, issues }] }.

import { createRequire } from "node:module";
import { readFileSync } from "node:fs";

const require = createRequire(new URL("../../../dashboard/package.json", import.meta.url));
const { chromium } = require("playwright-core");

const config = JSON.parse(readFileSync(process.argv[2], "utf-8"));
// Playback must reach this far into each 2 s clip (or end) to count as advancing.
const PLAY_SECONDS = config.playSeconds ?? 1.2;

// Runs inside the page: plays one case, resolves with what happened.
async function playCase(spec, playSeconds) {
  const issues = [];
  const note = (source, kind, detail) => issues.push({ source, kind: String(kind), detail: String(detail).slice(0, 300) });
  const signed = (raw) => {
    const url = new URL(raw, location.href);
    return spec.files[url.origin + url.pathname] || raw;
  };
  // Where each SourceBuffer's media starts once appended: the players' view of the start.
  window.__bufferStarts = [];
  const video = document.createElement("video");
  video.muted = true;
  video.autoplay = true;
  document.body.append(video);
  video.addEventListener("error", () => note("video", "error", video.error?.message || video.error?.code));
  let teardown = () => {};

  if (spec.player === "hls") {
    const Base = Hls.DefaultConfig.loader;
    class SignedLoader extends Base {
      load(context, loaderConfig, callbacks) {
        context.url = signed(context.url);
        super.load(context, loaderConfig, callbacks);
      }
    }
    // A logger object receives hls.js's own warnings (the console stays quiet otherwise).
    const quiet = () => {};
    const verbose = spec.verbose ? (...a) => note("hls.js", "log", a.join(" ")) : quiet;
    const debug = { trace: quiet, debug: quiet, log: verbose, info: verbose, warn: (...a) => note("hls.js", "warn", a.join(" ")), error: (...a) => note("hls.js", "error", a.join(" ")) };
    const hls = new Hls({ ...(spec.hlsConfig || {}), loader: SignedLoader, debug });
    hls.on(Hls.Events.ERROR, (_e, data) => note("hls.js", `ERROR${data.fatal ? " fatal" : ""}`, `${data.type} ${data.details}${data.reason ? " " + data.reason : ""}`));
    hls.loadSource(spec.url);
    hls.attachMedia(video);
    teardown = () => hls.destroy();
  } else if (spec.player === "dash") {
    const player = dashjs.MediaPlayer().create();
    const events = dashjs.MediaPlayer.events;
    // dispatchEvent sends every log line as an event; WARNING and ERROR levels are kept.
    player.updateSettings({ debug: { logLevel: dashjs.Debug.LOG_LEVEL_NONE, dispatchEvent: true } });
    player.on(events.LOG, (e) => {
      if (e.level <= dashjs.Debug.LOG_LEVEL_WARNING && e.level > dashjs.Debug.LOG_LEVEL_NONE) note("dash.js", e.level === dashjs.Debug.LOG_LEVEL_WARNING ? "warn" : "error", e.message);
    });
    player.addRequestInterceptor((request) => {
      request.url = signed(request.url);
      return Promise.resolve(request);
    });
    player.on(events.ERROR, (e) => note("dash.js", "ERROR", e.error ? `${e.error.code} ${e.error.message}` : JSON.stringify(e)));
    player.on(events.PLAYBACK_ERROR, (e) => note("dash.js", "PLAYBACK_ERROR", e.error?.message || "playback error"));
    player.initialize(video, spec.url, true);
    teardown = () => player.destroy();
  } else {
    video.src = spec.url;
  }

  const started = performance.now();
  await new Promise((resolve) => {
    const check = () => (video.ended || video.currentTime >= playSeconds ? resolve() : null);
    video.addEventListener("timeupdate", check);
    video.addEventListener("ended", check);
    video.addEventListener("error", resolve);
    setTimeout(resolve, 8000);
  });
  const starts = {};
  for (const entry of window.__bufferStarts) if (!(entry.type in starts)) starts[entry.type] = entry.start;
  const result = { starts, time: video.currentTime, duration: video.duration, ended: video.ended, ms: Math.round(performance.now() - started) };
  // Warnings can trail the moment playback advanced (a gap found at the next buffer check).
  await new Promise((resolve) => setTimeout(resolve, 150));
  teardown();
  video.remove();
  return { ...result, issues };
}

const browser = await chromium.launch({
  executablePath: process.env.KILN_CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run", "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"],
});
// Cases play in a few pages at once (each page one case at a time): a 2-core machine keeps up
// with three tiny players, and the run takes a third of the time.
const CONCURRENCY = config.concurrency ?? 3;

async function openPage() {
  const page = await browser.newPage();
  const consoleIssues = [];
  page.on("console", (message) => {
    if (["warning", "error"].includes(message.type())) consoleIssues.push(`${message.type()}: ${message.text().slice(0, 300)}`);
  });
  page.on("pageerror", (error) => consoleIssues.push(`pageerror: ${String(error).slice(0, 300)}`));
  await page.goto(config.page);
  await page.setContent("<!doctype html><title>players</title><body></body>");
  await page.addScriptTag({ url: config.hls });
  await page.addScriptTag({ url: config.dash });
  await page.addScriptTag({ content: `window.playCase = ${playCase.toString()};` });
  // Records the start of the first buffered range of every SourceBuffer (by MIME type).
  await page.evaluate(() => {
    const add = MediaSource.prototype.addSourceBuffer;
    MediaSource.prototype.addSourceBuffer = function (type) {
      const buffer = add.call(this, type);
      buffer.addEventListener("updateend", () => {
        if (buffer.buffered.length) window.__bufferStarts.push({ type: type.split(";")[0], start: buffer.buffered.start(0) });
      });
      return buffer;
    };
  });
  return { page, consoleIssues };
}

try {
  const results = new Array(config.cases.length);
  let next = 0;
  const pages = await Promise.all(Array.from({ length: Math.min(CONCURRENCY, config.cases.length) }, openPage));
  const supported = await pages[0].page.evaluate((types) => Object.fromEntries(types.map((t) => [t, MediaSource.isTypeSupported(t)])), config.probeTypes || []);
  await Promise.all(
    pages.map(async ({ page, consoleIssues }) => {
      while (next < config.cases.length) {
        const index = next++;
        const spec = config.cases[index];
        const before = consoleIssues.length;
        const result = await page.evaluate(([s, seconds]) => window.playCase(s, seconds), [spec, PLAY_SECONDS]);
        result.issues.push(...consoleIssues.slice(before).map((text) => ({ source: "console", kind: "console", detail: text })));
        results[index] = { name: spec.name, ...result };
      }
    }),
  );
  console.log(JSON.stringify({ supported, results }));
} finally {
  await browser.close();
}
