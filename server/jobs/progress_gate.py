"""How often a job's progress is logged: at most N events per job per second.

Workers report progress about four times a second per task, and every report renews the
task's lease. Logging each one costs a transaction that locks the job, two event rows,
NOTIFYs and a fan-out to every watcher, for values a watcher would coalesce anyway. The
gate lets a report through to the event log when the job's last logged progress is older
than 1/N s, or the stage changed; any other report only renews the lease (a heartbeat).
Status changes never pass through here: they are written by their own transitions, always.
"""

from __future__ import annotations

import time
from collections import OrderedDict

# Tasks remembered; the oldest are forgotten first (a forgotten task's next report is due).
REMEMBERED_TASKS = 10_000


class ProgressGate:
    def __init__(self, events_per_second: float, clock=time.monotonic) -> None:
        # 0 or less: every report is logged, as before the gate.
        self.interval = 1.0 / events_per_second if events_per_second > 0 else 0.0
        self.clock = clock
        self._job_of_task: OrderedDict[str, str] = OrderedDict()
        # job -> (when its progress was last logged, the stage then)
        self._last: dict[str, tuple[float, int]] = {}

    def due(self, task_id: str, stage: int) -> bool:
        """Whether this task's report should be logged (else: renew the lease only)."""
        if not self.interval:
            return True
        job_id = self._job_of_task.get(task_id)
        if job_id is None or job_id not in self._last:
            return True
        at, logged_stage = self._last[job_id]
        return stage != logged_stage or self.clock() - at >= self.interval

    def logged(self, task_id: str, job_id: str, stage: int) -> None:
        self._job_of_task[task_id] = job_id
        self._job_of_task.move_to_end(task_id)
        self._last[job_id] = (self.clock(), stage)
        while len(self._job_of_task) > REMEMBERED_TASKS:
            # Another task of the forgotten one's job at worst logs its next report early.
            _, forgotten = self._job_of_task.popitem(last=False)
            self._last.pop(forgotten, None)
