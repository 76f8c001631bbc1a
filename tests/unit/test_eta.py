"""The ETA's arithmetic: absent until it can be honest, then shrinking with the work left."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from server.jobs.eta import job_eta, output_eta
from tests.support.clock import ManualClock

START = datetime(2026, 12, 7, 0, 0, tzinfo=UTC)


def eta_after(clock: ManualClock, seconds: float, progress: float, status="PROCESSING"):
    clock.set(START + timedelta(seconds=seconds))
    return output_eta(status, progress, START, clock())


def test_no_estimate_before_the_threshold():
    clock = ManualClock(START)
    # Too little progress, however long it took; too soon, however much progress.
    assert eta_after(clock, 30.0, 2.9) is None
    assert eta_after(clock, 1.9, 40.0) is None
    assert output_eta("PROCESSING", 50.0, None, START) is None
    assert eta_after(clock, 2.0, 3.0) == round(2.0 * 97 / 3, 1)


def test_decreases_at_a_steady_rate_and_is_the_time_left():
    clock = ManualClock(START)
    # 5 % a second: a 20 s encode.
    estimates = [eta_after(clock, seconds, 5.0 * seconds) for seconds in (2, 4, 8, 12, 16, 19)]
    assert estimates == [18.0, 16.0, 12.0, 8.0, 4.0, 1.0]


def test_never_negative():
    clock = ManualClock(START)
    assert eta_after(clock, 10.0, 100.0) == 0.0
    assert eta_after(clock, 10.0, 100.5) == 0.0


def test_absent_unless_running():
    clock = ManualClock(START)
    for status in ("PENDING", "COMPLETED", "FAILED", "CANCELED"):
        assert eta_after(clock, 10.0, 50.0, status) is None


def test_job_takes_its_slowest_output():
    assert (
        job_eta("PROCESSING", [("PROCESSING", 4.0), ("PROCESSING", 9.5), ("COMPLETED", None)])
        == 9.5
    )


def test_job_unknown_when_an_unfinished_output_is():
    # Queued (no fleet speed yet) or just started: the job's time left cannot be told.
    assert job_eta("PROCESSING", [("PROCESSING", 4.0), ("PENDING", None)]) is None
    assert job_eta("PROCESSING", [("PROCESSING", 4.0), ("PROCESSING", None)]) is None


def test_job_absent_unless_processing_or_with_nothing_left():
    assert job_eta("COMPLETED", [("COMPLETED", None)]) is None
    assert job_eta("FAILED", [("PROCESSING", 3.0)]) is None
    assert job_eta("PROBING", []) is None
    assert job_eta("PROCESSING", [("COMPLETED", None), ("FAILED", None)]) is None
