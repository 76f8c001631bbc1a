"""Subtitle cues as plain data: SubRip and WebVTT read strictly, WebVTT written, clipped and cut
into HLS segments. No I/O and no FFmpeg: every rule here is tested on strings.

Cue text is carried as text. A player's WebVTT parser reads "<" as the start of a tag and "&"
as the start of an escape, so a cue saying "<script>" would silently lose those words. Only
<b>, <i> and <u> (which SubRip and WebVTT both have, and mean the same) stay markup; every other
"<", ">" and "&" is escaped. A WebVTT source's own escapes are read first and written again,
so nothing is escaped twice.
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass

from worker.media.errors import TEXT_TRACK_INVALID, MediaError

# Markup kept as markup: what SubRip and WebVTT share.
_KEPT_TAG = re.compile(r"</?[biu]>")
_TAG = re.compile(r"<[^<>]*>")
_FONT_TAG = re.compile(r"</?font(?:\s[^<>]*)?>", re.IGNORECASE)
# HH:MM:SS,mmm (SubRip; "." accepted, as many tools write it) and [HH:]MM:SS.mmm (WebVTT).
_SRT_TIME = r"(\d{1,3}):([0-5]\d):([0-5]\d)[,.](\d{3})"
_VTT_TIME = r"(?:(\d{1,3}):)?([0-5]\d):([0-5]\d)\.(\d{3})"
_SRT_TIMING = re.compile(rf"^{_SRT_TIME}\s*-->\s*{_SRT_TIME}(?:\s+.*)?$")
_VTT_TIMING = re.compile(rf"^{_VTT_TIME}[ \t]+-->[ \t]+{_VTT_TIME}(?:[ \t].*)?$")
MAX_CUES = 100_000
MAX_CUE_CHARACTERS = 2_000


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    # WebVTT cue text: escaped, with only <b>, <i> and <u> left as markup.
    text: str


def _seconds(hours: str | None, minutes: str, seconds: str, millis: str) -> float:
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds) + int(millis) / 1000


def _invalid(what: str, message: str) -> MediaError:
    return MediaError(TEXT_TRACK_INVALID, f"{what}: {message}")


def decode_text(data: bytes, what: str) -> str:
    """A subtitle file's text: UTF-8 (a BOM dropped), or UTF-16 with a BOM; anything else (a
    video, an image, a Latin-1 file) is not a subtitle file kiln reads."""
    if b"\x00" in data[:4096] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise _invalid(what, "is binary data, not a subtitle file")
    try:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            text = data.decode("utf-16")
        else:
            text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _invalid(what, "is not UTF-8 text (save the subtitles as UTF-8)") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def escape_text(raw: str) -> str:
    """Plain cue text as WebVTT cue text: <b>, <i>, <u> kept, every other markup character
    escaped."""
    parts: list[str] = []
    position = 0
    for match in _KEPT_TAG.finditer(raw):
        parts.append(html.escape(raw[position : match.start()], quote=False))
        parts.append(match.group(0))
        position = match.end()
    parts.append(html.escape(raw[position:], quote=False))
    return "".join(parts)


def _from_webvtt_text(raw: str) -> str:
    """A WebVTT cue's text as plain text with <b>, <i>, <u>: its other tags (voice, class,
    timestamps) dropped, as a player would show the cue, and its escapes read."""
    parts: list[str] = []
    position = 0
    for match in _TAG.finditer(raw):
        parts.append(html.unescape(raw[position : match.start()]))
        if _KEPT_TAG.fullmatch(match.group(0)):
            parts.append(match.group(0))
        position = match.end()
    parts.append(html.unescape(raw[position:]))
    return "".join(parts)


def _checked_cues(cues: list[Cue], what: str, *, overlaps_allowed: bool) -> list[Cue]:
    if not cues:
        raise _invalid(what, "has no cues")
    if len(cues) > MAX_CUES:
        raise _invalid(what, f"has more than {MAX_CUES} cues")
    previous: Cue | None = None
    for number, cue in enumerate(cues, start=1):
        if cue.end <= cue.start:
            raise _invalid(what, f"cue {number} ends ({cue.end:.3f} s) before it starts")
        if previous is not None and cue.start < previous.start:
            raise _invalid(
                what, f"cue {number} starts before cue {number - 1} (cues must be in time order)"
            )
        if previous is not None and not overlaps_allowed and cue.start < previous.end:
            raise _invalid(
                what,
                f"cue {number} starts at {cue.start:.3f} s, before cue {number - 1} ends "
                f"({previous.end:.3f} s)",
            )
        previous = cue
    return cues


def parse_srt(text: str, what: str, *, converted: bool = False) -> list[Cue]:
    """SubRip: blocks of a counter, a timing line and text lines, separated by blank lines.
    Times must be well formed, cues in order and, in a file given as SubRip, not overlapping
    (SubRip has no way to place two cues apart). `converted`: SubRip that FFmpeg made of an ASS
    file or a stream, whose cues may overlap and whose <font> tags are FFmpeg's rendering of
    styles (dropped, not shown as text)."""
    cues: list[Cue] = []
    for block_number, block in enumerate(re.split(r"\n[ \t]*\n", text.strip()), start=1):
        lines = block.split("\n")
        if lines and lines[0].strip().isdigit():
            lines = lines[1:]
        timing = _SRT_TIMING.match(lines[0].strip()) if lines else None
        if timing is None:
            shown = (lines[0].strip() if lines else "")[:60]
            raise _invalid(
                what,
                f"is not SubRip: block {block_number} has no timing line "
                f"(HH:MM:SS,mmm --> HH:MM:SS,mmm), found {shown!r}",
            )
        groups = timing.groups()
        body = "\n".join(line.rstrip() for line in lines[1:]).strip()
        if converted:
            body = _FONT_TAG.sub("", body)
        cues.append(
            Cue(
                _seconds(*groups[:4]),
                _seconds(*groups[4:]),
                escape_text(body[:MAX_CUE_CHARACTERS]),
            )
        )
    return _checked_cues(cues, what, overlaps_allowed=converted)


def parse_webvtt(text: str, what: str) -> list[Cue]:
    """WebVTT: the signature line, then cues (an optional identifier, the timing line, the
    text); NOTE, STYLE and REGION blocks skipped, cue settings not kept."""
    blocks = re.split(r"\n[ \t]*\n", text.strip("\n"))
    header = blocks[0].split("\n")[0] if blocks else ""
    if not re.fullmatch(r"WEBVTT(?:[ \t].*)?", header):
        raise _invalid(what, f"is not WebVTT: it must start with WEBVTT, found {header[:60]!r}")
    cues: list[Cue] = []
    for block in blocks[1:]:
        lines = block.split("\n")
        if not lines or lines[0].startswith(("NOTE", "STYLE", "REGION")):
            continue
        if "-->" not in lines[0]:
            lines = lines[1:]  # the cue's identifier
        timing = _VTT_TIMING.match(lines[0].strip()) if lines else None
        if timing is None:
            shown = (lines[0] if lines else "")[:60]
            raise _invalid(what, f"has a cue whose timing line is broken: {shown!r}")
        groups = timing.groups()
        body = "\n".join(lines[1:]).strip()
        plain = _from_webvtt_text(body[:MAX_CUE_CHARACTERS])
        cues.append(Cue(_seconds(*groups[:4]), _seconds(*groups[4:]), escape_text(plain)))
    return _checked_cues(cues, what, overlaps_allowed=True)


def clip_cues(cues: list[Cue], start: float, duration: float) -> list[Cue]:
    """The cues of the window [start, start + duration) on the window's own timeline: shifted
    by the start, cut at both ends, those outside dropped."""
    end = start + duration
    kept = []
    for cue in cues:
        if cue.end <= start or cue.start >= end:
            continue
        # Rounded to the millisecond WebVTT writes, so a cut cue is not a float hair off.
        shifted = round(max(cue.start, start) - start, 3), round(min(cue.end, end) - start, 3)
        kept.append(Cue(*shifted, cue.text))
    return kept


def timestamp(seconds: float) -> str:
    """WebVTT's HH:MM:SS.mmm."""
    millis = max(0, round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}.{rest % 1000:03d}"


