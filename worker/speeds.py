"""How fast this worker's encodes run, per kind of output, for the server's ETAs.

Each finished TRANSCODE or CHUNK task gives one figure: the media seconds it encoded over
the wall seconds of the whole task (staging the input, encoding, packaging, uploading),
since all of that is time a queued output will wait for. The worker announces the median
of its last few figures per kind (common/speed_classes.py): one slow task (a cold cache,
a burst of other load) moves the median little, and a lasting change shows within a few.
"""

from __future__ import annotations

import statistics
from collections import deque

from kiln.worker.v1 import worker_service_pb2 as wpb

from common.speed_classes import AUDIO, speed_class

RECENT_TASKS = 5
# Kinds whose media seconds measure an encode's speed (a probe or a merge encodes nothing).
# A chunked output's AUDIO piece encodes audio alone: it counts as "audio", whatever the spec.
MEASURED_KINDS = (wpb.TASK_KIND_TRANSCODE, wpb.TASK_KIND_CHUNK, wpb.TASK_KIND_AUDIO)
# The same bound the server enforces: a task faster than this measured its clock wrong.
MAX_REALTIME_FACTOR = 1000.0


class SpeedBook:
    def __init__(self) -> None:
        self._recent: dict[str, deque[float]] = {}

    def record(self, task: wpb.Task, media_seconds: float, wall_seconds: float) -> bool:
        """Notes one finished task; True when it was one to measure."""
        if task.kind not in MEASURED_KINDS or media_seconds <= 0 or wall_seconds <= 0:
            return False
        audio = task.kind == wpb.TASK_KIND_AUDIO
        kind = AUDIO if audio else speed_class(task.output_spec, task.input_info)
        factor = min(media_seconds / wall_seconds, MAX_REALTIME_FACTOR)
        self._recent.setdefault(kind, deque(maxlen=RECENT_TASKS)).append(factor)
        return True

    def speeds(self) -> list[wpb.EncodeSpeed]:
        return [
            wpb.EncodeSpeed(
                speed_class=kind,
                realtime_factor=round(statistics.median(figures), 4),
                samples=len(figures),
            )
            for kind, figures in sorted(self._recent.items())
        ]
