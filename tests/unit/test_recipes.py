"""Recipes: validation with paths naming the recipe or parameter, and what each expands to."""

from __future__ import annotations

from pathlib import Path

import pytest
from kiln.v1 import job_pb2, job_service_pb2

from common.input_policy import InputPolicy
from server.domain import recipes
from server.domain.errors import FieldViolation, InvalidArgument
from server.domain.presets import SYSTEM_PRESETS, resolve
from server.domain.validation import validate_create, validate_preset
from worker.media.commands import build_command
from worker.media.stream_copy import extract_audio_copies, web_ready_copies_video

T = job_pb2.OutputType
V = job_pb2.VideoCodec


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "in.mp4").write_bytes(b"\x00")
    return tmp_path


@pytest.fixture
def policy(root: Path) -> InputPolicy:
    return InputPolicy.from_lists([str(root)], [], [])


def recipe(name: str, type: job_pb2.OutputType | None = None, **params: str) -> job_pb2.OutputSpec:
    spec = job_pb2.OutputSpec(recipe=job_pb2.Recipe(name=name, params=params))
    if type:
        spec.type = type
    return spec


def request(root: Path, *outputs: job_pb2.OutputSpec, **fields) -> job_service_pb2.CreateRequest:
    return job_service_pb2.CreateRequest(
        input_url=(root / "in.mp4").as_uri(), outputs=list(outputs), **fields
    )


def violations(root: Path, policy: InputPolicy, *outputs, **fields) -> list[FieldViolation]:
    with pytest.raises(InvalidArgument) as raised:
        validate_create(request(root, *outputs, **fields), policy, set(SYSTEM_PRESETS))
    return raised.value.violations


def paths(found: list[FieldViolation]) -> dict[str, str]:
    return {violation.field: violation.description for violation in found}


def expanded(spec: job_pb2.OutputSpec) -> job_pb2.OutputSpec:
    expansion = recipes.expand(spec)
    assert expansion.problems == []
    assert expansion.spec is not None
    return expansion.spec


def test_every_recipe_with_valid_parameters_passes(root, policy):
    outputs = [
        recipe("thumbnail", seekSeconds="1.5", width="160"),
        recipe("compress", crf="30"),
        recipe("web_ready"),
        recipe("proxy", resolution="360p", crf="30", all_intra="true"),
        recipe("resize", resolution="640x360", allow_upscale="false"),
        recipe("trim", start_seconds="0.5", end_seconds="1.5"),
        recipe("extract_audio", T.OUTPUT_TYPE_MP3),
        recipe("transcode", T.OUTPUT_TYPE_WEBM, codec="av1", quality="economy", crf="40"),
    ]
    validate_create(request(root, *outputs), policy, set(SYSTEM_PRESETS))
    concat = request(root, recipe("concat"), concat_input_urls=[(root / "in.mp4").as_uri()])
    validate_create(concat, policy, set(SYSTEM_PRESETS))


def test_unknown_recipe_is_named(root, policy):
    found = paths(violations(root, policy, recipe("gif_me")))
    assert list(found) == ["outputs[0].recipe.name"]
    assert "unknown recipe 'gif_me'" in found["outputs[0].recipe.name"]
    assert "web_ready" in found["outputs[0].recipe.name"]  # the list of recipes
    assert "is required" in paths(violations(root, policy, recipe("")))["outputs[0].recipe.name"]


def test_unknown_and_bad_parameters_are_named(root, policy):
    found = paths(
        violations(
            root,
            policy,
            recipe("compress", crf="abc", speed="fast"),
            recipe("thumbnail", seek_seconds="-1", width="9999"),
            recipe("proxy", all_intra="maybe"),
            recipe("transcode", codec="mpeg2"),
        )
    )
    assert found == {
        "outputs[0].recipe.params['crf']": "'abc' is not a whole number",
        "outputs[0].recipe.params['speed']": "compress has no parameter 'speed'; known: crf",
        "outputs[1].recipe.params['seek_seconds']": "must be at least 0",
        "outputs[1].recipe.params['width']": "must be between 16 and 4096",
        "outputs[2].recipe.params['all_intra']": "'maybe' is not true or false",
        "outputs[3].recipe.params['codec']": "'mpeg2' is not one of h264, h265, vp9, av1",
    }


def test_checks_of_the_expanded_spec_are_reported_at_the_parameter(root, policy):
    found = paths(
        violations(
            root,
            policy,
            recipe("compress", crf="60"),  # in range for VP9, not for H.264
            recipe("resize", resolution="huge"),
            recipe("transcode", T.OUTPUT_TYPE_MP4, codec="vp9"),
        )
    )
    assert found["outputs[0].recipe.params['crf']"] == "must be between 1 and 51 for H264"
    assert "'huge' is not one of" in found["outputs[1].recipe.params['resolution']"]
    assert found["outputs[2].recipe.params['codec']"] == "VP9 cannot be used in MP4"
    assert len(found) == 3


