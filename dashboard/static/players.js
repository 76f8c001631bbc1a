// Players for completed outputs, every one opened from the output's playback URL: `playbackUrl`
// is the HLS master playlist, else the MPD, else the file itself, and `playbackBaseUrl` the
// folder they sit in. The URL's token is part of its path, so the relative entries of a
// playlist or MPD resolve under the same token and the players' default loaders need no help.
// (files[].url are per-file download links: the files table offers those.)
//
// HLS plays in hls.js where Media Source Extensions exist, else in the browser's own HLS
// (Safari on iOS); DASH in dash.js; CMAF offers both manifests of its one set of segments;
// single files in <video>, <audio> or <img>. Each video player has track menus (tracks.js);
// the sprite scrub preview (scrub.js) and the per-segment bitrate chart (bitrate.js) sit beside.
// An encrypted output plays from a playback grant instead (grants.js): the same players, opened
// from the grant's URL, rebuilt from a new grant when one reports a key or license error.

import { bitrateChart } from "./bitrate.js";
import * as fmt from "./format.js";
import { encryptionLabel, grantExpiry, grantedManifests, grantedPlayers } from "./grants.js";
import { endsWith, fileUrl } from "./playback.js";
import { spriteScrub } from "./scrub.js";
import { dashTracks, fileTracks, hlsTracks } from "./tracks.js";

const { h } = fmt;
const NATIVE_HLS = "application/vnd.apple.mpegurl";
// dash.js's protection errors (ProtectionErrors: key system, key session, license request).
const DASH_KEY_ERRORS = { first: 100, last: 114 };

function recordError(output, player, type, details, fatal) {
  const entry = { outputId: output.id, player, type: String(type), details: String(details), fatal: Boolean(fatal), time: Date.now() };
  window.kiln.playerErrors.push(entry);
  return entry;
}

