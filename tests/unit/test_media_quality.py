"""Measured quality without running anything: the log parser, the filter graph, the server's
check of reported figures, and Create's refusal of outputs that cannot be measured."""

from __future__ import annotations

import math

import pytest
from kiln.v1 import job_pb2, job_service_pb2
from kiln.worker.v1 import worker_service_pb2 as wpb

from common.input_policy import InputPolicy
from server.domain import worker_reports as reports
from server.domain.errors import InvalidArgument
from server.domain.validation import validate_create
from worker.media.quality import (
    MAX_PSNR_DB,
    MeasuredVariant,
    measured_variants,
    parse_quality_log,
    quality_filter_graph,
)

# Summary lines as FFmpeg 5.1 writes them at info level (from a real run's FFREPORT log).
REAL_LOG = """\
frame=   60 fps=0.0 q=-0.0 Lsize=N/A time=00:00:02.00 bitrate=N/A speed=18.3x
[psnr@v1 @ 0x55b908f5ce00] PSNR y:35.947550 u:34.259655 v:33.131477 average:35.044077 \
min:34.070135 max:36.588396
[ssim@v1 @ 0x55b908f5c280] SSIM Y:0.970510 (15.303232) U:0.968671 (15.040587) \
V:0.980842 (17.176597) All:0.971926 (15.516886)
[psnr@v0 @ 0x55b908f4f9c0] PSNR y:40.288371 u:38.023214 v:38.024917 average:39.395983 \
min:38.359657 max:41.260161
[ssim@v0 @ 0x55b908f52b40] SSIM Y:0.985161 (18.285883) U:0.982941 (17.680574) \
V:0.990321 (20.141743) All:0.985651 (18.431762)
"""


def test_parser_reads_all_plane_ssim_and_average_psnr_per_variant():
    assert parse_quality_log(REAL_LOG) == {0: (0.985651, 39.395983), 1: (0.971926, 35.044077)}


def test_identical_pictures_report_the_psnr_ceiling():
    log = (
        "[psnr@v0 @ 0x1] PSNR y:inf u:inf v:inf average:inf min:inf max:inf\n"
        "[ssim@v0 @ 0x2] SSIM Y:1.000000 (inf) U:1.000000 (inf) V:1.000000 (inf) "
        "All:1.000000 (inf)\n"
    )
    assert parse_quality_log(log) == {0: (1.0, MAX_PSNR_DB)}


def test_a_variant_missing_a_line_or_unreadable_is_left_out():
    only_ssim = "[ssim@v0 @ 0x2] SSIM Y:0.9 (10) U:0.9 (10) V:0.9 (10) All:0.9 (10)\n"
    assert parse_quality_log(only_ssim) == {}
    garbled = only_ssim + "[psnr@v0 @ 0x1] PSNR y:x u:x v:x average:nan min:x max:x\n"
    assert parse_quality_log(garbled) == {}
    # Other filters' lines (an unnamed psnr of someone else's graph) are not ours.
    assert parse_quality_log("[Parsed_psnr_0 @ 0x3] PSNR y:1 average:30 min:1 max:1\n") == {}


def test_graph_splits_the_source_once_and_pairs_frames_on_the_variant_grid():
    variants = [
        MeasuredVariant(0, 0, 640, 360, 0.0, 30.0),
        MeasuredVariant(2, 1, 320, 180, 15.0, 15.0),
    ]
    graph = quality_filter_graph(3, variants)
    assert graph.startswith("[0:3]setpts=PTS-STARTPTS,split=2[src0][src1];")
    # The reference takes the encode's steps: its fps filter, then scale to the variant's size.
    assert "[src1]fps=15,scale=320:180,format=yuv420p,fps=15.000000,split[ref1a][ref1b]" in graph
    assert "[2:v:0]setpts=PTS-STARTPTS,fps=15.000000,format=yuv420p[enc1]" in graph
    assert "[enc0][ref0a]ssim@v0=shortest=1[ssim0];[ssim0][ref0b]psnr@v0=shortest=1[q0]" in graph


SOURCE = job_pb2.InputInfo(
    duration_seconds=2.0,
    streams=[job_pb2.StreamInfo(index=0, kind="video", width=320, height=180, frame_rate=30)],
)


def test_measured_variants_follow_the_ladder_builder_dropping_variants_above_the_source():
    spec = job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_HLS,
        video=[
            job_pb2.VideoVariant(resolution="1080p"),  # above the source: dropped
            job_pb2.VideoVariant(resolution="180p"),
            job_pb2.VideoVariant(resolution="90p"),
        ],
    )
    found = [(v.spec_index, v.position, v.width, v.height) for v in measured_variants(spec, SOURCE)]
    assert found == [(1, 0, 320, 180), (2, 1, 160, 90)]


