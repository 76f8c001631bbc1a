"""How FFmpeg and ffprobe may reach an input: which protocols, through which proxy.

The command builders write plain `-i <input>` arguments; `InputAccess.apply` puts the access
options in front of every one, so no builder has to know about them.

- A local input (file:// under the roots, or a staged copy) may use the `file` protocol only,
  so nothing in it can reach the network. (A local playlist could still name other local
  files; the worker refuses local playlists and manifests before FFmpeg sees them.)
- An http(s) input may use only what HTTP(S) through a proxy needs. http_proxy (the option
  and the environment variable, which nested opens such as HLS segments fall back to) points
  at the task's egress proxy, and no_proxy is removed so that no host bypasses it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

# tcp carries http; tls and httpproxy carry https through the proxy (CONNECT); crypto is
# HLS AES-128, whose key and segments are fetched over http(s) again.
REMOTE_PROTOCOLS = "http,https,tcp,tls,httpproxy,crypto"
LOCAL_PROTOCOLS = "file"
_NO_PROXY_VARIABLES = ("no_proxy", "NO_PROXY")


def is_remote(location: str) -> bool:
    return urlsplit(location).scheme.lower() in ("http", "https")


@dataclass(frozen=True)
class InputAccess:
    """proxy_url: the egress proxy every http(s) byte goes through ("" only in tests that
    read local files)."""

    proxy_url: str = ""

    def options_for(self, location: str) -> list[str]:
        """Input options for one input; they go right before its `-i` (or ffprobe's target)."""
        if not is_remote(location):
            return ["-protocol_whitelist", LOCAL_PROTOCOLS]
        options = ["-protocol_whitelist", REMOTE_PROTOCOLS]
        if self.proxy_url:
            # Only for http(s): ffmpeg stops on an input option nothing consumed.
            options += ["-http_proxy", self.proxy_url]
        return options

    def apply(self, argv: Sequence[str]) -> list[str]:
        """argv with the access options in front of every `-i`."""
        result: list[str] = []
        for position, argument in enumerate(argv):
            if argument == "-i" and position + 1 < len(argv):
                result += self.options_for(argv[position + 1])
            result.append(argument)
        return result

    def environment(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if key not in _NO_PROXY_VARIABLES}
        if self.proxy_url:
            env["http_proxy"] = self.proxy_url
        else:
            env.pop("http_proxy", None)
        return env