// `mintGrant(outputId)` asks CreatePlaybackGrant (an encrypted output's players need a grant).
export function renderOutputMedia(output, node, { sprite, mintGrant }) {
  const type = fmt.outputType(output.spec?.type);
  const files = output.files || [];
  const url = output.playbackUrl;
  const disposers = [];
  const hlsUrl = endsWith(url, ".m3u8") ? url : null;
  // A CMAF output's playback URL is its HLS master playlist; its MPD is in the same folder.
  const mpdUrl = endsWith(url, ".mpd") ? url : type === "CMAF" ? fileUrl(output, "manifest.mpd") : null;
  const urlEntries = (manifests) => (manifests.hlsUrl && manifests.mpdUrl ? [["HLS", manifests.hlsUrl], ["DASH", manifests.mpdUrl]] : [["Playback URL", manifests.hlsUrl || manifests.mpdUrl || url]]);
  const encrypted = Boolean((hlsUrl || mpdUrl) && output.encryption);
  // An encrypted output's URLs are its grant's, shown once it has one.
  if (!encrypted) node.append(playbackUrls(output, urlEntries({ hlsUrl, mpdUrl })));

  if (encrypted) {
    node.append(h("p", { class: "small" }, encryptionLabel(output)));
    const mount = (grant, holder, hooks) => {
      const manifests = grantedManifests(output, grant, type);
      holder.append(playbackUrls(output, urlEntries(manifests), grantExpiry(grant)));
      return ladderPlayers(output, holder, sprite, manifests, hooks);
    };
    disposers.push(grantedPlayers(output, node, { mint: () => mintGrant(output.id), mount }));
  } else if (hlsUrl || mpdUrl) {
    disposers.push(ladderPlayers(output, node, sprite, { hlsUrl, mpdUrl }));
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

// The players of an HLS, DASH or CMAF output, from its manifests; `hooks` are a grant's
// (grants.js): where to start, and what to do on a key error.
function ladderPlayers(output, node, sprite, { hlsUrl, mpdUrl, hlsConfig }, hooks = {}) {
  if (!(hlsUrl && mpdUrl)) {
    return hlsUrl ? hlsPlayer(output, hlsUrl, node, sprite, { ...hooks, hlsConfig }) : dashPlayer(output, mpdUrl, node, sprite, hooks);
  }
  // One set of segments, two manifests: play either.
  const holder = h("div");
  let current = () => {};
  const pick = h("select", { class: "protocol" }, h("option", { value: "hls" }, "HLS"), h("option", { value: "dash" }, "DASH (dash.js)"));
  const mount = () => {
    current();
    holder.replaceChildren();
    current = pick.value === "hls" ? hlsPlayer(output, hlsUrl, holder, sprite, { ...hooks, hlsConfig }) : dashPlayer(output, mpdUrl, holder, sprite, hooks);
  };
  pick.addEventListener("change", mount);
  node.append(h("label", { class: "small" }, "Manifest ", pick), holder);
  mount();
  return () => current();
}

// The URLs to hand to any player, each with a copy button, and when they stop working.
function playbackUrls(output, entries, keyExpiry = "") {
  const expires = [output.playbackUrlExpireTime ? `works until ${fmt.time(output.playbackUrlExpireTime)}` : "does not expire", keyExpiry].filter(Boolean).join("; ");
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

function playerShell(output, kind, node, hooks = {}) {
  const video = h("video", { controls: true, muted: true, playsInline: true, preload: "auto", "data-player": kind });
  video.muted = true;
  const picker = h("select", { class: "rendition", "data-testid": "rendition" }, h("option", { value: "auto" }, "auto"));
  const info = h("span", { class: "muted small player-info" });
  const errors = h("ul", { class: "error small player-errors" });
  const bar = h("div", { class: "player-bar" }, h("label", { class: "small" }, "Rendition ", picker), info);
  const wrap = h("div", { class: "player", "data-player": kind }, video, bar, errors);
  node.append(wrap);
  const onError = (type, details, fatal) => {
    recordError(output, kind, type, details, fatal);
    errors.append(h("li", {}, `${kind} ${fatal ? "fatal " : ""}error: ${type} ${details}`));
  };
  video.addEventListener("error", () => onError("media", video.error?.message || `code ${video.error?.code}`, true));
  if (hooks.onPlaying) video.addEventListener("playing", hooks.onPlaying);
  // A key or license error a grant can answer (a new key token) is not shown as a failure.
  const keyError = (details) => Boolean(hooks.onKeyError?.(kind, details, video));
  window.kiln.players[`${output.id}:${kind}`] = { kind, video, picker };
  return { video, picker, info, bar, wrap, onError, keyError };
}

// `hooks`: { hlsConfig, startAt, autoplay, onKeyError, onPlaying } (grants.js), all optional.
function hlsPlayer(output, url, node, sprite, hooks = {}) {
  const shell = playerShell(output, "hls", node, hooks);
  let stop;
  if (window.Hls?.isSupported()) {
    const hls = hlsJs(shell, output, url, hooks);
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

function hlsJs(shell, output, url, { hlsConfig = {}, startAt, autoplay } = {}) {
  const hls = new Hls({ ...hlsConfig, startPosition: startAt ?? -1 });
  const keyDetails = new Set([Hls.ErrorDetails.KEY_LOAD_ERROR, Hls.ErrorDetails.KEY_LOAD_TIMEOUT]);
  hls.on(Hls.Events.ERROR, (_event, data) => {
    if ((keyDetails.has(data.details) || data.type === Hls.ErrorTypes.KEY_SYSTEM_ERROR) && shell.keyError(data.details)) return;
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
    if (autoplay) shell.video.play().catch(() => {});
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
  hlsTracks(hls, shell);
  hls.loadSource(url);
  hls.attachMedia(shell.video);
  window.kiln.players[`${output.id}:hls`].engine = hls;
  return hls;
}

function dashPlayer(output, url, node, sprite, hooks = {}) {
  const shell = playerShell(output, "dash", node, hooks);
  if (!window.dashjs) {
    shell.onError("setup", "dash.js is not installed (make dashboard-deps)", true);
    return () => {};
  }
  const events = dashjs.MediaPlayer.events;
  const player = dashjs.MediaPlayer().create();
  player.updateSettings({ debug: { logLevel: dashjs.Debug.LOG_LEVEL_WARNING } });
  player.on(events.ERROR, (e) => {
    const code = Number(e.error?.code);
    if (code >= DASH_KEY_ERRORS.first && code <= DASH_KEY_ERRORS.last && shell.keyError(`${code} ${e.error.message}`)) return;
    shell.onError("error", e.error ? `${e.error.code} ${e.error.message}` : JSON.stringify(e), true);
  });
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
  dashTracks(player, shell, output);
  player.initialize(shell.video, url, Boolean(hooks.autoplay), hooks.startAt ?? NaN);
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
  fileTracks(output, shell);
  shell.video.src = output.playbackUrl;
  shell.info.textContent = `${file.width || "?"}×${file.height || "?"} ${file.codec || ""}, ${fmt.bitrate(file.bitrate)}`;
  const scrub = sprite ? spriteScrub(sprite, shell.video, shell.wrap) : () => {};
  return () => {
    scrub();
    shell.video.removeAttribute("src");
    shell.video.load();
  };
}
