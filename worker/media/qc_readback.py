"""The quality-control read-back: one FFmpeg run decoding a written output, and its log parsed.

Every detector runs in one filter graph of one process, so an output is decoded once:
blackdetect and freezedetect on a video stream, silencedetect and ebur128 (peak=true) on an
audio stream. Each chain ends in a select of its first frame into showinfo/ashowinfo, which
logs that frame's time (where the stream starts) and the stream's rate; FFmpeg's own final
statistics, at verbose level, give how many frames (audio: samples) each input stream decoded,
which with the rate says where the stream ends. A select, not a trim: a trimmed output would
end the run after its first frame. Decoders' errors are counted from the log too: the run keeps
the level of every line (`-loglevel level+error`), so "[error]" marks them.

Everything the detectors say is logged at info or verbose level, above the error level stderr is
kept at, so it is read from an FFREPORT log at level 40 (verbose). That includes ebur128's line
per 100 ms of audio (it logs at verbose whatever it is told): about 10 MB of log for two hours,
read once and deleted with the task's scratch folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction

from worker.media.plan import COMMON_FLAGS
from worker.media.timing import seconds_arg

# Detection floors. blackdetect: a pixel is black at 10 % luma and a picture at 98 % black
# pixels (FFmpeg's defaults, pix_th 0.10 and pic_th 0.98). freezedetect: -60 dB of noise between
# frames (its default). silencedetect: below -50 dB (FFmpeg's default of -60 dB misses the
# hiss of a lossy encode of silence). Segments from 0.5 s are logged, so a report can say how
# long the longest one was even when it passes.
SHORTEST_SEGMENT = 0.5
BLACK = f"blackdetect=d={SHORTEST_SEGMENT}:pix_th=0.10"
FROZEN = f"freezedetect=n=-60dB:d={SHORTEST_SEGMENT}"
SILENCE = f"silencedetect=n=-50dB:d={SHORTEST_SEGMENT}"
LOUDNESS = "ebur128=peak=true"
# Decoders skip their deblocking (loop) filter: a fifth of an H.264 decode's CPU time here, and
# nothing a check reads depends on it (a black or held picture stays black or held, frames and
# decode errors are counted all the same). A generic decoder option: others ignore it.
FAST_DECODE = ("-skip_loop_filter", "all")


@dataclass(frozen=True)
class Reading:
    """One input of the read-back and what is measured in it."""

    path: str
    # Its first video stream decoded with the detectors (True), or only demuxed (False: its
    # packets counted, not decoded); None: no video is read from it. At most one reading of
    # a run has the detectors.
    video_detectors: bool | None
    # Whether its first audio stream is read (with every audio detector): at most one reading.
    audio: bool
    # Options before -i (a source's clip window).
    before_input: tuple[str, ...] = ()
    # Which stream of the input: its first of each kind, or a source's default by index.
    video_stream: str = "v:0"
    audio_stream: str = "a:0"
    # Frames per second of a demuxed video stream, whose length is its packets at this rate.
    frame_rate: float = 0.0


def readback_command(readings: list[Reading], ffmpeg: str = "ffmpeg") -> list[str]:
    """One ffmpeg run: every reading in, every chain (and every demuxed stream, copied) into
    the null muxer."""
    flags = [("level+error" if flag == "error" else flag) for flag in COMMON_FLAGS]
    argv = [ffmpeg, *flags]
    for reading in readings:
        argv += [*reading.before_input, *FAST_DECODE, "-i", reading.path]
    chains, labels = readback_graph(readings)
    argv += ["-filter_complex", chains]
    for label in labels:
        argv += ["-map", f"[{label}]"]
    copied = [i for i, r in enumerate(readings) if r.video_detectors is False]
    for position, i in enumerate(copied, start=len(labels)):
        argv += ["-map", f"{i}:{readings[i].video_stream}", f"-c:{position}", "copy"]
    return [*argv, "-f", "null", "-"]


def readback_graph(readings: list[Reading]) -> tuple[str, list[str]]:
    """The filter graph and its output labels. showinfo and ebur128 instances are named by
    input (v<i>, a<i>), which is how their log lines say which input they are about."""
    chains = []
    labels = []
    for i, reading in enumerate(readings):
        if reading.video_detectors:
            steps = [BLACK, FROZEN, "select=eq(n\\,0)", f"showinfo@v{i}"]
            chains.append(f"[{i}:{reading.video_stream}]{','.join(steps)}[v{i}]")
            labels.append(f"v{i}")
        if reading.audio:
            loudness = LOUDNESS.replace("=", f"@a{i}=", 1)
            steps = [SILENCE, loudness, "aselect=eq(n\\,0)", f"ashowinfo@a{i}"]
            chains.append(f"[{i}:{reading.audio_stream}]{','.join(steps)}[a{i}]")
            labels.append(f"a{i}")
    return ";".join(chains), labels


def clip_options(start: float, duration: float | None) -> tuple[str, ...]:
    """Input options reading only a clip window of the source."""
    options: list[str] = []
    if start > 0:
        options += ["-ss", seconds_arg(start)]
    if duration is not None:
        options += ["-t", seconds_arg(duration)]
    return tuple(options)


@dataclass
class StreamTiming:
    """Where one decoded stream starts and ends, in seconds of the run's timeline."""

    start: float
    end: float


