"""How many channels an output's audio gets, and the down-mix matrix when the source has more.

Owns channel_plan. FFmpeg's own down-mix (what `-ac 2` does to 5.1) builds its matrix and then
scales every coefficient so no output can exceed full scale: a dialogue-only centre ends up
about 7.7 dB quieter in stereo than in the source. An explicit `pan` states the matrix instead
(ITU-R BS.775 with the LFE kept), without that scaling:

    L = FL + 0.707 FC + 0.707 SL + 0.707 BL + 0.5 LFE      (R likewise with the right side)

- centre at -3 dB into each side, so a centred voice keeps its level (the two sides sum to it);
- each surround at -3 dB into its own side;
- LFE at -6 dB into both sides rather than dropped (BS.775 drops it): effects mixed only to the
  LFE would otherwise vanish, and 6 dB down keeps its energy, which stereo speakers hardly
  reproduce, from eating the headroom.

Unscaled, a loud full-range mix can sum past full scale; the filters run in floating point, and
loudness normalization (when asked) brings the peaks under its true-peak target. Mono is the
average of that stereo pair; 7.1 to 5.1 folds each side surround into its back surround at -3 dB.
Channels are taken by position in FFmpeg's (WAVE) order, FL FR FC LFE then the surrounds, which
is also how 5.1(side) sources are laid out, so the matrix does not depend on ffprobe's layout name.
"""

from __future__ import annotations

from dataclasses import dataclass

from kiln.v1 import job_pb2

from worker.media.encoders import MAX_AUDIO_CHANNELS
from worker.media.errors import OutputSpecError

SURROUND_CHANNELS = 6
CHANNEL_COUNTS = (1, 2, SURROUND_CHANNELS)
CENTRE_GAIN = 0.7071
SURROUND_GAIN = 0.7071
LFE_GAIN = 0.5
_LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1"}
# Surround inputs by channel count: the positions of the surrounds after FL FR FC LFE.
_SOURCE_SURROUNDS = {6: ((4,), (5,)), 8: ((4, 6), (5, 7))}


@dataclass(frozen=True)
class ChannelPlan:
    channels: int
    # A `pan` filter that down-mixes the source, or "" when FFmpeg's -ac is enough.
    downmix: str = ""


def channel_plan(
    audio: job_pb2.AudioSpec, source: job_pb2.StreamInfo, notes: list[str]
) -> ChannelPlan:
    """The channel count to encode and the down-mix that makes it from `source`."""
    if audio.channels and audio.channels not in CHANNEL_COUNTS:
        raise OutputSpecError(f"audio channels must be 1, 2 or 6, not {audio.channels}")
    source_channels = source.channels
    channels = audio.channels or min(source_channels or MAX_AUDIO_CHANNELS, MAX_AUDIO_CHANNELS)
    if channels == SURROUND_CHANNELS and source_channels < SURROUND_CHANNELS:
        # Surround made up from fewer channels is not surround; keep what the source has.
        channels = min(source_channels or MAX_AUDIO_CHANNELS, MAX_AUDIO_CHANNELS)
        notes.append(
            f"audio: the source has {source_channels or 'an unknown number of'} channels, "
            f"not up-mixed to 5.1: encoded with {channels}"
        )
    if source_channels in _SOURCE_SURROUNDS and channels < source_channels:
        return ChannelPlan(channels, _pan(source_channels, channels))
    return ChannelPlan(channels)


def _pan(source_channels: int, channels: int) -> str:
    left_surrounds, right_surrounds = _SOURCE_SURROUNDS[source_channels]
    if channels == SURROUND_CHANNELS:
        # 7.1 to 5.1: the front four as they are, each side surround folded into its back one.
        back_left = "+".join(f"{SURROUND_GAIN}*c{i}" for i in left_surrounds)
        back_right = "+".join(f"{SURROUND_GAIN}*c{i}" for i in right_surrounds)
        return f"pan=5.1|c0=c0|c1=c1|c2=c2|c3=c3|c4={back_left}|c5={back_right}"
    left = _side(0, left_surrounds)
    right = _side(1, right_surrounds)
    if channels == 2:
        return f"pan=stereo|c0={left}|c1={right}"
    # Mono: the average of the stereo pair (centre and LFE are in both sides, so they add up).
    gains: dict[int, float] = {}
    for gain, position in [*_terms(0, left_surrounds), *_terms(1, right_surrounds)]:
        gains[position] = gains.get(position, 0.0) + gain / 2
    return "pan=mono|c0=" + "+".join(f"{gain:.4g}*c{i}" for i, gain in sorted(gains.items()))


def _terms(front: int, surrounds: tuple[int, ...]) -> list[tuple[float, int]]:
    """(gain, input position) of one side of the stereo mix."""
    terms = [(1.0, front), (CENTRE_GAIN, 2), (LFE_GAIN, 3)]
    return terms + [(SURROUND_GAIN, i) for i in surrounds]


def _side(front: int, surrounds: tuple[int, ...]) -> str:
    return "+".join(f"{gain:g}*c{i}" for gain, i in _terms(front, surrounds))


def layout_name(channels: int) -> str:
    return _LAYOUTS.get(channels, f"{channels}c")
