// Track menus under a player: Subtitles (Off and each text track) and, when there are two or
// more, Audio. Each menu is filled from its player's own list (hls.js subtitleTracks and
// audioTracks, dash.js getTracksFor, the <track> elements of a file's <video>) and follows the
// player's switches, so what it shows is what plays. Names and languages are put in as text
// nodes and attribute values: a track named "<b>" is listed as those three characters.
// The cues themselves are drawn by the browser's own <video> text rendering.

import { h } from "./format.js";
import { fileUrl } from "./playback.js";

const OFF = -1;

// "Français (fr)": a track as a menu lists it, from the name and language the player reports.
export function trackLabel(name, lang, index) {
  const shown = name || lang || `Track ${index + 1}`;
  return lang && name ? `${shown} (${lang})` : shown;
}

// A <select> in the player's bar, hidden until it has entries: [[value, text], …].
function trackMenu(shell, kind, label) {
  const select = h("select", { class: `track-menu ${kind}`, "data-testid": `${kind}-menu`, "aria-label": label });
  const wrap = h("label", { class: "small", hidden: true }, `${label} `, select);
  shell.bar.append(wrap);
  return {
    select,
    show(entries, active) {
      select.replaceChildren(...entries.map(([value, text]) => h("option", { value: String(value) }, text)));
      wrap.hidden = entries.length === 0;
      this.mark(active);
    },
    mark(active) {
      select.value = String(active);
      shell.wrap.dataset[kind === "subtitles" ? "textTrack" : "audioTrack"] = String(active);
    },
    onChoose(choose) {
      select.addEventListener("change", () => choose(Number(select.value)));
    },
  };
}

const subtitleEntries = (tracks) => (tracks.length ? [[OFF, "Off"], ...tracks.map((t, i) => [i, trackLabel(t.name, t.lang, i)])] : []);
// One audio track needs no menu.
const audioEntries = (tracks) => (tracks.length > 1 ? tracks.map((t, i) => [i, trackLabel(t.name, t.lang, i)]) : []);

export function hlsTracks(hls, shell) {
  const subtitles = trackMenu(shell, "subtitles", "Subtitles");
  const audio = trackMenu(shell, "audio", "Audio");
  // hls.js picks the DEFAULT=YES rendition itself (subtitleDisplay is on): the menu follows.
  hls.on(Hls.Events.SUBTITLE_TRACKS_UPDATED, () => subtitles.show(subtitleEntries(hls.subtitleTracks), hls.subtitleTrack));
  hls.on(Hls.Events.SUBTITLE_TRACK_SWITCH, (_event, data) => subtitles.mark(data.id));
  subtitles.onChoose((index) => (hls.subtitleTrack = index));
  hls.on(Hls.Events.AUDIO_TRACKS_UPDATED, () => audio.show(audioEntries(hls.audioTracks), hls.audioTrack));
  hls.on(Hls.Events.AUDIO_TRACK_SWITCHED, (_event, data) => audio.mark(data.id));
  audio.onChoose((index) => (hls.audioTrack = index));
}

// dash.js lists a MediaInfo per AdaptationSet: `lang`, and the set's Label in `labels`.
const dashTrack = (info) => ({ name: (info.labels || [])[0]?.text || "", lang: info.lang || "" });

export function dashTracks(player, shell, output) {
  const events = dashjs.MediaPlayer.events;
  const subtitles = trackMenu(shell, "subtitles", "Subtitles");
  const audio = trackMenu(shell, "audio", "Audio");
  const textTracks = () => (player.getTracksFor("text") || []).map(dashTrack);
  const activeText = () => (player.isTextEnabled() ? player.getCurrentTextTrackIndex() : OFF);
  const chooseText = (index) => {
    player.enableText(index !== OFF);
    if (index !== OFF) player.setTextTrack(index);
    subtitles.mark(index);
  };
  player.on(events.TEXT_TRACKS_ADDED, () => {
    const tracks = textTracks();
    subtitles.show(subtitleEntries(tracks), activeText());
    // An MPD marks no default text set, and dash.js would show the first: the spec's default
    // track is shown instead, or none.
    chooseText(defaultTextIndex(output, tracks));
  });
  subtitles.onChoose(chooseText);
  const audioInfos = () => player.getTracksFor("audio") || [];
  const activeAudio = () => audioInfos().indexOf(player.getCurrentTrackFor("audio"));
  player.on(events.STREAM_INITIALIZED, () => audio.show(audioEntries(audioInfos().map(dashTrack)), activeAudio()));
  player.on(events.TRACK_CHANGE_RENDERED, (e) => {
    if (e.mediaType === "audio") audio.mark(activeAudio());
  });
  // dash.js takes a chosen track at once (getCurrentTrackFor) but says TRACK_CHANGE_RENDERED
  // only once the playhead reaches a segment of it, never while paused or ended: the menu
  // shows the player's current track as soon as it has taken the choice.
  audio.onChoose((index) => {
    player.setCurrentTrack(audioInfos()[index]);
    audio.mark(activeAudio());
  });
}

// The carried text tracks of the spec in order (a burned-in one is in no manifest), and the
// default's index in `tracks` (matched by language), or OFF.
function defaultTextIndex(output, tracks) {
  const carried = (output.spec?.textTracks || []).filter((t) => !t.burnIn);
  const position = carried.findIndex((t) => t.default);
  if (position < 0) return OFF;
  const language = carried[position].language;
  if (tracks[position]?.lang === language) return position;
  return tracks.findIndex((t) => t.lang === language);
}

// A progressive file's text tracks are its .vtt sidecars (text_<position>_<language>.vtt):
// browsers show no text track of an MP4 (mov_text), so each sidecar becomes a <track>, with
// the spec's name and kind. Called before the video's src is set.
export function fileTracks(output, shell) {
  const specs = output.spec?.textTracks || [];
  const elements = [];
  for (const file of output.files || []) {
    const match = file.path.match(/^text_(\d+)_([^/]+)\.vtt$/);
    if (!match) continue;
    const spec = specs[Number(match[1])] || {};
    const src = fileUrl(output, file.path);
    // A <track> from another origin loads only through CORS, and only on a CORS <video>.
    if (new URL(src, location.href).origin !== location.origin) shell.video.crossOrigin = "anonymous";
    const kind = spec.kind === "TEXT_TRACK_KIND_CAPTIONS" ? "captions" : "subtitles";
    elements.push(h("track", { kind, srclang: match[2], label: spec.name || defaultName(match[2], kind, spec.forced), src, default: Boolean(spec.default) }));
  }
  if (!elements.length) return;
  shell.video.append(...elements);
  const subtitles = trackMenu(shell, "subtitles", "Subtitles");
  const tracks = elements.map((el) => el.track);
  const active = () => tracks.findIndex((t) => t.mode === "showing");
  subtitles.show(
    subtitleEntries(tracks.map((t) => ({ name: t.label, lang: t.language }))),
    elements.findIndex((el) => el.default),
  );
  subtitles.onChoose((index) => tracks.forEach((t, i) => (t.mode = i === index ? "showing" : "disabled")));
  shell.video.textTracks.addEventListener("change", () => subtitles.mark(active()));
}

// The name kiln gives a track without one: the language's English name, as the manifests have it.
function defaultName(language, kind, forced) {
  let name = language;
  try {
    name = new Intl.DisplayNames(["en"], { type: "language" }).of(language) || language;
  } catch {
    // A tag the browser's table does not know: the tag itself.
  }
  return `${name}${kind === "captions" ? " (CC)" : forced ? " (forced)" : ""}`;
}
