// Plays outputs from their playback URLs, as any third-party page would: adaptive ladders with
// hls.js / dash.js (their default loaders, nothing rewritten) and files in a plain <video>, in
// Debian's chromium driven by playwright-core. Reports every error AND warning the players
// raise and every answer kiln gave the page.
//
// Usage: node play_outputs.mjs CASES_JSON
// CASES_JSON: { "page": URL of a blank page, on another origin than kiln's,
//               "hls": URL of hls.min.js, "dash": URL of dash.all.min.js (the page's origin),
//               "kiln": kiln's origin (its answers are recorded),
//               "playSeconds": how far each case must play, "probeTypes": [MIME types],
//               "reachSeconds": how long an adaptive case may take to get there (8 s),
//               "cases": [{ "name", "player": "hls" | "dash" | "file", "url", "textAt"?,
//                           "audioSwitch"?, "hlsConfig"?, "protection"?, "bufferFirst"?,
//                           "seekTo"?, "release"? }] }
// "hlsConfig" is merged into hls.js's config (emeEnabled, drmSystems for encrypted outputs);
// "protection" is dash.js's protection data (setProtectionData: a key system's clearkeys or
// serverURL). "bufferFirst": the case plays only once what it must play is buffered.
// A "file" case plays a little, then seeks to half a second before the end and plays on.
// An adaptive case with "seekTo" (seconds) plays a little, seeks there and plays on for
// playSeconds from there ("time" then says how far it got, "seekedTo" where it went).
// A case with "release" (a URL) is a live one: once playback has advanced, the page notes
// whether the player took the stream for live ("liveAtStart": dash.js's isDynamic(), hls.js's
// playlist without ENDLIST), then fetches that URL (the test lets the encode finish on it) and
// plays on to playSeconds; "liveAtEnd" says the same once there.
// A case with "audioSwitch" then switches to each of the player's audio tracks in turn, from
// where playback got to (paused), and reports whether the player switched and buffered that
// track's media; then back to the first track, and plays on from there.
// A case with "textAt" (seconds) then turns on each of the player's text tracks in turn and
// reads the text of the cue showing at that time from the browser's TextTrack (and lists
// the track's cues as [start, end, text]).
// Prints one JSON line:
// { "supported": { type: MediaSource.isTypeSupported(type) for config.probeTypes },
//   "results": [{ name, starts: { mime: first buffered second }, time, duration, ended,
//                 seekedTo, liveAtStart, liveAtEnd, issues, responses: [{ file, status, range, contentRange, allowOrigin }],
//                 textTracks: [{ lang, name, default, forced, text, cues }] (cases with textAt),
//                 audioTracks: [{ lang, name, default, roles, switched, buffered }],
//                 audioBack: { lang, switched, buffered, played } | null
//                 (cases with audioSwitch) }] }.

import { createRequire } from "node:module";
import { readFileSync } from "node:fs";

const require = createRequire(new URL("../../../dashboard/package.json", import.meta.url));
const { chromium } = require("playwright-core");

const config = JSON.parse(readFileSync(process.argv[2], "utf-8"));
// Playback must reach this far into each clip to count as advancing.
const PLAY_SECONDS = config.playSeconds ?? 2.0;
// How long an adaptive case may take to get there ("reachSeconds"; a ceiling, not a wait).
const REACH_MS = (config.reachSeconds ?? 8) * 1000;

