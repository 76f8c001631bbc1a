"""The progress gate: which progress reports become events, and which only renew a lease."""

from __future__ import annotations

from server.jobs.progress_gate import ProgressGate


def test_first_report_is_logged_then_at_most_n_per_second_per_job():
    now = [0.0]
    gate = ProgressGate(2.0, clock=lambda: now[0])
    assert gate.due("tsk_a", stage=3)
    gate.logged("tsk_a", "job_1", stage=3)
    now[0] = 0.2
    assert not gate.due("tsk_a", stage=3)
    # Another task of the same job shares the job's budget once the gate knows it.
    gate.logged("tsk_b", "job_1", stage=3)
    now[0] = 0.6
    assert not gate.due("tsk_b", stage=3)
    now[0] = 0.71
    assert gate.due("tsk_a", stage=3) and gate.due("tsk_b", stage=3)


def test_a_stage_change_is_never_held_back():
    now = [0.0]
    gate = ProgressGate(1.0, clock=lambda: now[0])
    gate.logged("tsk_a", "job_1", stage=3)
    now[0] = 0.1
    assert gate.due("tsk_a", stage=5)


def test_zero_logs_every_report():
    gate = ProgressGate(0)
    gate.logged("tsk_a", "job_1", stage=3)
    assert gate.due("tsk_a", stage=3)
