"""The pricing table: configuration, not code.

The built-in table ships next to this module (pricing_table.toml); KILN_PRICING_FILE names
a TOML, JSON or YAML file of the same shape whose keys replace the built-in ones. The merged
table is checked once, at start: a bad entry stops the server with a message naming it, so a
typo never turns into silently wrong prices.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from kiln.v1 import job_pb2

DEFAULT_TABLE_PATH = Path(__file__).with_name("pricing_table.toml")

SECTIONS = ("video", "audio_only", "image", "quality", "priority")
AUDIO_ONLY_KEYS = ("micros_per_minute",)
IMAGE_KEYS = ("micros_per_output",)


class PricingTableError(ValueError):
    """A pricing table that cannot be used; the message names the bad entry."""


@dataclass(frozen=True)
class PricingTable:
    # Codec → ((max height, micros per minute), ...), heights ascending.
    video: Mapping[int, tuple[tuple[int, int], ...]]
    audio_only_micros_per_minute: int
    image_micros_per_output: int
    quality: Mapping[int, Decimal]
    priority: Mapping[int, Decimal]

    def video_rate(self, codec: int, height: int) -> int:
        """Micros per minute for one variant of this codec and height (H.264's when unset)."""
        tiers = self.video.get(codec) or self.video[job_pb2.VIDEO_CODEC_H264]
        for max_height, rate in tiers:
            if height <= max_height:
                return rate
        return tiers[-1][1]

    def quality_factor(self, quality: int) -> Decimal:
        return self.quality.get(quality) or self.quality[job_pb2.QUALITY_STANDARD]

    def priority_factor(self, priority: int) -> Decimal:
        return self.priority.get(priority) or self.priority[job_pb2.PRIORITY_STANDARD]


def read_table_file(path: Path) -> dict[str, Any]:
    """The raw mapping in a .toml, .json, .yaml or .yml file."""
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise PricingTableError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        if suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        elif suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        else:
            raise PricingTableError(
                f"{path}: unknown format {suffix or '(no extension)'}; "
                "use .toml, .json, .yaml or .yml"
            )
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, yaml.YAMLError) as error:
        detail = " ".join(str(error).split())
        raise PricingTableError(f"{path} is not valid {suffix[1:].upper()}: {detail}") from None
    if not isinstance(data, dict):
        raise PricingTableError(f"{path}: the top level must be a table of sections")
    return data


def merged(default: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Each key of each section the override gives replaces the default's (a codec's tiers
    as a whole: merging tiers would leave prices nobody wrote down)."""
    result = {name: dict(section) for name, section in default.items()}
    for name, section in override.items():
        if name in result and isinstance(section, dict):
            result[name].update(section)
        else:
            result[name] = section
    return result


def parse_table(data: Mapping[str, Any]) -> PricingTable:
    """A checked table; PricingTableError names the first bad entry."""
    for name in data:
        if name not in SECTIONS:
            raise PricingTableError(f"{name!s}: unknown section (known: {', '.join(SECTIONS)})")
    sections = {name: _section(data, name) for name in SECTIONS}
    video = {
        _enum_value(job_pb2.VideoCodec, "VIDEO_CODEC_", f"video.{codec}", codec): _tiers(
            f"video.{codec}", tiers
        )
        for codec, tiers in sections["video"].items()
    }
    if job_pb2.VIDEO_CODEC_H264 not in video:
        raise PricingTableError("video.H264: missing (the rate of variants with no codec)")
    audio_only = _only_keys("audio_only", sections["audio_only"], AUDIO_ONLY_KEYS)
    image = _only_keys("image", sections["image"], IMAGE_KEYS)
    return PricingTable(
        video=video,
        audio_only_micros_per_minute=_micros(
            "audio_only.micros_per_minute", audio_only["micros_per_minute"]
        ),
        image_micros_per_output=_micros("image.micros_per_output", image["micros_per_output"]),
        quality=_factors("quality", job_pb2.Quality, "QUALITY_", sections["quality"]),
        priority=_factors("priority", job_pb2.Priority, "PRIORITY_", sections["priority"]),
    )


def load_pricing_table(override_path: str | Path | None = None) -> PricingTable:
    """The built-in table, with the file at `override_path` (if any) laid over it."""
    default = read_table_file(DEFAULT_TABLE_PATH)
    if not override_path:
        return parse_table(default)
    path = Path(override_path)
    override = read_table_file(path)
    try:
        return parse_table(merged(default, override))
    except PricingTableError as error:
        raise PricingTableError(f"{path}: {error}") from None


@cache
def default_pricing_table() -> PricingTable:
    return load_pricing_table(None)


def _section(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    section = data.get(name)
    if not isinstance(section, dict):
        raise PricingTableError(f"{name}: must be a table, got {_shown(section)}")
    return section


def _only_keys(name: str, section: Mapping[str, Any], known: tuple[str, ...]) -> Mapping:
    for key in section:
        if key not in known:
            raise PricingTableError(f"{name}.{key}: unknown key (known: {', '.join(known)})")
    for key in known:
        if key not in section:
            raise PricingTableError(f"{name}.{key}: missing")
    return section


def _enum_value(enum: Any, prefix: str, where: str, name: object) -> int:
    names = [value.name for value in enum.DESCRIPTOR.values]
    known = [n.removeprefix(prefix) for n in names if not n.endswith("UNSPECIFIED")]
    key = str(name).upper()
    if key not in known:
        raise PricingTableError(f"{where}: unknown name (known: {', '.join(known)})")
    return int(enum.Value(prefix + key))


def _tiers(where: str, tiers: object) -> tuple[tuple[int, int], ...]:
    if not isinstance(tiers, dict) or not tiers:
        raise PricingTableError(
            f"{where}: must map heights to micros per minute, e.g. {{480 = 4000}}; "
            f"got {_shown(tiers)}"
        )
    parsed = []
    for height, rate in tiers.items():
        text = str(height)
        if not text.isdigit() or int(text) <= 0:
            raise PricingTableError(f"{where}.{text}: a tier's key must be a height in pixels")
        parsed.append((int(text), _micros(f"{where}.{text}", rate)))
    return tuple(sorted(parsed))


def _micros(where: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PricingTableError(
            f"{where}: must be a whole number of micros, 0 or more; got {_shown(value)}"
        )
    return value


def _factors(where: str, enum: Any, prefix: str, section: Mapping[str, Any]) -> dict[int, Decimal]:
    factors = {}
    for name, value in section.items():
        entry = f"{where}.{name}"
        number = _enum_value(enum, prefix, entry, name)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise PricingTableError(f"{entry}: must be a number above 0; got {_shown(value)}")
        # Through str: 0.8 is the decimal 0.8 the file says, not its binary neighbour.
        factors[number] = Decimal(str(value))
    standard = enum.Value(prefix + "STANDARD")
    if standard not in factors:
        raise PricingTableError(f"{where}.STANDARD: missing (the factor when none is set)")
    return factors


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