@dataclass
class InputTiming:
    video: StreamTiming | None = None
    audio: StreamTiming | None = None


Segments = list[tuple[float, float | None]]


@dataclass
class Findings:
    """What a read-back found. The detectors log under their class name, not the instance's,
    so a run has at most one video and one audio reading with detectors (Reading), whose
    segments these are."""

    timings: dict[int, InputTiming] = field(default_factory=dict)
    # (start, end) segments; an end of None ran to the end of the stream.
    black: Segments = field(default_factory=list)
    frozen: Segments = field(default_factory=list)
    silence: Segments = field(default_factory=list)
    integrated_lufs: float | None = None
    true_peak_dbtp: float | None = None
    decode_errors: int = 0
    first_error: str = ""


_PREFIX = r"\[(?P<filter>\w+)@(?P<kind>[va])(?P<input>\d+) @ [^\]]*\] (?:\[\w+\] )?"
_FIRST_FRAME = re.compile(_PREFIX + r"n:\s*0 pts:\s*-?\d+ pts_time:(?P<time>[-\d.e]+)")
_VIDEO_RATE = re.compile(_PREFIX + r"config in time_base: \S+ frame_rate: (?P<rate>\d+/\d+)")
_AUDIO_RATE = re.compile(_PREFIX + r"n:\s*0 .*? rate:(?P<rate>\d+)")
_DETECTOR = r"\[(?:blackdetect|freezedetect|silencedetect) @ [^\]]*\] (?:\[\w+\] )?"
_BLACK = re.compile(_DETECTOR + r"black_start:(?P<start>[-\d.e]+) black_end:(?P<end>[-\d.e]+)")
_FREEZE = re.compile(
    _DETECTOR + r"lavfi\.freezedetect\.freeze_(?P<what>start|end): (?P<t>[-\d.e]+)"
)
_SILENCE = re.compile(_DETECTOR + r"silence_(?P<what>start|end): (?P<t>[-\d.e]+)")
_DEMUXED = re.compile(r"Input stream #(?P<input>\d+):\d+ \(video\): (?P<packets>\d+) packets read")
_DECODED = re.compile(
    r"Input stream #(?P<input>\d+):\d+ \((?P<kind>video|audio)\): .*?(?P<frames>\d+) frames "
    r"decoded(?: \((?P<samples>\d+) samples\))?"
)
_SUMMARY = re.compile(_PREFIX + r"Summary:")
_INTEGRATED = re.compile(r"^\s+I:\s+(?P<value>[-\w.]+) LUFS", re.MULTILINE)
_PEAK = re.compile(r"^\s+Peak:\s+(?P<value>[-\w.]+) dBFS", re.MULTILINE)
_ERROR = re.compile(r"\[error\] (?P<message>.*)")


