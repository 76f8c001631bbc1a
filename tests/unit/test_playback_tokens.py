"""Playback tokens and the output-path check in front of the file server (no I/O)."""

from __future__ import annotations

import pytest

from server.delivery.file_server import cache_control_for, split_output_path
from server.delivery.links import PlaybackLinks, entry_point
from server.delivery.tokens import PlaybackTokens, key_id

JOB = "job_01kb8z4qd2x9rwm1v3c5n7p0hj"
OTHER_JOB = "job_01kb8z4qd2x9rwm1v3c5n7p0hk"
OUT = "out_01kb8z4qd3a1b2c3d4e5f6g7h8"
OTHER_OUT = "out_01kb8z4qd3a1b2c3d4e5f6g7h9"
NOW = 1_800_000_000.0


class Clock:
    """An injected clock: expiry is tested by moving time, not by waiting."""

    def __init__(self, at: float) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


def tokens(key: bytes = b"k" * 32, previous: tuple[bytes, ...] = (), **kw) -> PlaybackTokens:
    return PlaybackTokens(key, previous, clock=kw.pop("clock", Clock(NOW)), **kw)


def test_a_token_opens_its_own_output_only():
    signer = tokens()
    token = signer.mint(JOB, OUT, 1).text
    assert signer.verify(token, JOB, OUT)
    assert not signer.verify(token, JOB, OTHER_OUT)
    assert not signer.verify(token, OTHER_JOB, OUT)


def test_expiry_is_at_least_the_ttl_and_rounded_to_a_window():
    clock = Clock(NOW + 17)
    signer = tokens(ttl_seconds=7200, clock=clock)
    first = signer.mint(JOB, OUT, 1)
    assert first.expires >= NOW + 17 + 7200
    assert first.expires % 3600 == 0
    clock.at += 60
    # The same window: the same URL, one cache key for a CDN.
    assert signer.mint(JOB, OUT, 1).text == first.text
    clock.at = first.expires + 1
    assert not signer.verify(first.text, JOB, OUT)


def test_a_retried_job_gets_other_urls_that_also_work():
    signer = tokens()
    first, second = signer.mint(JOB, OUT, 1).text, signer.mint(JOB, OUT, 2).text
    assert first != second
    assert signer.verify(first, JOB, OUT) and signer.verify(second, JOB, OUT)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # signature
        lambda t: t.replace(".1.", ".2.", 1),  # generation
        lambda t: "0" * 8 + t[8:],  # key id
        lambda t: t.split(".")[0] + "." + str(int(t.split(".")[1]) + 3600) + t[t.index(".", 9) :],
        lambda t: t + "=",
        lambda t: "",
        lambda t: "ü" + t[1:],
    ],
)
def test_a_tampered_token_is_refused(tamper):
    signer = tokens()
    token = signer.mint(JOB, OUT, 1).text
    assert not signer.verify(tamper(token), JOB, OUT)


def test_rotation_keeps_listed_previous_keys_and_drops_retired_ones():
    old, new = b"o" * 32, b"n" * 32
    handed_out = tokens(old).mint(JOB, OUT, 1).text
    assert handed_out.startswith(key_id(old) + ".")
    assert tokens(new, previous=(old,)).verify(handed_out, JOB, OUT)
    assert tokens(new, previous=(old,)).mint(JOB, OUT, 1).text.startswith(key_id(new) + ".")
    assert not tokens(new).verify(handed_out, JOB, OUT)


@pytest.mark.parametrize(
    "rest",
    [
        f"{JOB}/{OUT}/../{OTHER_OUT}/master.m3u8",
        f"{JOB}/{OUT}/%2e%2e/{OTHER_OUT}/master.m3u8",
        f"{JOB}/{OUT}/%2E%2E%2F{OTHER_OUT}%2Fmaster.m3u8",
        f"{JOB}/{OUT}/v0%2fseg.ts",
        f"{JOB}/{OUT}/v0%5cseg.ts",
        f"{JOB}/{OUT}/v0\\seg.ts",
        f"{JOB}/{OUT}/",
        f"{JOB}/{OUT}//master.m3u8",
        f"{JOB}/{OUT}/./master.m3u8",
        f"{JOB}/{OUT}/%00master.m3u8",
        f"{JOB}/{OUT}/%ff.ts",
        f"{JOB}/../{OUT}/master.m3u8",
        f"{JOB}/{OUT}",
        f"job_x/{OUT}/master.m3u8",
        f"{JOB}/{OUT.upper()}/master.m3u8",
    ],
)
def test_only_plain_names_inside_the_folder_pass(rest):
    assert split_output_path(rest) is None


def test_plain_names_pass():
    assert split_output_path(f"{JOB}/{OUT}/v0/seg_00001.m4s") == (JOB, OUT, "v0/seg_00001.m4s")
    assert split_output_path(f"{JOB}/{OUT}/output.mp4") == (JOB, OUT, "output.mp4")


def test_the_entry_point_is_the_master_then_the_mpd_then_the_first_file():
    assert entry_point(["v0/index.m3u8", "manifest.mpd", "master.m3u8"]) == "master.m3u8"
    assert entry_point(["init-0.mp4", "manifest.mpd"]) == "manifest.mpd"
    assert entry_point(["output.mp4"]) == "output.mp4"
    assert entry_point([]) is None


def test_links_put_the_token_in_the_path_or_use_the_public_base():
    signer = tokens()
    link = PlaybackLinks(signer, "http://h:1").link(JOB, OUT, 1, ["a.ts", "master.m3u8"])
    assert link is not None and link.expires is not None
    token = link.url.split("/")[4]
    assert link.url == f"http://h:1/play/{token}/{JOB}/{OUT}/master.m3u8"
    assert link.base_url == f"http://h:1/play/{token}/{JOB}/{OUT}/"
    public = PlaybackLinks(signer, "http://h:1", "https://cdn.example/v/").link(
        JOB, OUT, 1, ["output.mp4"]
    )
    assert public is not None and public.expires is None
    assert public.url == f"https://cdn.example/v/{JOB}/{OUT}/output.mp4"
    assert PlaybackLinks(signer, "http://h:1").link(JOB, OUT, 1, ["../x"]) is None


def test_manifests_revalidate_and_everything_else_is_immutable():
    assert cache_control_for("v0/index.m3u8") == "no-cache"
    assert cache_control_for("manifest.mpd") == "no-cache"
    for name in ("v0/seg_00001.ts", "init-0.mp4", "seg-0-00001.m4s", "output.mp4", "thumb.jpg"):
        assert "immutable" in cache_control_for(name)
