"""KILN_* numbers: a value the variable cannot take is refused with its name, never read
as something else; unset or blank keeps the default."""

from __future__ import annotations

import pytest

from common.pubsub import PubSubSettings
from common.settings_env import BadSetting, env_float, env_int, env_port
from server.config import load_settings
from worker.settings import load_worker_settings


def test_unset_or_blank_keeps_the_default():
    assert env_int({}, "KILN_X", 7) == 7
    assert env_int({"KILN_X": "  "}, "KILN_X", 7) == 7
    assert env_float({"KILN_X": ""}, "KILN_X", 0.5) == 0.5
    assert env_port({}, "KILN_X", 8080) == 8080


def test_good_values_are_read():
    assert env_int({"KILN_X": " 12 "}, "KILN_X", 7) == 12
    assert env_float({"KILN_X": "2.5"}, "KILN_X", 1, positive=True) == 2.5
    assert env_port({"KILN_X": "0"}, "KILN_X", 8080) == 0


@pytest.mark.parametrize(
    ("read", "value", "message"),
    [
        (lambda env: env_int(env, "KILN_X", 1), "abc", "KILN_X must be a whole number, got 'abc'"),
        (lambda env: env_int(env, "KILN_X", 1), "1.5", "KILN_X must be a whole number"),
        (lambda env: env_int(env, "KILN_X", 1, minimum=1), "0", "KILN_X must be at least 1"),
        (lambda env: env_int(env, "KILN_X", 1), "-3", "KILN_X must be at least 0"),
        (lambda env: env_float(env, "KILN_X", 1), "fast", "KILN_X must be a number"),
        (lambda env: env_float(env, "KILN_X", 1), "nan", "KILN_X must be a finite number"),
        (lambda env: env_float(env, "KILN_X", 1), "inf", "KILN_X must be a finite number"),
        (lambda env: env_float(env, "KILN_X", 1), "-1", "KILN_X must not be negative"),
        (lambda env: env_float(env, "KILN_X", 1, positive=True), "0", "more than 0"),
        (lambda env: env_port(env, "KILN_X", 1), "70000", "port number (0-65535)"),
    ],
)
def test_a_bad_value_is_refused_with_the_variable_named(read, value, message):
    with pytest.raises(BadSetting, match=message.replace("(", r"\(").replace(")", r"\)")):
        read({"KILN_X": value})


@pytest.mark.parametrize(
    ("load", "name", "value"),
    [
        (load_settings, "KILN_HTTP_PORT", "http"),
        (load_settings, "KILN_LEASE_SECONDS", "0"),
        (load_settings, "KILN_MAX_TASK_ATTEMPTS", "0"),
        (load_settings, "KILN_GC_GEN0_THRESHOLD", "abc"),
        (load_settings, "KILN_WEBHOOK_RETRY_HOURS", "-1"),
        (load_worker_settings, "KILN_WORKER_CONCURRENCY", "0"),
        (load_worker_settings, "KILN_PROGRESS_INTERVAL_SECONDS", "-0.25"),
        (load_worker_settings, "KILN_WORKER_METRICS_PORT", "99999"),
        (PubSubSettings.from_env, "KILN_PUBSUB_MAX_DELIVERIES", "five"),
        # Pub/Sub's dead-letter policy takes 5 to 100 only.
        (PubSubSettings.from_env, "KILN_PUBSUB_MAX_DELIVERIES", "4"),
        (PubSubSettings.from_env, "KILN_PUBSUB_MAX_DELIVERIES", "101"),
    ],
)
def test_every_settings_reader_refuses_a_bad_number(load, name, value):
    with pytest.raises(BadSetting, match=name):
        load({name: value})
