"""The job state machine: the one transition table and the final status of a finished job."""

from __future__ import annotations

import itertools

import pytest

from server.domain.states import (
    OUTPUT_TERMINAL,
    TERMINAL,
    TRANSITIONS,
    JobStatus,
    OutputStatus,
    allowed_sources,
    can_transition,
    final_status,
)

NON_TERMINAL = [status for status in JobStatus if status not in TERMINAL]
ALL_PAIRS = list(itertools.product(JobStatus, JobStatus))


def test_terminal_sets_are_the_documented_ones():
    assert set(TERMINAL) == {
        JobStatus.COMPLETED,
        JobStatus.PARTIAL,
        JobStatus.FAILED,
        JobStatus.REJECTED,
        JobStatus.CANCELED,
    }
    assert set(OUTPUT_TERMINAL) == {
        OutputStatus.COMPLETED,
        OutputStatus.FAILED,
        OutputStatus.CANCELED,
    }


def test_every_status_has_an_entry_naming_only_known_statuses():
    assert set(TRANSITIONS) == set(JobStatus)
    for target, sources in TRANSITIONS.items():
        assert sources <= set(JobStatus), target
        assert allowed_sources(target) == sources


@pytest.mark.parametrize("source", sorted(TERMINAL))
def test_terminal_status_only_moves_to_pending(source):
    targets = {target for target in JobStatus if can_transition(source, target)}
    if source == JobStatus.COMPLETED:
        assert targets == set()
    else:
        assert targets == {JobStatus.PENDING}


def test_retry_is_never_from_completed_nor_from_a_running_job():
    assert not can_transition(JobStatus.COMPLETED, JobStatus.PENDING)
    assert allowed_sources(JobStatus.PENDING) == TERMINAL - {JobStatus.COMPLETED}
    for source in NON_TERMINAL:
        assert not can_transition(source, JobStatus.PENDING), source


@pytest.mark.parametrize("source", NON_TERMINAL)
def test_canceled_is_reachable_from_every_non_terminal_status(source):
    assert can_transition(source, JobStatus.CANCELED)


@pytest.mark.parametrize("source", sorted(TERMINAL))
def test_canceled_is_not_reachable_from_a_terminal_status(source):
    assert not can_transition(source, JobStatus.CANCELED)


def test_no_status_transitions_to_itself():
    for status in JobStatus:
        assert not can_transition(status, status), status


@pytest.mark.parametrize(
    ("source", "target"),
    [
        (JobStatus.PENDING, JobStatus.PROBING),
        (JobStatus.PROBING, JobStatus.AWAITING_CONFIRMATION),
        (JobStatus.PROBING, JobStatus.PROCESSING),
        (JobStatus.AWAITING_CONFIRMATION, JobStatus.PROCESSING),
        (JobStatus.PROCESSING, JobStatus.COMPLETED),
        (JobStatus.PROCESSING, JobStatus.PARTIAL),
        (JobStatus.PROCESSING, JobStatus.FAILED),
        (JobStatus.PROBING, JobStatus.REJECTED),
        (JobStatus.FAILED, JobStatus.PENDING),
        (JobStatus.CANCELED, JobStatus.PENDING),
    ],
)
def test_the_happy_paths_are_allowed(source, target):
    assert can_transition(source, target)


@pytest.mark.parametrize(
    ("source", "target"),
    [
        (JobStatus.PENDING, JobStatus.PROCESSING),  # must probe first
        (JobStatus.PENDING, JobStatus.COMPLETED),
        (JobStatus.PROBING, JobStatus.COMPLETED),
        (JobStatus.AWAITING_CONFIRMATION, JobStatus.PROBING),
        (JobStatus.PROCESSING, JobStatus.PROBING),
        (JobStatus.PROCESSING, JobStatus.REJECTED),  # rejection happens at probe time
        (JobStatus.COMPLETED, JobStatus.FAILED),
        (JobStatus.FAILED, JobStatus.COMPLETED),
        (JobStatus.CANCELED, JobStatus.PROCESSING),
    ],
)
def test_shortcuts_and_resurrections_are_forbidden(source, target):
    assert not can_transition(source, target)


def test_can_transition_agrees_with_the_table_for_every_pair():
    allowed = {(source, target) for source, target in ALL_PAIRS if can_transition(source, target)}
    from_table = {(source, target) for target, sources in TRANSITIONS.items() for source in sources}
    assert allowed == from_table
    # Sanity: the table is neither empty nor total.
    assert 0 < len(allowed) < len(ALL_PAIRS)


C, F, X = OutputStatus.COMPLETED, OutputStatus.FAILED, OutputStatus.CANCELED


@pytest.mark.parametrize(
    ("outputs", "expected"),
    [
        ([C], JobStatus.COMPLETED),
        ([C, C, C], JobStatus.COMPLETED),
        ([C, F], JobStatus.PARTIAL),
        ([F, C, C], JobStatus.PARTIAL),
        ([C, X], JobStatus.PARTIAL),
        ([F], JobStatus.FAILED),
        ([F, F], JobStatus.FAILED),
        ([F, X], JobStatus.FAILED),
        ([X], JobStatus.FAILED),
    ],
)
def test_final_status(outputs, expected):
    assert final_status(outputs) == expected
    assert final_status(outputs) in TERMINAL


def test_final_status_is_always_reachable_from_processing():
    for outputs in itertools.product([C, F, X], repeat=3):
        assert can_transition(JobStatus.PROCESSING, final_status(list(outputs)))


def test_status_check_constraints_of_migration_0004_name_every_domain_status():
    """The CHECK constraints and the transition tables must list the same statuses."""
    import importlib.util
    from pathlib import Path

    from server.domain.states import (
        DELIVERY_TRANSITIONS,
        OUTPUT_TRANSITIONS,
        TASK_TRANSITIONS,
        TRANSITIONS,
        TaskKind,
    )

    path = next(Path("server/store/migrations/versions").glob("0004_*.py"))
    spec = importlib.util.spec_from_file_location("migration_0004", path)
    assert spec and spec.loader
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    assert set(migration.JOB_STATUSES) == {str(s) for s in TRANSITIONS}
    assert set(migration.OUTPUT_STATUSES) == {str(s) for s in OUTPUT_TRANSITIONS}
    assert set(migration.TASK_STATUSES) == {str(s) for s in TASK_TRANSITIONS}
    assert set(migration.DELIVERY_STATUSES) == {str(s) for s in DELIVERY_TRANSITIONS}
    # Task kinds grew in 0010 (chunked outputs): the latest list is the one to match.
    latest = next(Path("server/store/migrations/versions").glob("0010_*.py"))
    spec = importlib.util.spec_from_file_location("migration_0010", latest)
    assert spec and spec.loader
    kinds = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kinds)
    assert set(kinds.TASK_KINDS) == {str(k) for k in TaskKind}


def test_every_lifecycle_table_names_only_its_own_statuses():
    from server.domain.states import (
        DELIVERY_TRANSITIONS,
        OUTPUT_TRANSITIONS,
        TASK_TRANSITIONS,
        DeliveryStatus,
        OutputStatus,
        TaskStatus,
    )

    for table, kind in (
        (OUTPUT_TRANSITIONS, OutputStatus),
        (TASK_TRANSITIONS, TaskStatus),
        (DELIVERY_TRANSITIONS, DeliveryStatus),
    ):
        assert set(table) == set(kind)
        for sources in table.values():
            assert all(isinstance(source, kind) for source in sources)
