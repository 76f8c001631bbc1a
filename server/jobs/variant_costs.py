"""Per-variant costs of adaptive outputs, as stored (outputs.variant_pricing) and as shown.

The stored entries hold what pricing decided (priced height, fps, rate, micros, seconds);
codec, quality and resolution come from the output's spec when shown. The figures are
stored, not recomputed on read, so a pricing table changed between runs never makes a
shown breakdown disagree with the output's recorded cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kiln.v1 import job_pb2

from ..domain.pricing import VariantPrice

Entry = dict[str, Any]


def estimated_entries(
    prices: Sequence[VariantPrice], seconds: float, previous: Sequence[Entry] | None = None
) -> list[Entry]:
    """Entries carrying the estimate; `previous` actual figures are kept (a completed output
    of a retried job keeps what it was billed)."""
    kept = {entry["index"]: entry for entry in previous or ()}
    entries = []
    for price in prices:
        old = kept.get(price.index, {})
        entries.append(
            {
                **_priced(price),
                "estimated_micros": price.micros,
                "estimated_seconds": seconds,
                "actual_micros": old.get("actual_micros"),
                "billed_seconds": old.get("billed_seconds", 0.0),
            }
        )
    return entries


def billed_entries(
    previous: Sequence[Entry] | None, prices: Sequence[VariantPrice], seconds: float
) -> list[Entry]:
    """Entries carrying the actual cost of `seconds` encoded; estimates kept."""
    kept = {entry["index"]: entry for entry in previous or ()}
    return [
        {
            "estimated_micros": None,
            "estimated_seconds": 0.0,
            **kept.get(price.index, {}),
            **_priced(price),
            "actual_micros": price.micros,
            "billed_seconds": seconds,
        }
        for price in prices
    ]


def failed_entries(previous: Sequence[Entry] | None) -> list[Entry] | None:
    """A failed output bills nothing, variant by variant."""
    if previous is None:
        return None
    return [{**entry, "actual_micros": 0, "billed_seconds": 0.0} for entry in previous]


def unbilled_entries(previous: Sequence[Entry] | None) -> list[Entry] | None:
    """An output that runs again: its estimate stands, its actual figures are gone."""
    if previous is None:
        return None
    return [{**entry, "actual_micros": None, "billed_seconds": 0.0} for entry in previous]


def variant_messages(
    entries: Sequence[Entry] | None, spec: job_pb2.OutputSpec, currency: str
) -> list[job_pb2.VariantPricing]:
    messages = []
    for entry in entries or ():
        index = int(entry["index"])
        variant = spec.video[index] if index < len(spec.video) else job_pb2.VideoVariant()
        message = job_pb2.VariantPricing(
            index=index,
            name=entry["name"],
            resolution=variant.resolution,
            codec=variant.codec or job_pb2.VIDEO_CODEC_H264,
            quality=variant.quality or job_pb2.QUALITY_STANDARD,
            priced_height=entry["priced_height"],
            fps=entry["fps"],
            rate_per_minute=job_pb2.Money(
                micros=entry["rate_micros_per_minute"], currency=currency
            ),
            estimated_seconds=entry["estimated_seconds"],
            billed_seconds=entry["billed_seconds"],
            dropped=entry["dropped"],
        )
        if entry["estimated_micros"] is not None:
            message.estimated_cost.CopyFrom(
                job_pb2.Money(micros=entry["estimated_micros"], currency=currency)
            )
        if entry["actual_micros"] is not None:
            message.actual_cost.CopyFrom(
                job_pb2.Money(micros=entry["actual_micros"], currency=currency)
            )
        messages.append(message)
    return messages


def _priced(price: VariantPrice) -> Entry:
    return {
        "index": price.index,
        "name": price.name,
        "priced_height": price.priced_height,
        "fps": price.fps,
        "rate_micros_per_minute": price.rate_micros_per_minute,
        "dropped": price.dropped,
    }
