"""The pricing table (built-in file, KILN_PRICING_FILE laid over it, checked at start) and
per-variant costs that add up to their output's exactly."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from kiln.v1 import job_pb2
from typer.testing import CliRunner

from kiln_cli.main import app
from server.config import UnsafeConfiguration, load_settings
from server.domain import pricing
from server.domain.pricing_table import (
    PricingTableError,
    default_pricing_table,
    load_pricing_table,
)

T = job_pb2.OutputType
V = job_pb2.VideoCodec
Q = job_pb2.Quality


def ladder(
    *variants: job_pb2.VideoVariant, kind: job_pb2.OutputType = T.OUTPUT_TYPE_HLS
) -> job_pb2.OutputSpec:
    return job_pb2.OutputSpec(type=kind, video=list(variants))


def variant(
    resolution: str, codec: job_pb2.VideoCodec = V.VIDEO_CODEC_H264, **fields
) -> job_pb2.VideoVariant:
    return job_pb2.VideoVariant(codec=codec, resolution=resolution, **fields)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_built_in_table_is_the_documented_one():
    table = default_pricing_table()
    assert table.video_rate(V.VIDEO_CODEC_H264, 720) == 6_000
    assert table.video_rate(V.VIDEO_CODEC_AV1, 4320) == 72_000  # above the top tier
    assert table.video_rate(V.VIDEO_CODEC_UNSPECIFIED, 480) == 4_000  # H.264's
    assert table.quality_factor(Q.QUALITY_UNSPECIFIED) == Decimal("1.0")
    assert table.priority_factor(job_pb2.PRIORITY_ECONOMY) == Decimal("0.75")
    assert load_settings({}).pricing == table


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("p.toml", "[video]\nH264 = { 360 = 60000, 2160 = 600000 }\n[priority]\nECONOMY = 0.5\n"),
        (
            "p.json",
            '{"video": {"H264": {"360": 60000, "2160": 600000}}, "priority": {"ECONOMY": 0.5}}',
        ),
        ("p.yaml", "video:\n  H264: {360: 60000, 2160: 600000}\npriority:\n  ECONOMY: 0.5\n"),
    ],
)
def test_override_file_replaces_what_it_names(tmp_path, name, text):
    table = load_pricing_table(write(tmp_path, name, text))
    # A codec's tiers are replaced whole: no built-in 480 or 1080 tier is left in H.264.
    assert table.video[V.VIDEO_CODEC_H264] == ((360, 60_000), (2160, 600_000))
    assert table.video_rate(V.VIDEO_CODEC_H264, 480) == 600_000
    assert table.priority_factor(job_pb2.PRIORITY_ECONOMY) == Decimal("0.5")
    # Everything the file does not name keeps the built-in value.
    assert table.video[V.VIDEO_CODEC_VP9] == default_pricing_table().video[V.VIDEO_CODEC_VP9]
    assert table.priority_factor(job_pb2.PRIORITY_PREMIUM) == Decimal("2.0")
    assert table.image_micros_per_output == 500


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("p.toml", "[vidoe]\nH264 = { 480 = 1 }\n", "vidoe: unknown section (known: video,"),
        (
            "p.toml",
            "[video]\nH266 = { 480 = 1 }\n",
            "video.H266: unknown name (known: H264, H265, VP9, AV1)",
        ),
        (
            "p.toml",
            "[video]\nH264 = { 480 = -5 }\n",
            "video.H264.480: must be a whole number of micros, 0 or more; got -5",
        ),
        (
            "p.toml",
            "[video]\nH264 = { 480 = 0.004 }\n",
            "video.H264.480: must be a whole number of micros, 0 or more; got 0.004",
        ),
        (
            "p.toml",
            "[video]\nH264 = { tall = 4000 }\n",
            "video.H264.tall: a tier's key must be a height in pixels",
        ),
        ("p.toml", "[video]\nH264 = {}\n", "video.H264: must map heights to micros per minute"),
        ("p.toml", "video = 3\n", "video: must be a table, got 3"),
        ("p.toml", "[quality]\nPREMIUM = 0\n", "quality.PREMIUM: must be a number above 0; got 0"),
        (
            "p.toml",
            "[quality]\nPREMIUM = true\n",
            "quality.PREMIUM: must be a number above 0; got True",
        ),
        (
            "p.toml",
            "[quality]\nLUXURY = 3.0\n",
            "quality.LUXURY: unknown name (known: ECONOMY, STANDARD, PREMIUM)",
        ),
        (
            "p.toml",
            "[priority]\nSTANDARD = 'one'\n",
            "priority.STANDARD: must be a number above 0; got 'one'",
        ),
        (
            "p.toml",
            "[audio_only]\nmicros_per_second = 1\n",
            "audio_only.micros_per_second: unknown key (known: micros_per_minute)",
        ),
        (
            "p.toml",
            "[image]\nmicros_per_output = 1.5\n",
            "image.micros_per_output: must be a whole number of micros",
        ),
        (
            "p.json",
            '{"priority": {"ECONOMY": NaN}}',
            "priority.ECONOMY: must be a number above 0; got nan",
        ),
        ("p.json", "[1, 2]", "the top level must be a table of sections"),
        ("p.toml", "[video\n", "is not valid TOML"),
        ("p.json", "{'video': 1}", "is not valid JSON"),
        ("p.yaml", "video: [\n", "is not valid YAML"),
        ("p.ini", "[video]\n", "unknown format .ini; use .toml, .json, .yaml or .yml"),
    ],
)
def test_bad_table_is_refused_naming_the_entry(tmp_path, name, text, message):
    path = write(tmp_path, name, text)
    with pytest.raises(PricingTableError) as refused:
        load_pricing_table(path)
    assert message in str(refused.value)
    assert str(path) in str(refused.value)


def test_bad_table_refuses_the_start(tmp_path):
    path = write(tmp_path, "p.json", json.dumps({"video": {"H264": {"480": -1}}}))
    with pytest.raises(UnsafeConfiguration) as refused:
        load_settings({"KILN_PRICING_FILE": str(path)})
    assert str(refused.value) == (
        f"KILN_PRICING_FILE: {path}: video.H264.480: must be a whole number of micros, "
        "0 or more; got -1"
    )
    with pytest.raises(UnsafeConfiguration, match=r"cannot read .*missing\.toml"):
        load_settings({"KILN_PRICING_FILE": str(tmp_path / "missing.toml")})


def price(spec, seconds=60.0, source_height=1080, source_fps=30.0, priority=0, table=None):
    arguments = {
        "seconds": seconds,
        "source_height": source_height,
        "source_fps": source_fps,
        "priority": priority,
        "table": table,
    }
    return pricing.variant_prices(spec, **arguments), pricing.output_cost(spec, **arguments)


@pytest.mark.parametrize("seconds", [0.0, 1.0, 2.002, 7.3, 59.94, 3600.0])
@pytest.mark.parametrize("priority", [0, 1, 2, 3])
def test_variant_costs_sum_to_the_output(seconds, priority):
    spec = ladder(
        variant("1080p", quality=Q.QUALITY_PREMIUM),
        variant("720p", V.VIDEO_CODEC_H265, fps=29.97),
        variant("480p", V.VIDEO_CODEC_VP9, quality=Q.QUALITY_ECONOMY),
        variant("426x240", V.VIDEO_CODEC_AV1, fps=24),
    )
    variants, total = price(spec, seconds=seconds, priority=priority, source_fps=25.0)
    assert [v.name for v in variants] == ["v0", "v1", "v2", "v3"]
    assert sum(v.micros for v in variants) == total
    assert all(isinstance(v.micros, int) for v in variants)


def test_variant_cost_by_hand():
    # 1 minute of 1080p H.264 premium at 30 fps, premium priority: 9000 x 1.5 x 2.0.
    # 720p H.265 at 29.97 fps, standard: 12000 x 0.999 = 11988.
    variants, total = price(
        ladder(
            variant("1080p", quality=Q.QUALITY_PREMIUM),
            variant("720p", V.VIDEO_CODEC_H265, fps=29.97),
        ),
        priority=job_pb2.PRIORITY_PREMIUM,
    )
    assert [v.micros for v in variants] == [27_000, 23_976]
    assert total == 50_976
    assert [v.rate_micros_per_minute for v in variants] == [9_000, 12_000]


def test_each_variant_rounds_once_half_to_even(tmp_path):
    table = load_pricing_table(write(tmp_path, "p.toml", "[video]\nH264 = { 2160 = 3 }\n"))
    # 3 micros per minute for 30 s is 1.5 micros: rounds to 2; for 10 s, 0.5 rounds to 0.
    variants, total = price(ladder(variant("720p"), variant("480p")), seconds=30.0, table=table)
    assert [v.micros for v in variants] == [2, 2]
    assert total == 4
    variants, total = price(ladder(variant("720p")), seconds=10.0, table=table)
    assert [v.micros for v in variants] == [0]


def test_variants_above_the_source_are_priced_as_encoded():
    # 360p source: 1080p is capped to 360p (priced at 360p's tier), 720p would duplicate it
    # and is dropped (free), 240p is encoded as asked; names follow the encoded renditions.
    variants, total = price(
        ladder(variant("1080p"), variant("720p"), variant("240p")), source_height=360
    )
    assert [(v.name, v.priced_height, v.dropped) for v in variants] == [
        ("v0", 360, False),
        ("", 360, True),
        ("v1", 240, False),
    ]
    assert [v.micros for v in variants] == [4_000, 0, 4_000]
    assert total == 8_000
    # A variant already at the source's size: every one above it is dropped.
    variants, _ = price(ladder(variant("720p"), variant("360p")), source_height=360)
    assert [(v.name, v.dropped) for v in variants] == [("", True), ("v0", False)]
    # allow_upscale is priced at the height asked for.
    variants, _ = price(ladder(variant("1080p", allow_upscale=True)), source_height=360)
    assert variants[0].priced_height == 1080
    assert variants[0].micros == 9_000


def test_rotated_source_caps_at_its_displayed_height():
    portrait = job_pb2.StreamInfo(kind="video", width=1920, height=1080, rotation=90)
    assert pricing.source_display_height(portrait) == 1920
    assert pricing.source_display_height(None) == 0


def test_only_adaptive_outputs_show_variants():
    assert pricing.shows_variants(ladder(variant("720p")))
    assert pricing.shows_variants(ladder(variant("720p"), kind=T.OUTPUT_TYPE_CMAF))
    assert not pricing.shows_variants(ladder(variant("720p"), kind=T.OUTPUT_TYPE_MP4))
    assert not pricing.shows_variants(job_pb2.OutputSpec(type=T.OUTPUT_TYPE_M4A))


def test_audio_and_image_outputs_use_their_rates():
    _, audio = price(
        job_pb2.OutputSpec(type=T.OUTPUT_TYPE_MP3), seconds=90.0, priority=job_pb2.PRIORITY_ECONOMY
    )
    assert audio == 1_125  # 1000 x 1.5 min x 0.75
    _, image = price(job_pb2.OutputSpec(type=T.OUTPUT_TYPE_JPG), priority=job_pb2.PRIORITY_PREMIUM)
    assert image == 1_000


def test_serve_refuses_a_bad_table_naming_the_entry(tmp_path, monkeypatch):
    """`kiln serve` (in process: it stops before anything starts) exits 2 with why."""
    bad = write(tmp_path, "pricing.yaml", "video:\n  H264: {480: 4000, 720: lots}\n")
    monkeypatch.setenv("KILN_PRICING_FILE", str(bad))
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 2
    assert " ".join(result.stderr.split()) == (
        f"kiln: refusing to start: KILN_PRICING_FILE: {bad}: video.H264.720: must be a whole "
        "number of micros, 0 or more; got 'lots'"
    )