def test_required_parameters_types_and_relations(root, policy):
    found = paths(
        violations(
            root,
            policy,
            recipe("resize"),
            recipe("trim"),
            recipe("trim", start_seconds="2", end_seconds="1"),
            recipe("trim", end_seconds="2", duration_seconds="1"),
            recipe("thumbnail", T.OUTPUT_TYPE_MP4),
            recipe("concat"),
        )
    )
    assert found == {
        "outputs[0].recipe.params['resolution']": "is required by resize",
        "outputs[1].recipe.params['end_seconds']": (
            "trim needs start_seconds, end_seconds or duration_seconds"
        ),
        "outputs[2].recipe.params['end_seconds']": "must be after start_seconds",
        "outputs[3].recipe.params['duration_seconds']": (
            "give end_seconds or duration_seconds, not both"
        ),
        "outputs[4].type": "thumbnail makes JPG, PNG, WEBP, not MP4",
        "outputs[5].recipe.name": (
            "concat joins the job's inputs: set concat_input_urls (read after input_url)"
        ),
    }


def test_fields_a_recipe_decides_or_cannot_take(root, policy):
    web_ready = recipe("web_ready")
    web_ready.video.add(codec=V.VIDEO_CODEC_H265)
    web_ready.clip.start_seconds = 1
    audio = recipe("extract_audio")
    audio.video.add(codec=V.VIDEO_CODEC_H264)
    segmented = recipe("compress")
    segmented.segments.duration_seconds = 4
    found = paths(violations(root, policy, web_ready, audio, segmented))
    assert found == {
        "outputs[0].video": "web_ready decides video itself; it cannot be overridden",
        "outputs[0].clip": "web_ready decides clip itself; it cannot be overridden",
        "outputs[1].video": "extract_audio makes no video as M4A",
        "outputs[2].segments": "cannot be combined with a recipe",
    }


def test_overrides_are_checked_where_they_are(root, policy):
    spec = recipe("compress")
    spec.audio.bitrate_kbps = 5000
    found = paths(violations(root, policy, spec))
    assert found == {"outputs[0].audio.bitrate_kbps": "must be between 8 and 640"}


def test_a_recipe_with_thumbnail_output_in_a_concat_job_is_refused(root, policy):
    found = paths(
        violations(
            root, policy, recipe("thumbnail"), concat_input_urls=[(root / "in.mp4").as_uri()]
        )
    )
    assert (
        "concatenated inputs make progressive or audio outputs only"
        in (found["outputs[0].recipe.name"])
    )


def test_expansions():
    thumbnail = expanded(recipe("thumbnail", T.OUTPUT_TYPE_PNG, seekSeconds="2"))
    assert thumbnail.type == T.OUTPUT_TYPE_PNG
    assert (thumbnail.thumbnail.mode, thumbnail.thumbnail.time_seconds) == (
        job_pb2.THUMBNAIL_MODE_SINGLE,
        2.0,
    )
    assert expanded(recipe("thumbnail")).thumbnail.time_seconds == 1.0  # Xora's default

    compress = expanded(recipe("compress", crf="31"))
    assert compress.type == T.OUTPUT_TYPE_MP4
    assert (compress.video[0].codec, compress.video[0].crf) == (V.VIDEO_CODEC_H264, 31)
    assert expanded(recipe("compress", T.OUTPUT_TYPE_WEBM)).video[0].codec == V.VIDEO_CODEC_VP9

    proxy = expanded(recipe("proxy", all_intra="true"))
    assert (proxy.video[0].resolution, proxy.video[0].gop_frames) == ("720p", 1)

    trim = expanded(recipe("trim", start_seconds="0.5", end_seconds="1.5"))
    assert (trim.clip.start_seconds, trim.clip.duration_seconds) == (0.5, 1.0)
    audio_trim = expanded(recipe("trim", T.OUTPUT_TYPE_MP3, duration_seconds="1"))
    assert (list(audio_trim.video), audio_trim.clip.duration_seconds) == ([], 1.0)

    transcode = expanded(recipe("transcode", codec="h265", resolution="240p", quality="premium"))
    assert transcode.video[0] == job_pb2.VideoVariant(
        codec=V.VIDEO_CODEC_H265, resolution="240p", quality=job_pb2.QUALITY_PREMIUM
    )
    # The recipe stays on the expanded spec, as the client wrote it.
    assert transcode.recipe.params["codec"] == "h265"


