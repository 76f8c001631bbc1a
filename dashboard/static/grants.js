// Encrypted outputs (AES-128 HLS, CENC DASH and CMAF) play only with a playback grant: a key
// token that CreatePlaybackGrant mints for the signed-in API key, riding in the playback URL
// (`?kt=`). The playlists and MPD kiln serves under that URL point at its key endpoint for
// this viewer, so hls.js fetches the keys with its default loader and dash.js finds the Clear
// Key license URL in the MPD (`dashif:Laurl`): neither player is told a key.
//
// A key token expires (10 minutes by default). Nothing here counts the minutes: when a player
// reports a key or license error, the page mints a new grant and rebuilds the player where it
// was, once. A second key error before the rebuilt player has played is not an expiry, and is
// shown as the error it is.

import * as fmt from "./format.js";
import { fileUrl } from "./playback.js";

const { h } = fmt;

const SCHEME_NAMES = { ENCRYPTION_SCHEME_AES_128: "AES-128", ENCRYPTION_SCHEME_CENC: "CENC" };

// The small label on an encrypted output: its scheme, and its key rotation if any.
export function encryptionLabel(output) {
  const { scheme, rotateEverySegments } = output.encryption;
  const name = SCHEME_NAMES[scheme] || fmt.short(scheme, "ENCRYPTION_SCHEME_");
  const rotation = rotateEverySegments ? `, a new key every ${rotateEverySegments} segments` : "";
  return h("span", { class: "tag encryption", "data-testid": "encryption", "data-scheme": name }, `encrypted (${name}${rotation})`);
}

// The manifests a grant opens. A CMAF output's playback URL is its HLS master; its MPD, in the
// same folder, needs the same key token to be rewritten for this viewer.
export function grantedManifests(output, grant, type) {
  const url = grant.playbackUrl;
  const isMpd = new URL(url, location.href).pathname.endsWith(".mpd");
  const token = `?kt=${encodeURIComponent(grant.keyToken)}`;
  return {
    hlsUrl: isMpd ? null : url,
    mpdUrl: isMpd ? url : type === "CMAF" ? fileUrl(output, "manifest.mpd") + token : null,
    // hls.js plays CMAF's CENC segments through EME Clear Key, licensed by kiln.
    hlsConfig: grant.clearkeyLicenseUrl ? { emeEnabled: true, drmSystems: { "org.w3.clearkey": { licenseUrl: grant.clearkeyLicenseUrl } } } : {},
  };
}

// Builds an encrypted output's players from a grant, and from a new one after a key error.
// `mint()` asks CreatePlaybackGrant for this output; `mount(grant, holder, hooks)` builds the
// players into `holder` with hooks { onKeyError, onPlaying, startAt, autoplay } and returns
// their disposer. Returns this output's disposer.
export function grantedPlayers(output, node, { mint, mount }) {
  const state = { disposed: false, renewable: true, dispose: () => {} };
  const holder = h("div", { class: "granted-media" });
  node.append(holder);
  window.kiln.grantRenewals = window.kiln.grantRenewals || [];

  const build = (grant, resume) => {
    state.dispose();
    holder.replaceChildren();
    // Set once this player asked for a new grant: its further key errors are the same expiry.
    let renewing = false;
    state.dispose = mount(grant, holder, {
      ...resume,
      // The token worked once the player plays: a later key error is a new expiry.
      onPlaying: () => (state.renewable = true),
      onKeyError: (player, details, video) => {
        if (renewing) return true;
        if (!state.renewable) return false;
        renewing = true;
        state.renewable = false;
        window.kiln.grantRenewals.push({ outputId: output.id, player, details: String(details), time: Date.now() });
        const where = { startAt: video.currentTime, autoplay: !video.paused };
        // The failed player goes as soon as the player's error handler has returned (not from
        // inside it); what it reports meanwhile is swallowed above.
        queueMicrotask(() => {
          state.dispose();
          state.dispose = () => {};
          holder.replaceChildren(h("p", { class: "muted small" }, "Renewing the key token…"));
          obtain(where);
        });
        return true;
      },
    });
  };
  const obtain = (resume) =>
    mint().then(
      (grant) => state.disposed || build(grant, resume),
      (err) => {
        if (state.disposed) return;
        window.kiln.playerErrors.push({ outputId: output.id, player: "grant", type: "CreatePlaybackGrant", details: String(err.message || err), fatal: true, time: Date.now() });
        holder.replaceChildren(h("p", { class: "error small" }, `No playback grant: ${err.message || err}`));
      },
    );
  obtain({});
  return () => {
    state.disposed = true;
    state.dispose();
  };
}

// When a grant's key token stops opening keys.
export function grantExpiry(grant) {
  return grant.keyTokenExpireTime ? `key token works until ${fmt.time(grant.keyTokenExpireTime)}` : "";
}
