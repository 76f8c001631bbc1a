"""Chunked fMP4 outputs (fMP4 HLS, DASH, CMAF) playable while they encode, through the running
server: the audio listed segment by segment while its AUDIO task runs, DASH and CMAF behind a
dynamic MPD that lists only complete segments from the start and turns static at the merge,
and dash.js and hls.js started mid-job playing to the end.

test_chunked.py's cluster settings (12 s chunks after a 2 s first one), on a cluster of its
own whose worker runs three tasks at once: two of them stay held on the input while a third
finishes a later chunk.
"""

from __future__ import annotations

import http.server
import itertools
from fractions import Fraction
from pathlib import Path
from xml.etree import ElementTree

import m3u8
import pytest
from kiln.v1 import job_pb2, job_service_pb2

from tests.conftest import make_clip
from tests.http_origins import HeldMedia, Origin, hold_on, send
from tests.support import plain_http
from tests.support.browser import require_browser
from tests.support.fmp4_boxes import fmp4_timescale, fragment_span
from tests.support.manifests import MPD_NS, hls_renditions, mpd_renditions
from tests.support.players import other_origin_site, play_cases
from tests.support.processes import wait_until

from .chunked_jobs import SETTINGS, fmp4_ladder, output_dir, tasks_of
from .cluster import running_cluster
from .jobs import create_job, run_to_end

# 26 s of the 60 s source: chunks of 0-2, 2-14 and 14-26 s. The input is held at 10 % of
# its bytes (6 s): the AUDIO piece and the 2-14 s chunk wait there, the first chunk and the
# last (which starts reading at the source's keyframe at 8.3 s, past the hold) finish.
HOLD_AT = 0.1
CLIP = 26
# The players' case: the same clip, held at 35 % (21 s): the first two chunks are done when
# the player starts, the last chunk and the audio wait. The player plays 14 s meanwhile, which
# the rest of the job takes a few seconds to encode (a player that catches up with the encode
# stalls, as it would on any live stream: hls.js warns of it).
PLAYER_HOLD_AT = 0.35


@pytest.fixture(scope="module")
def live_cluster(sqlite_backend_url, tmp_path_factory, media_root):
    root = tmp_path_factory.mktemp("chunked_live")
    with running_cluster(sqlite_backend_url, root, media_root, settings=SETTINGS) as (
        cluster,
        server,
    ):
        cluster.start_worker(server, concurrency=3)
        yield cluster, server


@pytest.fixture(scope="module")
def auth(live_cluster):
    cluster, _ = live_cluster
    return (("authorization", f"Bearer {cluster.create_key('org_live')}"),)


@pytest.fixture(scope="module")
def source60(media_root) -> Path:
    return make_clip(media_root / "chunk60_160x90.mp4", seconds=60, size="160x90")


def one_rung(kind: str, seconds: int) -> job_pb2.OutputSpec:
    spec = fmp4_ladder(kind)
    del spec.video[0]
    spec.clip.duration_seconds = seconds
    return spec


def get(server, auth, job_id: str) -> job_pb2.Job:
    return server.job_stub().Get(job_service_pb2.GetRequest(id=job_id), metadata=auth).job


def task_status(cluster, job_id: str, kind: str, index: int | None = None) -> str:
    rows = [r for r in tasks_of(cluster, job_id) if r["kind"] == kind]
    if index is not None:
        rows = [r for r in rows if r["chunk_index"] == index]
    assert len(rows) <= 1, rows
    return rows[0]["status"] if rows else "NOT QUEUED"


def live_timelines(text: str) -> dict[str, tuple[str, list[str], list[tuple[int, int]]]]:
    """Each Representation of a live MPD: (init, segment paths, (t, d) of each)."""
    root = ElementTree.fromstring(text)
    found = {}
    for representation in root.iterfind(".//mpd:Representation", MPD_NS):
        template = representation.find("mpd:SegmentTemplate", MPD_NS)
        assert template is not None
        number = int(template.get("startNumber", "1"))
        spans: list[tuple[int, int]] = []
        at = 0
        for entry in template.iterfind("mpd:SegmentTimeline/mpd:S", MPD_NS):
            at = int(entry.get("t", at))
            for _ in range(int(entry.get("r", "0")) + 1):
                spans.append((at, int(entry.get("d", "0"))))
                at += int(entry.get("d", "0"))
        media = template.get("media", "")
        paths = [
            media.replace("$Number%05d$", f"{n:05d}") for n in range(number, number + len(spans))
        ]
        found[representation.get("id", "")] = (template.get("initialization", ""), paths, spans)
    return found


