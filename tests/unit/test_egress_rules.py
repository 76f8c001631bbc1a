"""The pure parts of egress control: manifest recognition, playlist URIs, FFmpeg input options,
address refusals."""

from __future__ import annotations

import ipaddress

import pytest

from common.egress_refusal import Refusal
from common.input_policy import InputPolicy
from common.manifests import ManifestSniffer, is_hls_playlist, manifest_kind, playlist_uris
from worker.media.input_access import LOCAL_PROTOCOLS, REMOTE_PROTOCOLS, InputAccess


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"#EXTM3U\n#EXT-X-VERSION:3\n", "an HLS playlist"),
        (b"\xef\xbb\xbf\r\n#extm3u\n", "an HLS playlist"),
        (b"ffconcat version 1.0\nfile a.mp4\n", "an ffconcat list"),
        (
            b'<?xml version="1.0"?><MPD profiles="urn:mpeg:dash:profile:isoff-live:2011">',
            "a DASH manifest (MPD)",
        ),
        (b"<CompositionPlaylist xmlns=...>", "an IMF composition playlist"),
        (b"\x00\x00\x00\x20ftypisom\x00\x00<MPD", None),  # after a NUL FFmpeg stops looking
        (b"\x1a\x45\xdf\xa3 matroska", None),
    ],
)
def test_manifest_kind(head, expected):
    assert manifest_kind(head) == expected


def test_sniffer_finds_a_marker_split_across_chunks():
    sniffer = ManifestSniffer()
    assert sniffer.feed(b"x" * 1000 + b"<M") is None
    assert sniffer.feed(b"pD>") == "a DASH manifest (MPD)"


def test_sniffer_stops_at_the_first_nul_byte():
    sniffer = ManifestSniffer()
    assert sniffer.feed(b"abc\x00def") is None
    assert sniffer.feed(b"<MPD>") is None


def test_playlist_uris_cover_lines_and_attributes_resolved_against_the_playlist():
    text = (
        "#EXTM3U\n"
        '#EXT-X-KEY:METHOD=AES-128,URI="https://keys.example/k1"\n'
        '#EXT-X-MAP:URI="init.mp4"\n'
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="a",URI="../audio/index.m3u8"\n'
        "#EXTINF:2.0,\n"
        "seg0.ts\n"
        "\n"
        "//other.example/seg1.ts\n"
        "file:///etc/passwd\n"
        "data:video/mp2t;base64,AAAA\n"
    )
    assert playlist_uris(text, "http://media.example/v/list.m3u8") == [
        "https://keys.example/k1",
        "http://media.example/v/init.mp4",
        "http://media.example/audio/index.m3u8",
        "http://media.example/v/seg0.ts",
        "http://other.example/seg1.ts",
        "file:///etc/passwd",
        "data:video/mp2t;base64,AAAA",
    ]
    assert is_hls_playlist(text.encode())


def test_input_options_go_before_every_input():
    access = InputAccess(proxy_url="http://127.0.0.1:9999")
    argv = ["ffmpeg", "-y", "-ss", "1", "-i", "http://a/x.mp4", "-i", "/tmp/b.mp4", "out.mp4"]
    assert access.apply(argv) == [
        "ffmpeg", "-y", "-ss", "1",
        "-protocol_whitelist", REMOTE_PROTOCOLS, "-http_proxy", "http://127.0.0.1:9999",
        "-i", "http://a/x.mp4",
        "-protocol_whitelist", LOCAL_PROTOCOLS,
        "-i", "/tmp/b.mp4",
        "out.mp4",
    ]  # fmt: skip


def test_ffmpeg_environment_names_the_proxy_and_drops_no_proxy(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.2")
    monkeypatch.setenv("NO_PROXY", "*")
    env = InputAccess(proxy_url="http://127.0.0.1:9999").environment()
    assert env["http_proxy"] == "http://127.0.0.1:9999"
    assert "no_proxy" not in env
    assert "NO_PROXY" not in env


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1", "127.0.0.1, a loopback address"),
        ("169.254.169.254", "169.254.169.254, a link-local address"),
        ("10.1.2.3", "10.1.2.3, a private address"),
        ("100.100.100.200", "100.100.100.200, a non-public address"),
        ("::ffff:127.0.0.1", "::ffff:7f00:1, a loopback address"),
        ("93.184.215.14", None),
        ("127.0.0.2", None),  # allowlisted
    ],
)
def test_address_refusal_names_the_address_and_its_kind(address, expected):
    policy = InputPolicy.from_lists([], ["127.0.0.2"])
    assert policy.address_refusal("media.test", ipaddress.ip_address(address)) == expected


def test_refusal_messages_read_as_sentences():
    assert (
        Refusal(
            "http://127.0.0.1:8/s.mp4",
            "resolves to 127.0.0.1, a loopback address",
            "127.0.0.1",
            "redirect to",
        ).describe()
        == "redirect to http://127.0.0.1:8/s.mp4 resolves to 127.0.0.1, a loopback address"
    )
    long = Refusal(
        "data:" + "A" * 500, "is not an http(s) URL", context="playlist http://a/l.m3u8 names"
    )
    assert long.describe().endswith("…, which is not an http(s) URL")
    assert len(long.describe()) < 300
