"""The output-type catalogue (common/output_types.py) and the tables that must agree with it.

The catalogue says which family a type is in; the worker's builders and the custom-command
allowlist keep their own per-type data (muxers, file names, codecs). These tests hold every
such table to exactly its family, so a type added to the API fails here until it is placed in
a family and every layer knows how to make it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from kiln.v1 import job_pb2

from common import output_types
from common.custom_command_allowlist import MUXERS_BY_TYPE
from server.domain import output_validation, recipe_catalog, recipes
from worker.media import ladder
from worker.media.commands import build_command
from worker.media.containers import AUDIO_CONTAINERS, PROGRESSIVE_CONTAINERS
from worker.media.errors import OutputSpecError
from worker.media.image_formats import IMAGE_FORMATS

T = job_pb2.OutputType

BASE_FAMILIES = (
    output_types.PROGRESSIVE,
    output_types.ADAPTIVE,
    output_types.AUDIO_ONLY,
    output_types.STILL_IMAGES,
    output_types.ANIMATED_IMAGES,
)


def test_every_api_type_is_in_exactly_one_family() -> None:
    placed = [kind for family in BASE_FAMILIES for kind in family]
    assert len(placed) == len(set(placed)), "a type is in two families"
    assert set(placed) == set(T.values()) - {T.OUTPUT_TYPE_UNSPECIFIED}
    assert set(output_types.ALL) == set(placed)


def test_unions_are_made_of_their_families() -> None:
    assert output_types.IMAGES == output_types.STILL_IMAGES + output_types.ANIMATED_IMAGES
    assert output_types.VIDEO == output_types.PROGRESSIVE + output_types.ADAPTIVE
    assert output_types.SINGLE_FILE_MEDIA == output_types.PROGRESSIVE + output_types.AUDIO_ONLY


def test_short_name() -> None:
    assert output_types.short_name(T.OUTPUT_TYPE_MP4) == "MP4"
    assert output_types.short_name(T.OUTPUT_TYPE_CMAF) == "CMAF"
    with pytest.raises(ValueError):
        output_types.short_name(99)


def test_worker_tables_cover_exactly_their_family() -> None:
    # build_command picks the builder by family; each builder then looks the type up here.
    assert set(PROGRESSIVE_CONTAINERS) == set(output_types.PROGRESSIVE)
    assert set(AUDIO_CONTAINERS) == set(output_types.AUDIO_ONLY)
    assert set(IMAGE_FORMATS) == set(output_types.STILL_IMAGES)
    assert set(ladder.LADDER_CONTAINERS) == set(output_types.ADAPTIVE)
    # The worker's ladder keeps its own limit; the server refuses (validation) and distrusts
    # (worker_reports) ladders by the catalogue's.
    assert ladder.MAX_VARIANTS == output_types.MAX_VARIANTS


@pytest.mark.parametrize("kind", output_types.ALL, ids=output_types.short_name)
def test_build_command_has_a_builder_for_every_catalogued_type(kind: job_pb2.OutputType) -> None:
    info = job_pb2.InputInfo(
        duration_seconds=10.0,
        streams=[
            job_pb2.StreamInfo(
                index=0, kind="video", codec="h264", width=1280, height=720, frame_rate=25
            ),
            job_pb2.StreamInfo(index=1, kind="audio", codec="aac", channels=2),
        ],
    )
    video = [job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264)]
    if kind == T.OUTPUT_TYPE_WEBM:
        video = [job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_VP9)]
    spec = job_pb2.OutputSpec(type=kind, video=video if kind in output_types.VIDEO else [])
    plan = build_command(input_path="/in.mp4", spec=spec, info=info, out_dir=Path("/out"))
    assert plan.argv


def test_build_command_refuses_an_uncatalogued_type() -> None:
    with pytest.raises(OutputSpecError, match="not built by build_command"):
        build_command(
            input_path="/in.mp4",
            spec=job_pb2.OutputSpec(type=T.OUTPUT_TYPE_UNSPECIFIED),
            info=job_pb2.InputInfo(duration_seconds=1.0),
            out_dir=Path("/out"),
        )


def test_custom_commands_make_single_file_media() -> None:
    names = {output_types.short_name(kind) for kind in output_types.SINGLE_FILE_MEDIA}
    assert set(MUXERS_BY_TYPE) == names


def test_validation_codec_tables_cover_the_families_that_carry_codecs() -> None:
    assert set(output_validation.VIDEO_CODECS_BY_TYPE) == set(output_types.VIDEO)
    assert set(output_validation.AUDIO_CODECS_BY_TYPE) == set(
        output_types.VIDEO + output_types.AUDIO_ONLY
    )


def test_every_audio_codec_validation_admits_is_one_the_worker_writes() -> None:
    # A codec admitted at Create but unknown to the worker's container table failed the job
    # on the worker (MP3 in MP4 and MKV, PCM in MOV once did).
    containers = {**PROGRESSIVE_CONTAINERS, **AUDIO_CONTAINERS}
    for kind, codecs in output_validation.AUDIO_CODECS_BY_TYPE.items():
        if kind in containers:
            assert codecs <= set(containers[kind].audio_codecs), T.Name(kind)


def test_recipes_make_families_in_catalogue_order() -> None:
    # A recipe's first type is its default, so the catalogue's order is what users get.
    assert recipes.system_spec("compress").type == T.OUTPUT_TYPE_MP4
    assert recipes.system_spec("extract_audio").type == T.OUTPUT_TYPE_M4A
    # The thumbnail recipe is one frame at seek_seconds: still images only, never a GIF clip.
    assert recipe_catalog.RECIPES["thumbnail"].types == output_types.STILL_IMAGES