def check_live_mpd(
    base: str, text: str, files: dict[str, int], scratch: Path
) -> dict[str, tuple[int, list[tuple[int, int]]]]:
    """The live MPD `text`: dynamic, every file it names stored at the size Get lists (read
    after the MPD), its timelines from 0 without a gap, each segment's t and d its own boxes'.
    Each Representation's (timescale, (t, d) per segment)."""
    root = ElementTree.fromstring(text)
    assert root.get("type") == "dynamic" and root.get("mediaPresentationDuration") is None
    assert root.get("availabilityStartTime") and root.get("publishTime")
    assert root.get("minimumUpdatePeriod") == "PT2.000S"
    assert root.get("profiles") == "urn:mpeg:dash:profile:isoff-live:2011"
    timelines = {}
    for name, (init, paths, spans) in live_timelines(text).items():
        assert spans and spans[0][0] == 0, (name, spans[:1])
        for (start, length), (following, _) in itertools.pairwise(spans):
            assert following == start + length, (name, "gap in the timeline")
        for path in [init, *paths]:
            fetched = plain_http.get(base + path)
            assert fetched.status_code == 200 and len(fetched.content) == files[path], path
            (scratch / path).parent.mkdir(parents=True, exist_ok=True)
            (scratch / path).write_bytes(fetched.content)
        for path, span in zip(paths, spans, strict=True):
            assert fragment_span(scratch / path) == span, path
        timelines[name] = (fmp4_timescale(scratch / init), spans)
    return timelines


@pytest.mark.parametrize("kind", ["dash", "cmaf", "hls-fmp4"])
def test_fmp4_outputs_are_live_while_their_pieces_run(live_cluster, auth, source60, tmp_path, kind):
    """While the audio and the second chunk are held and the third chunk is done: the audio is
    listed segment by segment (fMP4 HLS, CMAF: in its EVENT playlist; DASH, CMAF: in the
    dynamic MPD), the video only as far as the first chunk (the third waits for the second),
    every file named is stored; once released, the MPD is static and names exactly the files
    stored."""
    cluster, server = live_cluster
    origin = Origin()
    held = hold_on(origin, source60.read_bytes())
    held.hold_at = HOLD_AT
    try:
        job = create_job(server, auth, held.url, outputs=[one_rung(kind, CLIP)])

        def live_enough() -> bool:
            if task_status(cluster, job.id, "CHUNK", 2) != "DONE":
                return False
            files = {f.path for f in get(server, auth, job.id).outputs[0].files}
            entry = "master.m3u8" if kind != "dash" else "manifest.mpd"
            return entry in files and "audio/seg_00001.m4s" in files

        wait_until(live_enough, timeout=90)
        # Nothing can end before the release: the audio and the second chunk are held.
        assert task_status(cluster, job.id, "AUDIO") == "LEASED"
        assert task_status(cluster, job.id, "CHUNK", 1) == "LEASED"
        live = get(server, auth, job.id)
        assert live.status == job_pb2.JOB_STATUS_PROCESSING
        base = live.outputs[0].playback_base_url
        # Read after the manifests: what they name was listed (and stored) by then.
        if kind in ("dash", "cmaf"):
            answer = plain_http.get(base + "manifest.mpd")
            assert answer.status_code == 200
            # The MPD changes as segments arrive: a CDN must revalidate it every time.
            assert answer.headers["cache-control"] == "no-cache"
            files = {f.path: f.size_bytes for f in get(server, auth, job.id).outputs[0].files}
            timelines = check_live_mpd(base, answer.text, files, tmp_path)
            # The first chunk's one 2 s segment: not the third chunk's, which is done.
            scale, spans = timelines["v0"]
            assert spans == [(0, 2 * scale)]
            assert len(timelines["audio"][1]) >= 2
        if kind in ("hls-fmp4", "cmaf"):
            master = m3u8.loads(plain_http.get(base + "master.m3u8").text)
            assert [m.uri for m in master.media] == ["audio/index.m3u8"]
            audio = m3u8.loads(plain_http.get(base + "audio/index.m3u8").text)
            video = m3u8.loads(plain_http.get(base + "v0/index.m3u8").text)
            files = {f.path: f.size_bytes for f in get(server, auth, job.id).outputs[0].files}
            for rendition, media in (("audio", audio), ("v0", video)):
                assert media.playlist_type == "event" and not media.is_endlist
                assert len(media.segment_map) == 1, rendition
                names = [s.uri for s in media.segments]
                assert names == [f"seg_{n:05d}.m4s" for n in range(len(names))], rendition
                for name in [media.segment_map[0].uri, *names]:
                    answer = plain_http.get(f"{base}{rendition}/{name}")
                    assert answer.status_code == 200, name
                    assert len(answer.content) == files[f"{rendition}/{name}"], name
            assert [s.uri for s in video.segments] == ["seg_00000.m4s"]
            assert len(audio.segments) >= 2
        # Still held: all of it seen before the AUDIO task ended.
        assert task_status(cluster, job.id, "AUDIO") == "LEASED"
        held.release()
        final = run_to_end(server, auth, job.id, timeout=120)
        assert final.status == job_pb2.JOB_STATUS_COMPLETED, final.error
        folder = output_dir(cluster, final)
        stored = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
        referenced: set[str] = set()
        if kind in ("dash", "cmaf"):
            names, _ = mpd_renditions(folder, Fraction(CLIP))  # static, from 0, no gap
            referenced |= names
        if kind in ("hls-fmp4", "cmaf"):
            names, _ = hls_renditions(folder, Fraction(CLIP))
            referenced |= names
        assert stored == referenced, sorted(stored ^ referenced)
        assert {f.path for f in final.outputs[0].files} == stored
    finally:
        held.release()
        origin.close()