def test_outputs_without_video_variants_are_not_measured():
    with pytest.raises(Exception, match="not OUTPUT_TYPE_MP3"):
        measured_variants(job_pb2.OutputSpec(type=job_pb2.OUTPUT_TYPE_MP3), SOURCE)


# --- the server's check of what a worker reports ---------------------------------------------

LADDER = job_pb2.OutputSpec(
    type=job_pb2.OUTPUT_TYPE_HLS,
    video=[job_pb2.VideoVariant(resolution="180p"), job_pb2.VideoVariant(resolution="90p")],
    measure_quality=True,
)


def measured(*figures: tuple[int, float, float], quality_file: bool = True) -> wpb.TranscodeResult:
    files = [job_pb2.OutputFile(path="master.m3u8", size_bytes=10)]
    if quality_file:
        files.append(job_pb2.OutputFile(path="quality.json", size_bytes=10))
    return wpb.TranscodeResult(
        files=files,
        encoded_seconds=2.0,
        quality=[
            job_pb2.VariantQuality(variant_index=i, width=320, height=180, ssim=s, psnr_db=p)
            for i, s, p in figures
        ],
    )


def test_plausible_figures_are_accepted():
    report = measured((0, 0.98, 41.0), (1, 1.0, 100.0))
    assert reports.transcode_problems(report, LADDER, expected_seconds=2.0) == []


@pytest.mark.parametrize(
    ("figures", "problem"),
    [
        ([(0, math.nan, 40.0)], "SSIM nan is not a number from 0 to 1"),
        ([(0, 1.2, 40.0)], "SSIM 1.2 is not a number from 0 to 1"),
        ([(0, -0.1, 40.0)], "SSIM -0.1 is not a number from 0 to 1"),
        ([(0, 0.9, math.inf)], "PSNR inf dB is not a number from 0 to 100"),
        ([(0, 0.9, math.nan)], "PSNR nan dB is not a number from 0 to 100"),
        ([(0, 0.9, 250.0)], "PSNR 250.0 dB is not a number from 0 to 100"),
        ([(5, 0.9, 40.0)], "quality of variant 5: the spec has no such variant"),
        ([(0, 0.9, 40.0), (0, 0.9, 40.0)], "quality of variant 0 is reported twice"),
        ([], "the output asked for quality measurement and no figures were reported"),
    ],
)
def test_impossible_figures_are_refused(figures, problem):
    problems = reports.transcode_problems(measured(*figures), LADDER, expected_seconds=2.0)
    assert any(problem in p for p in problems), problems


def test_figures_need_their_file_and_an_output_that_asked():
    without_file = measured((0, 0.9, 40.0), quality_file=False)
    assert reports.transcode_problems(without_file, LADDER, expected_seconds=2.0) == [
        "quality.json is not among the reported files"
    ]
    not_asked = job_pb2.OutputSpec()
    not_asked.CopyFrom(LADDER)
    not_asked.measure_quality = False
    assert reports.transcode_problems(measured((0, 0.9, 40.0)), not_asked, expected_seconds=2) == [
        "quality figures were reported for an output that did not ask for them"
    ]


# --- Create ----------------------------------------------------------------------------------


def violations(request: job_service_pb2.CreateRequest) -> dict[str, str]:
    with pytest.raises(InvalidArgument) as raised:
        validate_create(request, InputPolicy.from_lists([], ["example.com"]), set())
    return {v.field: v.description for v in raised.value.violations}


def test_create_refuses_measurement_where_there_is_no_variant_to_measure():
    request = job_service_pb2.CreateRequest(
        input_url="https://example.com/in.mp4",
        outputs=[
            job_pb2.OutputSpec(type=job_pb2.OUTPUT_TYPE_MP3, measure_quality=True),
            job_pb2.OutputSpec(
                type=job_pb2.OUTPUT_TYPE_MP4,
                custom=job_pb2.CustomCommand(args=["-i", "{{input}}", "{{output}}"]),
                measure_quality=True,
            ),
        ],
    )
    found = violations(request)
    assert "not MP3 outputs" in found["outputs[0].measure_quality"]
    assert "not custom commands" in found["outputs[1].measure_quality"]


def test_create_refuses_measurement_of_concatenated_inputs():
    request = job_service_pb2.CreateRequest(
        input_url="https://example.com/a.mp4",
        concat_input_urls=["https://example.com/b.mp4"],
        outputs=[
            job_pb2.OutputSpec(
                type=job_pb2.OUTPUT_TYPE_MP4,
                video=[job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264, resolution="240p")],
                measure_quality=True,
            )
        ],
    )
    assert violations(request) == {
        "outputs[0].measure_quality": "quality is measured against one input, not concatenated "
        "inputs"
    }
