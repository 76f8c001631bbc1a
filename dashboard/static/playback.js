// Where an output's files are played from: URLs under its playback folder, and fetching them.

// The playback URL of one file of an output, from its path inside the output's folder.
export function fileUrl(output, path) {
  return output.playbackBaseUrl + path.split("/").map(encodeURIComponent).join("/");
}

// The path inside the output's folder that a URL names (the key of the job's file list).
export function pathInFolder(output, url) {
  const base = new URL(output.playbackBaseUrl, location.href);
  const target = new URL(url, base);
  if (target.origin !== base.origin || !target.pathname.startsWith(base.pathname)) return null;
  return decodeURIComponent(target.pathname.slice(base.pathname.length));
}

export const endsWith = (url, suffix) => new URL(url, location.href).pathname.endsWith(suffix);

export async function fetchText(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${response.status} ${response.statusText} for ${new URL(url, location.href).pathname.split("/").pop()}`);
  return response.text();
}
