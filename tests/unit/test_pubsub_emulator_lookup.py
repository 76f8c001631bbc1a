"""Where the tests look for Google's Pub/Sub emulator, in order, and what they say without it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import pubsub_emulator
from tests.support.pubsub_emulator import EmulatorMissing, find_command


def executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH of one empty folder, no override, and the Cloud SDK's place inside tmp_path."""
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.delenv(pubsub_emulator.OVERRIDE, raising=False)
    monkeypatch.setattr(pubsub_emulator, "SDK_LAUNCHER", tmp_path / "sdk" / "launcher")
    return tmp_path


def test_the_override_wins_and_may_name_gcloud(machine: Path, monkeypatch: pytest.MonkeyPatch):
    mine = executable(machine / "mine" / "cloud-pubsub-emulator")
    executable(machine / "bin" / "cloud-pubsub-emulator")
    monkeypatch.setenv(pubsub_emulator.OVERRIDE, str(mine))
    assert find_command() == [str(mine)]
    gcloud = executable(machine / "sdk-bin" / "gcloud")
    monkeypatch.setenv(pubsub_emulator.OVERRIDE, str(gcloud))
    assert find_command() == [str(gcloud), "beta", "emulators", "pubsub", "start"]


def test_a_wrong_override_is_an_error_not_a_fallback(
    machine: Path, monkeypatch: pytest.MonkeyPatch
):
    executable(machine / "bin" / "cloud-pubsub-emulator")
    monkeypatch.setenv(pubsub_emulator.OVERRIDE, str(machine / "nowhere"))
    with pytest.raises(EmulatorMissing, match="is not an executable"):
        find_command()


def test_path_then_the_cloud_sdk_then_gcloud(machine: Path):
    gcloud = executable(machine / "bin" / "gcloud")
    assert find_command() == [str(gcloud), "beta", "emulators", "pubsub", "start"]
    sdk = executable(pubsub_emulator.SDK_LAUNCHER)
    assert find_command() == [str(sdk)]
    on_path = executable(machine / "bin" / "cloud-pubsub-emulator")
    assert find_command() == [str(on_path)]


def test_without_one_the_error_says_what_to_install(machine: Path):
    with pytest.raises(EmulatorMissing) as missing:
        find_command()
    message = str(missing.value)
    assert "google-cloud-cli-pubsub-emulator" in message
    assert "neither Debian's nor PyPI's registries" in message
    assert pubsub_emulator.OVERRIDE in message
