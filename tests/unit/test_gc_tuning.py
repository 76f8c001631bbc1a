"""The server's collector settings: frozen start-up objects, a raised young threshold."""

import gc

import pytest

from server.config import load_settings
from server.gc_tuning import DEFAULT_GEN0_THRESHOLD, tune_collector


@pytest.fixture
def restored_collector():
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_tuning_freezes_what_exists_and_raises_the_young_threshold(restored_collector):
    gc.unfreeze()
    survivor = [object() for _ in range(100)]
    tune_collector(12_345)
    assert gc.get_threshold()[0] == 12_345
    assert gc.get_freeze_count() >= len(survivor)


def test_zero_keeps_pythons_defaults(restored_collector):
    gc.unfreeze()
    before = gc.get_threshold()
    tune_collector(0)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_the_threshold_comes_from_the_environment():
    assert load_settings({}).gc_gen0_threshold == DEFAULT_GEN0_THRESHOLD
    assert load_settings({"KILN_GC_GEN0_THRESHOLD": "0"}).gc_gen0_threshold == 0
