"""A task's inputs: where FFmpeg finds them, and the guard that stops it on a refusal.

Every http(s) byte of a task goes through the task's egress session (worker remote checks,
staging, ffprobe, ffmpeg), so the policy holds for every hop FFmpeg takes. A refusal is
final: whatever FFmpeg made of the 403 (the hls demuxer skips a failed segment and may
exit 0), the task fails with INPUT_REFUSED naming what was refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from kiln.v1 import job_pb2

from common.egress import EgressSession
from common.input_policy import InputPolicy, InputRefused
from common.manifests import PROBE_BYTES, manifest_kind
from common.storage.gcs import download_to
from common.storage.origins import gcs_client

from . import remote
from .media.errors import CANCELED, MediaError
from .media.input_access import InputAccess
from .media.probe import probe

INPUT_REFUSED = "INPUT_REFUSED"
T = TypeVar("T")
# Downloads a gs:// object to a path (FFmpeg cannot read GCS itself).
GcsStager = Callable[[str, Path], Awaitable[Path]]


class TaskInputs:
    def __init__(
        self,
        policy: InputPolicy,
        session: EgressSession,
        stop: asyncio.Event,
        stage_gs: GcsStager,
    ) -> None:
        self.policy = policy
        self.session = session
        self.stage_gs = stage_gs
        # Set when the task must stop for another reason (canceled, lease lost).
        self.stop = stop
        self.access = InputAccess(proxy_url=session.proxy_url)

    async def guarded(self, work: Awaitable[T]) -> T:
        """Runs `work` (reading inputs, running FFmpeg) until it ends, the proxy refuses a
        request, or the task must stop; a refusal wins over whatever `work` raised."""
        running = asyncio.ensure_future(work)
        stops = [
            asyncio.create_task(self.session.refused.wait()),
            asyncio.create_task(self.stop.wait()),
        ]
        try:
            await asyncio.wait({running, *stops}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in stops:
                waiter.cancel()
            running.cancel()  # a no-op when it ended; otherwise its FFmpeg is killed and reaped
            await asyncio.wait({running})
        self.raise_if_refused()
        if running.cancelled():
            raise MediaError(CANCELED, "canceled")
        return running.result()

    def raise_if_refused(self) -> None:
        if self.session.refusals:
            first = self.session.refusals[0]
            raise MediaError(INPUT_REFUSED, f"input refused: {first.describe()}")

    async def locate(
        self, url: str, staging_dir: Path, *, known_ranges: bool | None
    ) -> tuple[str, bool]:
        """A path or URL FFmpeg can open, and whether an http(s) origin serves byte ranges.

        An http(s) origin that honours ranges is read in place through the proxy, so FFmpeg
        seeks instead of downloading; so is an HLS playlist (its segments are other URLs).
        Anything else is staged to scratch once for this task. Local files, staged or not,
        must not be playlists or manifests: those could name other local files.
        """
        try:
            self.policy.check_syntax(url)
        except InputRefused as refused:
            raise MediaError(INPUT_REFUSED, f"input refused: {refused}") from None
        scheme = urlsplit(url).scheme.lower()
        if scheme == "file":
            return await self._local(self._file_path(url)), False
        if scheme == "gs":
            return await self._local(await self.stage_gs(url, staging_dir / "input")), False
        if scheme not in ("http", "https"):
            raise MediaError(
                "INPUT_UNREADABLE", f"{scheme}:// inputs are not supported by this worker yet"
            )
        if known_ranges:
            return url, True
        origin = await remote.inspect(url, self.session.proxy_url)
        if origin.supports_ranges or origin.is_playlist:
            return url, origin.supports_ranges
        staged = await remote.stage(url, staging_dir / "input", self.session.proxy_url)
        return await self._local(staged), False

    async def fetch_sidecar(self, url: str, staging_dir: Path, limit: int) -> bytes | None:
        """The bytes of a small file a task reads whole (a subtitle sidecar), through the same
        policy and proxy as the input; None when it is larger than `limit` bytes."""
        try:
            self.policy.check_syntax(url)
        except InputRefused as refused:
            raise MediaError(INPUT_REFUSED, f"input refused: {refused}") from None
        scheme = urlsplit(url).scheme.lower()
        if scheme in ("http", "https"):
            return await remote.fetch_limited(url, limit, self.session.proxy_url)
        if scheme == "file":
            path = self._file_path(url)
        elif scheme == "gs":
            path = await self.stage_gs(url, staging_dir / "sidecar")
        else:
            raise MediaError("INPUT_UNREADABLE", f"{scheme}:// files are not read by this worker")
        return await asyncio.to_thread(_read_at_most, path, limit)

    def _file_path(self, url: str) -> Path:
        try:
            return self.policy.local_path(url)
        except InputRefused as refused:
            raise MediaError(INPUT_REFUSED, f"input refused: {refused}") from None

    async def _local(self, path: Path) -> str:
        kind = await asyncio.to_thread(_local_manifest_kind, path)
        if kind is not None:
            raise MediaError(
                INPUT_REFUSED,
                f"input refused: the file is {kind}; a local playlist or manifest could name "
                "other files, so it is not read",
            )
        return str(path)

    async def probe(self, location: str) -> job_pb2.InputInfo:
        return await probe(location, access=self.access)


async def stage_gs_input(url: str, target: Path) -> Path:
    """The worker's GcsStager: gs:// inputs are staged once per task, as FFmpeg cannot read
    GCS itself."""
    try:
        return await download_to(url, target, gcs_client())
    except FileNotFoundError:
        raise MediaError("INPUT_UNREADABLE", "the gs:// input does not exist") from None
    except PermissionError:
        raise MediaError("INPUT_UNREADABLE", "no permission to read the gs:// input") from None
    except ValueError as error:
        raise MediaError(INPUT_REFUSED, str(error)) from None


def _read_at_most(path: Path, limit: int) -> bytes | None:
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except FileNotFoundError:
        raise MediaError("INPUT_UNREADABLE", f"{path.name} does not exist") from None
    except OSError as error:
        raise MediaError(
            "INPUT_UNREADABLE", f"{path.name} cannot be read: {error.strerror}"
        ) from None
    return None if len(data) > limit else data


def _local_manifest_kind(path: Path) -> str | None:
    try:
        with path.open("rb") as handle:
            head = handle.read(PROBE_BYTES)
    except OSError:
        return None  # missing or unreadable: ffprobe says so in its own words
    return manifest_kind(head)