def test_expansion_is_idempotent_so_a_stored_spec_validates_again(root, policy):
    for spec in (
        recipe("web_ready"),
        recipe("proxy", crf="30", all_intra="1"),
        recipe("trim", start_seconds="1"),
        recipe("thumbnail", width="320"),
    ):
        once = expanded(spec)
        assert expanded(once) == once
        validate_create(request(root, once), policy, set(SYSTEM_PRESETS))


def test_inline_fields_override_what_the_recipe_makes():
    spec = recipe("compress", crf="30")
    spec.video.add(resolution="480p")
    spec.audio.bitrate_kbps = 64
    out = expanded(spec)
    assert (out.video[0].codec, out.video[0].crf, out.video[0].resolution) == (
        V.VIDEO_CODEC_H264,
        30,
        "480p",
    )
    assert out.audio.bitrate_kbps == 64


def test_preset_with_a_recipe_and_an_override_resolves_to_the_expansion():
    preset_spec = recipe("compress", crf="33")
    preset_spec.audio.bitrate_kbps = 64
    validate_preset("small", "", preset_spec, True)
    out = resolve(job_pb2.OutputSpec(preset="pst_x"), {"pst_x": preset_spec})
    assert (out.video[0].crf, out.audio.bitrate_kbps, out.recipe.name) == (33, 64, "compress")


def test_preset_with_a_bad_recipe_is_refused_with_the_path():
    with pytest.raises(InvalidArgument) as raised:
        validate_preset("x", "", recipe("compress", crf="0"), True)
    assert [v.field for v in raised.value.violations] == ["preset.spec.recipe.params['crf']"]


def test_recipe_system_presets_resolve():
    for slug in ("recipe_web_ready", "recipe_compress", "recipe_proxy", "recipe_extract_audio"):
        out = resolve(job_pb2.OutputSpec(preset=slug), {})
        assert out.recipe.name == slug.removeprefix("recipe_")
        assert out.type


def probed(container: str, *streams: job_pb2.StreamInfo) -> job_pb2.InputInfo:
    return job_pb2.InputInfo(container=container, duration_seconds=2, streams=streams)


H264 = job_pb2.StreamInfo(
    index=0,
    kind="video",
    codec="h264",
    pixel_format="yuv420p",
    width=320,
    height=180,
    frame_rate=25,
)
AAC = job_pb2.StreamInfo(index=1, kind="audio", codec="aac", channels=2)
MP4_FORMAT = "mov,mp4,m4a,3gp,3g2,mj2"


@pytest.mark.parametrize(
    ("info", "copies"),
    [
        (probed(MP4_FORMAT, H264, AAC), True),
        (probed("matroska,webm", H264), True),
        (probed(MP4_FORMAT, job_pb2.StreamInfo(kind="video", codec="hevc")), False),
        (
            probed(
                MP4_FORMAT,
                job_pb2.StreamInfo(kind="video", codec="h264", pixel_format="yuv420p10le"),
            ),
            False,
        ),
        (probed("avi", H264), False),
        (probed(MP4_FORMAT, AAC), False),
    ],
)
def test_web_ready_copies_only_browser_ready_h264(info, copies):
    assert web_ready_copies_video(info) is copies


def test_web_ready_remux_argv_copies_video_and_aac_and_encodes_other_audio(tmp_path):
    spec = expanded(recipe("web_ready"))
    plan = build_command(
        input_path="in.mp4", spec=spec, info=probed(MP4_FORMAT, H264, AAC), out_dir=tmp_path
    )
    assert plan.argv[plan.argv.index("-c:v") + 1] == "copy"
    assert plan.argv[plan.argv.index("-c:a") + 1] == "copy"
    assert "+faststart" in plan.argv
    opus = job_pb2.StreamInfo(index=1, kind="audio", codec="opus", channels=2)
    plan = build_command(
        input_path="in.mkv",
        spec=spec,
        info=probed("matroska,webm", H264, opus),
        out_dir=tmp_path,
    )
    assert plan.argv[plan.argv.index("-c:v") + 1] == "copy"
    assert plan.argv[plan.argv.index("-c:a") + 1] == "aac"
    # Several inputs are concatenated, never copied.
    plan = build_command(
        input_path="in.mp4",
        spec=spec,
        info=probed(MP4_FORMAT, H264, AAC),
        out_dir=tmp_path,
        extra_inputs=[("b.mp4", probed(MP4_FORMAT, H264, AAC))],
    )
    assert "copy" not in plan.argv


def test_extract_audio_copies_only_into_its_own_codec_and_without_reshaping():
    info = probed(MP4_FORMAT, H264, AAC)
    assert extract_audio_copies(expanded(recipe("extract_audio")), info)
    assert not extract_audio_copies(expanded(recipe("extract_audio", T.OUTPUT_TYPE_MP3)), info)
    assert not extract_audio_copies(expanded(recipe("extract_audio", bitrate_kbps="96")), info)