def parse_readback_log(text: str, readings: list[Reading], fallback_frame_rate: float) -> Findings:
    """The findings of the run of `readings`; `fallback_frame_rate` is used where showinfo had
    no rate. A demuxed stream starts where the decoded video does (the rungs of one encode)."""
    findings = Findings()
    starts: dict[tuple[str, int], float] = {}
    rates: dict[tuple[str, int], float] = {}
    for match in _VIDEO_RATE.finditer(text):
        if match.group("filter") == "showinfo":
            rates["video", int(match.group("input"))] = float(Fraction(match.group("rate")))
    for match in _FIRST_FRAME.finditer(text):
        kind = "video" if match.group("kind") == "v" else "audio"
        starts[kind, int(match.group("input"))] = float(match.group("time"))
    for match in _AUDIO_RATE.finditer(text):
        rates["audio", int(match.group("input"))] = float(match.group("rate"))
    for match in _DECODED.finditer(text):
        kind, number = match.group("kind"), int(match.group("input"))
        if (kind, number) not in starts:
            continue
        start = starts[kind, number]
        timing = findings.timings.setdefault(number, InputTiming())
        if kind == "video":
            frame_rate = rates.get((kind, number)) or fallback_frame_rate
            length = int(match.group("frames")) / frame_rate if frame_rate > 0 else 0.0
            timing.video = StreamTiming(start, start + length)
        else:
            sample_rate = rates.get((kind, number), 0.0)
            samples = int(match.group("samples") or 0)
            length = samples / sample_rate if sample_rate > 0 else 0.0
            timing.audio = StreamTiming(start, start + length)
    decoded = [t.video for t in findings.timings.values() if t.video is not None]
    start = decoded[0].start if decoded else 0.0
    for match in _DEMUXED.finditer(text):
        number = int(match.group("input"))
        if number < len(readings) and readings[number].video_detectors is False:
            rate = readings[number].frame_rate or fallback_frame_rate
            length = int(match.group("packets")) / rate if rate > 0 else 0.0
            timing = findings.timings.setdefault(number, InputTiming())
            timing.video = StreamTiming(start, start + length)
    findings.black = [
        (float(m.group("start")), float(m.group("end"))) for m in _BLACK.finditer(text)
    ]
    findings.frozen = _segments(_FREEZE, text)
    findings.silence = _segments(_SILENCE, text)
    # ebur128 prints its summary each time the graph is configured: the last one counts.
    for match in _SUMMARY.finditer(text):
        block = text[match.end() : match.end() + 600]
        if integrated := _INTEGRATED.search(block):
            findings.integrated_lufs = _level(integrated.group("value"))
        if peak := _PEAK.search(block):
            findings.true_peak_dbtp = _level(peak.group("value"))
    errors = [m.group("message") for m in _ERROR.finditer(text)]
    findings.decode_errors = len(errors)
    findings.first_error = errors[0][:200] if errors else ""
    return findings


def _segments(pattern: re.Pattern[str], text: str) -> Segments:
    """start/end lines into (start, end) pairs; a start with no end runs to the stream's end."""
    segments: Segments = []
    for match in pattern.finditer(text):
        time = float(match.group("t"))
        if match.group("what") == "start":
            segments.append((time, None))
        elif segments and segments[-1][1] is None:
            segments[-1] = (segments[-1][0], time)
    return segments


def _level(text: str) -> float:
    try:
        return float(text)  # takes "-inf"
    except ValueError:
        return float("-inf")


def longest(segments: Segments, stream_end: float) -> tuple[float, float]:
    """(length, start) of the longest segment, (0, 0) without any."""
    best = (0.0, 0.0)
    for start, end in segments:
        best = max(best, ((stream_end if end is None else end) - start, start))
    return best


def outside(segments: Segments, covers: Segments, stream_end: float) -> Segments:
    """The segments not half or more inside one of `covers`: the frames of a black segment
    are frozen too, and it is reported as black only."""
    kept = []
    for start, end in segments:
        stop = stream_end if end is None else end
        inside = max(
            (
                min(stop, stream_end if c_end is None else c_end) - max(start, c_start)
                for c_start, c_end in covers
            ),
            default=0.0,
        )
        if inside < (stop - start) / 2:
            kept.append((start, end))
    return kept