// Runs inside the page: plays one case, resolves with what happened.
async function playCase(spec, playSeconds, reachMs) {
  const issues = [];
  const note = (source, kind, detail) => issues.push({ source, kind: String(kind), detail: String(detail).slice(0, 300) });
  // Where each SourceBuffer's media starts once appended: the players' view of the start.
  window.__bufferStarts = [];
  const video = document.createElement("video");
  video.muted = true;
  // "bufferFirst": the case starts playing only once the player has buffered what it must
  // play (within reachSeconds), so a loaded machine's slow fetches or decryption cannot
  // stall it: what is tested is that it plays, not how fast this machine fetches.
  video.autoplay = !spec.bufferFirst;
  document.body.append(video);
  video.addEventListener("error", () => note("video", "error", video.error?.message || video.error?.code));
  let teardown = () => {};
  // Turns on text track `index` of the player; lists them as { lang, name, default, forced }.
  let textTrackList = () => [];
  let showTextTrack = () => {};
  // Whether no text is being fetched: a switch made while a fragment loads aborts that load.
  let textSettled = () => true;
  // Lists the player's audio tracks as { lang, name, default, roles }; switches to `index`
  // (resolving true once the player says it has), and whether it buffered that track's media.
  let audioTrackList = () => [];
  let switchAudio = async () => false;
  let audioBuffered = () => false;
  // Whether no audio is being fetched: a switch made while a fragment loads aborts that load.
  let audioSettled = () => true;
  // Whether the player takes the stream for live now (a "release" case reports it).
  let isLive = () => null;
  // Resolves once playback reaches `seconds` (or ends, or fails).
  const reached = (seconds) =>
    new Promise((resolve) => {
      const check = () => (video.ended || video.currentTime >= seconds ? resolve() : null);
      video.addEventListener("timeupdate", check);
      video.addEventListener("ended", check);
      video.addEventListener("error", resolve);
      check();
    });
  // A deadline, not a synchronisation: a case that never gets there is reported as it stands.
  const deadline = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  if (spec.player === "hls") {
    // A logger object receives hls.js's own warnings (the console stays quiet otherwise).
    const quiet = () => {};
    const debug = { trace: quiet, debug: quiet, log: quiet, info: quiet, warn: (...a) => note("hls.js", "warn", a.join(" ")), error: (...a) => note("hls.js", "error", a.join(" ")) };
    const hls = new Hls({ debug, ...(spec.hlsConfig || {}) });
    hls.on(Hls.Events.ERROR, (_e, data) => note("hls.js", `ERROR${data.fatal ? " fatal" : ""}`, `${data.type} ${data.details}${data.reason ? " " + data.reason : ""}`));
    hls.loadSource(spec.url);
    hls.attachMedia(video);
    teardown = () => hls.destroy();
    isLive = () => hls.levels[Math.max(hls.currentLevel, 0)]?.details?.live ?? null;
    textTrackList = () => hls.subtitleTracks.map((t) => ({ lang: t.lang, name: t.name, default: t.default, forced: t.forced }));
    showTextTrack = (index) => {
      hls.subtitleTrack = index;
      hls.subtitleDisplay = true;
    };
    let loadingText = 0;
    hls.on(Hls.Events.FRAG_LOADING, (_e, data) => { if (data.frag.type === "subtitle") loadingText += 1; });
    hls.on(Hls.Events.FRAG_LOADED, (_e, data) => { if (data.frag.type === "subtitle") loadingText -= 1; });
    hls.on(Hls.Events.ERROR, (_e, data) => { if (data.frag?.type === "subtitle") loadingText -= 1; });
    textSettled = () => loadingText <= 0;
    audioTrackList = () => hls.audioTracks.map((t) => ({ lang: t.lang, name: t.name, default: t.default, roles: t.characteristics ? [t.characteristics] : [] }));
    // An alternate rendition's media comes in "audio" fragments; a track without a URI is the
    // audio muxed into the variants (MPEG-TS), buffered with the "main" fragments while no
    // alternate is chosen.
    const bufferedAudio = new Set();
    hls.on(Hls.Events.FRAG_BUFFERED, (_e, data) => {
      if (data.frag.type === "audio") bufferedAudio.add(data.frag.level);
      const muxed = hls.audioTracks.findIndex((t) => !t.url);
      if (data.frag.type === "main" && data.frag.elementaryStreams.audio && muxed >= 0 && hls.audioTrack === muxed) bufferedAudio.add(muxed);
    });
    audioBuffered = (index) => bufferedAudio.has(index);
    const loadingAudio = new Map();
    const key = (frag) => `${frag.level}/${frag.sn}`;
    // Media fragments only: hls.js announces an init segment's loading but not its end.
    hls.on(Hls.Events.FRAG_LOADING, (_e, data) => { if (data.frag.type === "audio" && data.frag.sn !== "initSegment") loadingAudio.set(key(data.frag), 1); });
    // Settled once appended: a switch while a loaded fragment is being appended aborts it too.
    hls.on(Hls.Events.FRAG_BUFFERED, (_e, data) => { if (data.frag.type === "audio") loadingAudio.delete(key(data.frag)); });
    hls.on(Hls.Events.ERROR, (_e, data) => { if (data.frag?.type === "audio") loadingAudio.delete(key(data.frag)); });
    audioSettled = () => loadingAudio.size === 0;
    switchAudio = (index) =>
      new Promise((resolve) => {
        if (hls.audioTrack === index) return resolve(true);
        bufferedAudio.delete(index);
        const switched = (_e, data) => {
          if (data.id !== index) return;
          hls.off(Hls.Events.AUDIO_TRACK_SWITCHED, switched);
          resolve(true);
        };
        hls.on(Hls.Events.AUDIO_TRACK_SWITCHED, switched);
        hls.audioTrack = index;
      });
  } else if (spec.player === "dash") {
    const player = dashjs.MediaPlayer().create();
    const events = dashjs.MediaPlayer.events;
    // dispatchEvent sends every log line as an event; WARNING and ERROR levels are kept.
    player.updateSettings({ debug: { logLevel: dashjs.Debug.LOG_LEVEL_NONE, dispatchEvent: true } });
    player.on(events.LOG, (e) => {
      if (e.level <= dashjs.Debug.LOG_LEVEL_WARNING && e.level > dashjs.Debug.LOG_LEVEL_NONE) note("dash.js", e.level === dashjs.Debug.LOG_LEVEL_WARNING ? "warn" : "error", e.message);
    });
    player.on(events.ERROR, (e) => note("dash.js", "ERROR", e.error ? `${e.error.code} ${e.error.message}` : JSON.stringify(e)));
    player.on(events.PLAYBACK_ERROR, (e) => note("dash.js", "PLAYBACK_ERROR", e.error?.message || "playback error"));
    if (spec.protection) player.setProtectionData(spec.protection);
    player.initialize(video, spec.url, true);
    teardown = () => player.destroy();
    isLive = () => player.isDynamic();
    textTrackList = () => player.getTracksFor("text").map((t) => ({ lang: t.lang, name: (t.labels || [])[0]?.text ?? null, default: false, forced: false }));
    showTextTrack = (index) => {
      player.enableText(true);
      player.setTextTrack(index);
    };
    audioTrackList = () => player.getTracksFor("audio").map((t) => ({ lang: t.lang, name: (t.labels || [])[0]?.text ?? null, default: false, roles: (t.roles || []).map((r) => r.value ?? r) }));
    // dash.js makes a track current at once and then loads its segments: switched is the
    // former, buffered a segment of that track's AdaptationSet loaded.
    const loadedAudio = new Set();
    const trackId = (index) => player.getTracksFor("audio")[index]?.id;
    let loadingAudio = 0;
    player.on(events.FRAGMENT_LOADING_STARTED, (e) => { if (e.request?.mediaType === "audio") loadingAudio += 1; });
    player.on(events.FRAGMENT_LOADING_ABANDONED, (e) => { if (e.request?.mediaType === "audio") loadingAudio -= 1; });
    player.on(events.FRAGMENT_LOADING_COMPLETED, (e) => {
      if (e.request?.mediaType !== "audio") return;
      loadingAudio -= 1;
      if (e.request.type === "MediaSegment") loadedAudio.add(e.request.representation?.mediaInfo?.id);
    });
    audioSettled = () => loadingAudio <= 0;
    switchAudio = async (index) => {
      const track = player.getTracksFor("audio")[index];
      if (player.getCurrentTrackFor("audio")?.id !== track.id) {
        loadedAudio.delete(track.id);
        player.setCurrentTrack(track);
      }
      return player.getCurrentTrackFor("audio")?.id === track.id;
    };
    audioBuffered = (index) => loadedAudio.has(trackId(index));
  } else {
    // A CORS request, as a page that draws the frames (canvas, WebGL) makes it: the file's
    // answers must allow this page's origin, its range answers included.
    video.crossOrigin = "anonymous";
    video.src = spec.url;
  }

  const started = performance.now();
  let seekedTo = null;
  let liveAtStart = null;
  if (spec.player === "file") {
    // Advancing from the start, then a seek near the end: the media stack asks for the bytes
    // it has not got with Range requests.
    await Promise.race([reached(0.3), deadline(8000)]);
    if (video.duration > 1 && !video.error) {
      seekedTo = video.duration - 0.5;
      const seeked = new Promise((resolve) => video.addEventListener("seeked", resolve, { once: true }));
      video.currentTime = seekedTo;
      await Promise.race([seeked.then(() => reached(seekedTo + 0.1)), deadline(8000)]);
    }
  } else {
    if (spec.bufferFirst) {
      const until = performance.now() + reachMs;
      const enough = () => {
        const b = video.buffered;
        const want = Math.min(playSeconds + 0.5, video.duration || Infinity);
        return b.length > 0 && b.start(0) <= 0.2 && b.end(0) >= want;
      };
      while (!enough() && !video.error && performance.now() < until) await deadline(50);
      video.play().catch((e) => note("video", "play", e));
    }
    if (spec.seekTo !== undefined) {
      // "seekTo": from the start, a seek to seekTo, then on to seekTo + playSeconds (past a
      // chunked output's join, say, without playing all the way to it in real time).
      await Promise.race([reached(0.3), deadline(reachMs)]);
      seekedTo = spec.seekTo;
      video.currentTime = seekedTo;
      await Promise.race([reached(seekedTo + playSeconds), deadline(reachMs)]);
    } else if (spec.release !== undefined) {
      await Promise.race([reached(0.3), deadline(reachMs)]);
      liveAtStart = isLive();
      await fetch(spec.release, { mode: "no-cors" }).catch((e) => note("page", "release", e));
      await Promise.race([reached(playSeconds), deadline(reachMs)]);
    } else {
      await Promise.race([reached(playSeconds), deadline(reachMs)]);
    }
  }
  // Each audio track in turn, paused where playback got to (a clip must not end first):
  // switched (the player said so) and buffered (its media was loaded), each waited for within
  // a deadline, and no load in flight when the next switch is made.
  const audioTracks = [];
  let audioBack = null;
  if (spec.audioSwitch) {
    video.pause();
    const switchTo = async (index) => {
      let until = performance.now() + 5000;
      while (!audioSettled() && performance.now() < until) await deadline(50);
      const switched = await Promise.race([switchAudio(index), deadline(5000).then(() => false)]);
      until = performance.now() + 5000;
      while (!audioBuffered(index) && performance.now() < until) await deadline(50);
      while (!audioSettled() && performance.now() < until) await deadline(50);
      return { switched, buffered: audioBuffered(index) };
    };
    const listed = audioTrackList();
    for (const [index, track] of listed.entries()) audioTracks.push({ ...track, ...(await switchTo(index)) });
    // Back to the first track, then playing on: a fault of the way back shows here.
    if (listed.length > 1) {
      audioBack = { lang: listed[0].lang, ...(await switchTo(0)) };
      const from = video.currentTime;
      video.play();
      await Promise.race([reached(from + 0.5), deadline(8000)]);
      audioBack.played = video.ended || video.currentTime >= from + 0.5;
    }
  }
  // Each text track in turn: the text of its cue at textAt, read once the player has loaded
  // it into the browser's TextTrack (waited for, within a deadline).
  const textTracks = [];
  if (spec.textAt !== undefined) {
    const listed = textTrackList();
    for (const [index, track] of listed.entries()) {
      showTextTrack(index);
      let text = null;
      let cues = [];
      const until = performance.now() + 5000;
      while (text === null && performance.now() < until) {
        for (const native of video.textTracks) {
          if (native.language !== track.lang || native.mode === "disabled" || !native.cues) continue;
          cues = [...native.cues].map((c) => [Math.round(c.startTime * 1000) / 1000, Math.round(c.endTime * 1000) / 1000, c.text]);
          const cue = [...native.cues].find((c) => c.startTime <= spec.textAt && c.endTime > spec.textAt);
          if (cue) text = cue.text;
        }
        if (text === null) await deadline(50);
      }
      while (!textSettled() && performance.now() < until) await deadline(50);
      textTracks.push({ ...track, text, cues });
    }
  }
  const starts = {};
  for (const entry of window.__bufferStarts) if (!(entry.type in starts)) starts[entry.type] = entry.start;
  const result = { starts, time: video.currentTime, duration: video.duration, ended: video.ended, seekedTo, liveAtStart, liveAtEnd: isLive(), ms: Math.round(performance.now() - started) };
  // Warnings can trail the moment playback advanced (a gap found at the next buffer check).
  await deadline(150);
  teardown();
  video.remove();
  return { ...result, issues, textTracks, audioTracks, audioBack };
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
  // A request the player cancels itself (net::ERR_ABORTED: dash.js drops a segment in flight
  // when it seeks or switches) is not a failure of the stream; a server that refuses, resets or
  // hangs gives another error text, and a player that gets nothing still fails to play on.
  page.on("requestfailed", (request) => {
    const reason = request.failure()?.errorText;
    if (reason === "net::ERR_ABORTED") return;
    consoleIssues.push(`request failed: ${request.url().split("/").pop()} ${reason}`);
  });
  // kiln's answers, as the page saw them (status, range, CORS). The request's own headers
  // are read from the wire (allHeaders), where the media stack's Range header shows.
  const responses = [];
  const pending = new Set();
  page.on("response", (response) => {
    if (!response.url().startsWith(`${config.kiln}/`)) return;
    const reading = (async () => {
      const sent = await response.request().allHeaders();
      const answered = await response.allHeaders();
      responses.push({
        file: new URL(response.url()).pathname.split("/").pop(),
        method: response.request().method(),
        status: response.status(),
        range: sent.range ?? null,
        contentRange: answered["content-range"] ?? null,
        allowOrigin: answered["access-control-allow-origin"] ?? null,
      });
    })();
    pending.add(reading);
    reading.finally(() => pending.delete(reading));
  });
  const settled = () => Promise.all([...pending]);
  await page.goto(config.page);
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
  return { page, consoleIssues, responses, settled };
}

try {
  const results = new Array(config.cases.length);
  let next = 0;
  const pages = await Promise.all(Array.from({ length: Math.min(CONCURRENCY, config.cases.length) }, openPage));
  const supported = await pages[0].page.evaluate((types) => Object.fromEntries(types.map((t) => [t, MediaSource.isTypeSupported(t)])), config.probeTypes || []);
  await Promise.all(
    pages.map(async ({ page, consoleIssues, responses, settled }) => {
      while (next < config.cases.length) {
        const index = next++;
        const spec = config.cases[index];
        const before = { issues: consoleIssues.length, responses: responses.length };
        const result = await page.evaluate(([s, seconds, ms]) => window.playCase(s, seconds, ms), [spec, PLAY_SECONDS, REACH_MS]);
        await settled();
        result.issues.push(...consoleIssues.slice(before.issues).map((text) => ({ source: "console", kind: "console", detail: text })));
        results[index] = { name: spec.name, ...result, responses: responses.slice(before.responses) };
      }
    }),
  );
  console.log(JSON.stringify({ supported, results }));
} finally {
  await browser.close();
}
