"""The CLI's own parsing and safety checks: --output shorthand, spec files, download paths,
and the Watch follower's resume and de-duplication (against a scripted stream)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kiln.v1 import job_pb2, job_service_pb2

from kiln_cli.client import ApiError
from kiln_cli.download import UnsafePath, safe_destination
from kiln_cli.specs import SpecError, load_spec, parse_metadata, parse_output
from kiln_cli.watching import eta_text, follow


def test_output_shorthand_video_ladder_audio_image():
    mp4 = parse_output("mp4:h264:720p")
    assert mp4.type == job_pb2.OUTPUT_TYPE_MP4
    assert [(v.codec, v.resolution) for v in mp4.video] == [(job_pb2.VIDEO_CODEC_H264, "720p")]
    hls = parse_output("HLS:h264:1080p,720p,480p")
    assert hls.type == job_pb2.OUTPUT_TYPE_HLS
    assert [v.resolution for v in hls.video] == ["1080p", "720p", "480p"]
    assert parse_output("webm:vp9:1280x720").video[0].codec == job_pb2.VIDEO_CODEC_VP9
    assert parse_output("jpg") == job_pb2.OutputSpec(type=job_pb2.OUTPUT_TYPE_JPG)
    assert parse_output("mp3") == job_pb2.OutputSpec(type=job_pb2.OUTPUT_TYPE_MP3)


@pytest.mark.parametrize(
    ("shorthand", "says"),
    [
        ("mp4", "expected TYPE:CODEC:RESOLUTION"),
        ("mp4:h264", "expected TYPE:CODEC:RESOLUTION"),
        ("mp4:h264:720p,480p", "exactly one resolution"),
        ("mp4:mpeg2:720p", "unknown codec"),
        ("avi:h264:720p", "unknown output type"),
        ("mp4:h264:big", "not a resolution"),
        ("jpg:h264:720p", "takes no codec"),
        ("hls:h264:", "expected TYPE:CODEC:RESOLUTION"),
    ],
)
def test_malformed_output_shorthand_is_a_spec_error(shorthand, says):
    with pytest.raises(SpecError, match=says):
        parse_output(shorthand)


def test_metadata_pairs():
    assert parse_metadata(["a=1", "b=x=y", "c="]) == {"a": "1", "b": "x=y", "c": ""}
    with pytest.raises(SpecError, match="KEY=VALUE"):
        parse_metadata(["novalue"])


def test_spec_files_json_and_yaml(tmp_path):
    as_json = tmp_path / "job.json"
    as_json.write_text(
        '{"input_url": "file:///in.mp4", "priority": "PRIORITY_PREMIUM",'
        ' "outputs": [{"type": "OUTPUT_TYPE_MP4",'
        ' "video": [{"codec": "VIDEO_CODEC_H264", "resolution": "480p"}]}]}'
    )
    as_yaml = tmp_path / "job.yaml"
    as_yaml.write_text(
        "input_url: file:///in.mp4\n"
        "priority: PRIORITY_PREMIUM\n"
        "outputs:\n"
        "  - type: OUTPUT_TYPE_MP4\n"
        "    video: [{codec: VIDEO_CODEC_H264, resolution: 480p}]\n"
    )
    from_json = load_spec(as_json, job_service_pb2.CreateRequest)
    assert from_json == load_spec(as_yaml, job_service_pb2.CreateRequest)
    assert from_json.priority == job_pb2.PRIORITY_PREMIUM
    assert from_json.outputs[0].video[0].resolution == "480p"


def test_spec_files_take_the_short_enum_spellings(tmp_path):
    path = tmp_path / "short.yaml"
    path.write_text("outputs:\n- type: hls\n  video:\n  - {codec: h264, resolution: 720p}\n")
    spec = load_spec(path, job_service_pb2.CreateRequest)
    assert spec.outputs[0].type == job_pb2.OUTPUT_TYPE_HLS
    assert spec.outputs[0].video[0].codec == job_pb2.VIDEO_CODEC_H264


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("bad.json", "{not json", "not valid JSON or YAML"),
        ("bad.yaml", "a: [unclosed", "not valid JSON or YAML"),
        ("list.yaml", "- 1\n- 2\n", "expected a mapping of CreateRequest"),
        ("field.json", '{"input": "x"}', 'unknown field "input"'),
        ("enum.json", '{"priority": "PRIORITY_URGENT"}', "PRIORITY_URGENT"),
    ],
)
def test_bad_spec_files_are_spec_errors(tmp_path, name, text, says):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(SpecError, match=says):
        load_spec(path, job_service_pb2.CreateRequest)
    with pytest.raises(SpecError, match="No such file"):
        load_spec(tmp_path / "missing.json", job_service_pb2.CreateRequest)


def test_download_paths_stay_inside_the_folder(tmp_path):
    root = tmp_path / "dl"
    assert safe_destination(root, "out_1", "output.mp4") == (root / "out_1/output.mp4").resolve()
    assert (
        safe_destination(root, "out_1", "v0/seg_00001.ts")
        == (root / "out_1/v0/seg_00001.ts").resolve()
    )


@pytest.mark.parametrize(
    ("output_id", "path"),
    [
        ("out_1", "../out_2/x.mp4"),
        ("out_1", "v0/../../../etc/passwd"),
        ("out_1", "/etc/passwd"),
        ("out_1", "..\\..\\evil.exe"),
        ("out_1", "C:/windows/evil.exe"),
        ("out_1", ""),
        ("out_1", "."),
        ("out_1", "nul\x00byte"),
        ("..", "x.mp4"),
        ("out/../..", "x.mp4"),
        ("", "x.mp4"),
    ],
)
def test_hostile_download_paths_are_refused(tmp_path, output_id, path):
    with pytest.raises(UnsafePath):
        safe_destination(tmp_path, output_id, path)


def test_a_symlink_out_of_the_folder_is_refused(tmp_path):
    root = tmp_path / "dl"
    (root / "out_1").mkdir(parents=True)
    (root / "out_1" / "link").symlink_to(tmp_path)
    with pytest.raises(UnsafePath):
        safe_destination(root, "out_1", "link/x.mp4")


def _event(sequence: int, kind: str, **fields: Any) -> dict[str, Any]:
    return {"sequence": str(sequence), kind: fields}


class ScriptedClient:
    """Watch streams played from a script: each is a list of events and an ending.

    It stands in for the Client that follow() takes (hence the arg-type ignores where it is
    passed): it has the two methods follow() calls, and none of the HTTP underneath."""

    def __init__(self, streams: list[tuple[list[dict[str, Any]], Exception | None]]) -> None:
        self.streams = streams
        self.requests: list[int | None] = []

    def watch(self, job_id: str, after_sequence: int | None) -> Iterator[dict[str, Any]]:
        self.requests.append(after_sequence)
        events, ending = self.streams.pop(0)
        yield from events
        if ending:
            raise ending

    def call(self, *_args: Any) -> dict[str, Any]:
        raise AssertionError("no Get expected")


def test_follow_resumes_after_the_last_sequence_and_never_repeats() -> None:
    done = {"job": {"id": "job_1", "status": "JOB_STATUS_COMPLETED"}}
    client = ScriptedClient(
        [
            (
                [
                    _event(2, "snapshot", job={"id": "job_1", "status": "JOB_STATUS_PROCESSING"}),
                    _event(3, "progress", progress=10),
                    _event(3, "heartbeat"),
                ],
                ApiError("unavailable", "watch again with after_sequence=3"),
            ),
            ([], httpx.ConnectError("refused")),
            # A server may replay what the client already has; it is not shown again.
            ([_event(3, "progress", progress=10), _event(4, "progress", progress=50)], None),
            ([_event(5, "completed", **done)], None),
        ]
    )
    # The third stream ends cleanly without a completed event: that resumes too, since
    # the job (Get) is not terminal yet. (Its Get is replaced for this test alone.)
    client.call = lambda *_a: {"job": {"id": "job_1", "status": "JOB_STATUS_PROCESSING"}}  # type: ignore[method-assign]
    seen: list[int] = []
    retries: list[int | None] = []
    job = follow(
        client,  # type: ignore[arg-type]
        "job_1",
        lambda _payload, event: seen.append(event.sequence),
        on_retry=lambda _reason, last, _n: retries.append(last),
        sleep=lambda _s: None,
    )
    assert job.status == job_pb2.JOB_STATUS_COMPLETED
    assert seen == [2, 3, 4, 5]
    assert client.requests == [None, 3, 3, 4]
    assert retries == [3, 3, 4]


def test_follow_gives_up_after_bounded_retries_and_raises_other_errors_at_once() -> None:
    failing = ScriptedClient([([], httpx.ConnectError("refused"))] * 4)
    with pytest.raises(ApiError, match="gave up watching job_1 after 3 retries"):
        follow(failing, "job_1", lambda *_: None, max_failures=3, sleep=lambda _s: None)  # type: ignore[arg-type]
    denied = ScriptedClient([([], ApiError("unauthenticated", "unknown API key"))])
    with pytest.raises(ApiError, match="unauthenticated"):
        follow(denied, "job_1", lambda *_: None, sleep=lambda _s: None)  # type: ignore[arg-type]
    assert denied.requests == [None]


def test_watch_of_a_finished_job_shows_its_completed_event(tmp_path: Path):
    job = {"id": "job_1", "status": "JOB_STATUS_FAILED"}
    client = ScriptedClient(
        [([_event(7, "snapshot", job=job), _event(7, "completed", job=job)], None)]
    )
    kinds: list[str | None] = []
    result = follow(
        client,  # type: ignore[arg-type]
        "job_1",
        lambda _p, event: kinds.append(event.WhichOneof("event")),
        sleep=lambda _s: None,
    )
    assert result.status == job_pb2.JOB_STATUS_FAILED
    assert kinds == ["snapshot", "completed"]


def test_eta_is_shown_in_words_and_never_as_zero_when_unknown():
    assert eta_text(job_pb2.Job()) == ""
    assert eta_text(job_pb2.Job(eta_seconds=0.0)) == "about 0 s left"
    assert eta_text(job_pb2.Output(eta_seconds=12.4)) == "about 12 s left"
    assert eta_text(job_service_pb2.ProgressEvent(eta_seconds=89.6)) == "about 2 min left"
    assert eta_text(job_pb2.Job(eta_seconds=600)) == "about 10 min left"
    assert eta_text(job_pb2.Job(eta_seconds=3 * 3600)) == "about 3.0 h left"
