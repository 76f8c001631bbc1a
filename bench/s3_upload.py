"""Benchmark: uploading a ladder to an S3 store, kiln's worker path against plain clients.

Setup: a SeaweedFS S3 server (`weed mini`, tests/support/seaweedfs.py, request log off) on
this machine, and a ladder of random bytes in a temp dir: `--mb` MB (10^6 bytes) shaped like
an HLS output, three renditions of segments around 2 MB, 1 MB and 0.5 MB (±25 %, 55 %, 30 %
and 15 % of the bytes) with a playlist each and a master playlist.

Candidates, each uploading the whole ladder to its own prefix with the right Content-Type:

  raw       one boto3 client, `upload_file` per file, one file after another (the floor
            every other candidate is held to)
  boto3x8   the same client, `upload_file` from 8 threads
  obstore   obstore's S3Store, `put_async` per file, 8 at a time
  worker    kiln's worker path: S3Storage.presigned_put signs a URL per file (the server's
            part, timed apart and not in the figure), grants.upload_with_grants sends them
            with 8 threads and no keys
  server    kiln's server path: S3Storage.add_files (boto3's transfer manager, 8 threads)

`--runs` rounds (order reversed every other round) after one untimed warm-up upload; every
upload is checked by listing its sizes before the prefix is deleted. Medians over rounds.
Target: worker ≥ 0.8x raw.

Run: .venv/bin/python bench/s3_upload.py [--runs 5] [--mb 200] [--concurrency 8] [--no-record]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "gen")]

import obstore  # noqa: E402
from obstore.store import S3Store  # noqa: E402

from bench.cp_support import machine_line, print_and_record  # noqa: E402
from common.storage.grants import TransferGrant, upload_with_grants  # noqa: E402
from common.storage.media_types import mime_type_for  # noqa: E402
from common.storage.s3 import S3Storage  # noqa: E402
from tests.support.seaweedfs import SeaweedS3  # noqa: E402

BUCKET = "kiln-bench-uploads"
TARGET_RATIO = 0.8
MB = 1_000_000
# (folder, typical segment size in MB, share of the ladder's bytes)
RENDITIONS = (("v0", 2.0, 0.55), ("v1", 1.0, 0.30), ("v2", 0.5, 0.15))
SEGMENT_SPREAD = 0.25

Ladder = list[tuple[Path, str]]


def make_ladder(root: Path, total_mb: float, seed: int = 7) -> Ladder:
    """Random-byte segments and real-looking playlists; (path, name relative to root)."""
    chance = random.Random(seed)
    variants = []
    for folder, segment_mb, share in RENDITIONS:
        (root / folder).mkdir(parents=True)
        budget = int(total_mb * share * MB)
        lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:4"]
        index = 0
        while budget > 0:
            size = int(segment_mb * MB * chance.uniform(1 - SEGMENT_SPREAD, 1 + SEGMENT_SPREAD))
            size = min(size, budget)
            (root / folder / f"seg_{index:05d}.ts").write_bytes(os.urandom(size))
            lines += ["#EXTINF:4.000,", f"seg_{index:05d}.ts"]
            budget -= size
            index += 1
        (root / folder / "index.m3u8").write_text("\n".join([*lines, "#EXT-X-ENDLIST", ""]))
        variants.append(folder)
    master = ["#EXTM3U"]
    for folder in variants:
        master += ["#EXT-X-STREAM-INF:BANDWIDTH=1000000", f"{folder}/index.m3u8"]
    (root / "master.m3u8").write_text("\n".join([*master, ""]))
    return [
        (path, path.relative_to(root).as_posix())
        for path in sorted(root.rglob("*"))
        if path.is_file()
    ]


class Candidates:
    """Each candidate uploads the ladder under a key prefix; the clients are made once."""

    names = ("raw", "boto3x8", "obstore", "worker", "server")

    def __init__(self, server: SeaweedS3, root: Path, ladder: Ladder, concurrency: int) -> None:
        self.root = root
        self.ladder = ladder
        self.concurrency = concurrency
        self.client = server.client()
        self.storage = S3Storage(
            server.location(BUCKET), server.admin_keys, transfer_concurrency=concurrency
        )
        keys = server.admin_keys
        self.store = S3Store(
            BUCKET,
            endpoint=server.endpoint_url,
            region=server.region,
            access_key_id=keys.access_key_id,
            secret_access_key=keys.secret_access_key,
            virtual_hosted_style_request=False,
            client_options={"allow_http": True},
        )
        self.signing_seconds: list[float] = []

    def prepare(self, name: str, prefix: str) -> Callable[[], None]:
        """The upload to time, with what comes before it (the worker's signing) done."""
        if name == "raw":
            return lambda: self.raw(prefix)
        if name == "boto3x8":
            return lambda: self.boto3_threads(prefix)
        if name == "obstore":
            return lambda: asyncio.run(self.obstore(prefix))
        if name == "worker":
            grants = self.sign(prefix)
            return lambda: upload_with_grants(grants, concurrency=self.concurrency)
        if name == "server":
            return lambda: self.storage.add_files(self.root, prefix)
        raise ValueError(name)

    def raw(self, prefix: str) -> None:
        for path, name in self.ladder:
            self._upload_file(path, f"{prefix}/{name}")

    def boto3_threads(self, prefix: str) -> None:
        with ThreadPoolExecutor(self.concurrency) as pool:
            uploads = [
                pool.submit(self._upload_file, path, f"{prefix}/{name}")
                for path, name in self.ladder
            ]
            for upload in uploads:
                upload.result()

    async def obstore(self, prefix: str) -> None:
        slots = asyncio.Semaphore(self.concurrency)

        async def upload(path: Path, name: str) -> None:
            async with slots:
                await obstore.put_async(
                    self.store,
                    f"{prefix}/{name}",
                    path,
                    attributes={"Content-Type": mime_type_for(path)},
                )

        await asyncio.gather(*(upload(path, name) for path, name in self.ladder))

    def sign(self, prefix: str) -> list[tuple[Path, TransferGrant]]:
        """The server's part of the worker path, timed apart: it happens before a task is
        handed out."""
        started = time.perf_counter()
        grants = []
        for path, name in self.ladder:
            url, headers, _ = self.storage.presigned_put(
                f"{prefix}/{name}", 3600, mime_type_for(path)
            )
            grants.append((path, TransferGrant(name, "PUT", url, headers)))
        self.signing_seconds.append(time.perf_counter() - started)
        return grants

    def _upload_file(self, path: Path, key: str) -> None:
        self.client.upload_file(
            str(path), BUCKET, key, ExtraArgs={"ContentType": mime_type_for(path)}
        )


def timed_upload(candidates: Candidates, name: str, prefix: str, expected: dict[str, int]) -> float:
    upload = candidates.prepare(name, prefix)
    started = time.perf_counter()
    upload()
    seconds = time.perf_counter() - started
    stored = candidates.storage.stored_sizes(prefix)
    if stored != expected:
        raise AssertionError(f"{name} left {len(stored)} files, not the {len(expected)} expected")
    candidates.storage.delete_prefix(prefix)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--mb", type=float, default=200.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="kiln-s3-bench-") as scratch:
        root = Path(scratch)
        ladder = make_ladder(root / "ladder", args.mb)
        expected = {name: path.stat().st_size for path, name in ladder}
        total_bytes = sum(expected.values())
        # Large volumes: 5 GB goes through a run, and each new volume is a pause for growth.
        server = SeaweedS3(root / "seaweedfs", request_log=False, volume_size_limit_mb=1024)
        startup = server.start()
        try:
            server.make_bucket(BUCKET)
            candidates = Candidates(server, root / "ladder", ladder, args.concurrency)
            names = list(candidates.names)
            timed_upload(candidates, "boto3x8", "warmup", expected)
            seconds: dict[str, list[float]] = {name: [] for name in names}
            for run in range(args.runs):
                order = names if run % 2 == 0 else names[::-1]
                for name in order:
                    took = timed_upload(candidates, name, f"run{run}/{name}", expected)
                    seconds[name].append(took)
                    print(f"run {run + 1} {name:8s} {total_bytes / MB / took:7.1f} MB/s")
        finally:
            server.stop()

    lines = report(args, ladder, total_bytes, startup, seconds, candidates.signing_seconds)
    print_and_record(lines, record=not args.no_record)


def report(
    args: Any,
    ladder: Ladder,
    total_bytes: int,
    startup: float,
    seconds: dict[str, list[float]],
    signing: list[float],
) -> list[str]:
    rate = {name: total_bytes / MB / statistics.median(runs) for name, runs in seconds.items()}
    ratio = rate["worker"] / rate["raw"]
    segments = sum(1 for _, name in ladder if name.endswith(".ts"))
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "",
        f"## s3_upload — {when}",
        "",
        f"{total_bytes / MB:.0f} MB ladder ({segments} segments of 0.4-2.5 MB in 3 renditions "
        f"and {len(ladder) - segments} playlists) to SeaweedFS 4.48 (`weed mini`, started in "
        f"{startup:.2f} s) on the same machine; medians of {args.runs} runs, order reversed "
        f"every other run, concurrency {args.concurrency}. MB = 10^6 bytes.",
        "",
        "| candidate | median MB/s | runs (MB/s) | vs raw |",
        "|---|---|---|---|",
    ]
    for name, runs in seconds.items():
        each = ", ".join(f"{total_bytes / MB / took:.0f}" for took in runs)
        lines.append(f"| {name} | {rate[name]:.1f} | {each} | {rate[name] / rate['raw']:.2f}x |")
    verdict = "meets" if ratio >= TARGET_RATIO else "misses"
    lines += [
        "",
        f"Worker path (presigned PUTs through grants.upload_with_grants) at {ratio:.2f}x raw "
        f"single-client boto3: {verdict} the {TARGET_RATIO}x target. Signing the "
        f"{len(ladder)} URLs (server side, not in the worker figure) took a median "
        f"{statistics.median(signing) * 1000:.0f} ms.",
        machine_line() + " Shared 2-core VM: SeaweedFS and the client share both cores.",
        "",
    ]
    return lines


if __name__ == "__main__":
    main()