def _cue_block(cue: Cue) -> str:
    # A blank line would end the cue early; "-->" in text would read as a timing line.
    body = re.sub(r"\n\s*\n", "\n", cue.text).replace("-->", "--&gt;") or " "
    return f"{timestamp(cue.start)} --> {timestamp(cue.end)}\n{body}\n"


def webvtt_text(cues: list[Cue], header_lines: tuple[str, ...] = ()) -> str:
    head = "\n".join(("WEBVTT", *header_lines))
    return "\n".join([f"{head}\n", *(_cue_block(cue) for cue in cues)])


def segment_webvtt(cues: list[Cue], durations: list[float], mpegts: int) -> list[tuple[str, float]]:
    """HLS WebVTT segments cut at the video's segment boundaries: (text, duration) each.

    A cue is written into every segment it overlaps, with its whole times (players drop the
    repeats), so it shows whichever segment a player starts from. X-TIMESTAMP-MAP ties the
    cue times (LOCAL 0) to the media's timestamps (`mpegts`, in 90 kHz ticks: where the video's
    first segment starts), which is how HLS players align text with the video.
    """
    header = (f"X-TIMESTAMP-MAP=MPEGTS:{mpegts},LOCAL:00:00:00.000",)
    segments = []
    begin = 0.0
    for number, duration in enumerate(durations):
        last = number == len(durations) - 1
        end = math.inf if last else begin + duration
        inside = [cue for cue in cues if cue.start < end and cue.end > begin]
        segments.append((webvtt_text(inside, header), duration))
        begin += duration
    return segments