def releasing(held: HeldMedia):
    """A route that lets the held input go on: the player's page asks for it once playing."""

    def route(handler: http.server.BaseHTTPRequestHandler, origin: Origin) -> None:
        held.release()
        send(handler, 204, b"", headers={"Access-Control-Allow-Origin": "*"})

    return route


@pytest.mark.parametrize(("kind", "player"), [("dash", "dash"), ("hls-fmp4", "hls")])
def test_a_player_started_mid_job_plays_to_the_end(
    live_cluster, auth, source60, tmp_path, kind, player
):
    """dash.js on the dynamic MPD, hls.js on the EVENT playlists, started while the audio and
    the last chunk are held: each starts at 0, the page releases the input once playing,
    and the player goes on through the join to the end as the job completes (the MPD turning
    static, the playlists ending), without an error or a warning."""
    require_browser("live chunked player")
    cluster, server = live_cluster
    origin = Origin()
    held = hold_on(origin, source60.read_bytes())
    held.hold_at = PLAYER_HOLD_AT
    origin.routes["/release"] = releasing(held)
    try:
        job = create_job(server, auth, held.url, outputs=[one_rung(kind, CLIP)])
        entry = "manifest.mpd" if player == "dash" else "master.m3u8"

        def published() -> bool:
            files = {f.path for f in get(server, auth, job.id).outputs[0].files}
            return entry in files and "v0/seg_00006.m4s" in files  # the second chunk's last

        wait_until(published, timeout=90)
        assert task_status(cluster, job.id, "CHUNK", 2) == "LEASED"
        live = get(server, auth, job.id)
        assert live.status == job_pb2.JOB_STATUS_PROCESSING
        case = {
            "name": f"{kind}/{player}",
            "player": player,
            "url": live.outputs[0].playback_base_url + entry,
            "release": origin.url("/release"),
        }
        with other_origin_site(tmp_path / "site") as site:
            report = play_cases(
                {
                    "kiln": server.http_url,
                    # Past the clip's last sample: the page waits for the element's own
                    # `ended`, so a player that stops short, or stops at the end and then
                    # moves back, is seen (within reachSeconds).
                    "playSeconds": CLIP + 1,
                    # A ceiling, not a wait: the clip plays in real time, and the rest of the
                    # job is encoded meanwhile.
                    "reachSeconds": 60,
                    "cases": [case],
                },
                tmp_path / "cases.json",
                site,
                timeout=180,
            )
        [result] = report["results"]
        print(result["starts"], result["time"], result["ms"], result["issues"])
        assert held.released.is_set(), "the page never released the input"
        assert result["liveAtStart"] is True, result
        assert result["issues"] == [], result["issues"]
        assert set(result["starts"]) == {"video/mp4", "audio/mp4"}, result["starts"]
        assert all(abs(start) < 1 / 30 for start in result["starts"].values()), result["starts"]
        # To the end, which it only knew of once the job completed.
        state = {key: result[key] for key in ("time", "duration", "ended", "liveAtEnd", "ms")}
        # Ended, by the element's own `ended`, where the media ends (the audio's last sample,
        # 26.005 s). dash.js stopped at 25.505 s, paused, in 2 of 5 runs while the MPD's
        # Period ended at 26.005 s, inside that last sample (common.chunk_mpd.presentation_end).
        assert result["ended"] is True, state
        assert CLIP <= result["time"] == result["duration"] < CLIP + 1 / 30, state
        assert result["liveAtEnd"] is False, state
        final = run_to_end(server, auth, job.id, timeout=60)
        assert final.status == job_pb2.JOB_STATUS_COMPLETED, final.error
    finally:
        held.release()
        origin.close()
