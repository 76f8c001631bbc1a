"""Playlists rewritten for one viewer: the key token where the player needs it, nothing else."""

from __future__ import annotations

from server.delivery.key_playlists import key_uri, rewrite_manifest, rewrite_playlist

TOKEN = "0123abcd.1800000000.1.sig"
KEY_ID = bytes(range(16))
JOB, OUTPUT = "job_" + "0" * 26, "out_" + "1" * 26

MASTER = """#EXTM3U
#EXT-X-VERSION:6
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aac",NAME="audio",URI="audio/index.m3u8"
#EXT-X-STREAM-INF:BANDWIDTH=500000,RESOLUTION=320x180,AUDIO="aac"
v0/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=200000,RESOLUTION=160x90,AUDIO="aac"
v1/index.m3u8
"""

MEDIA = f"""#EXTM3U
#EXT-X-TARGETDURATION:1
#EXT-X-MAP:URI="init_0.mp4"
#EXT-X-KEY:METHOD=AES-128,URI="{key_uri(KEY_ID)}",IV=0x00000000000000000000000000000001
#EXTINF:1.000000,
seg_00000.m4s
#EXT-X-ENDLIST
"""


def test_master_playlist_passes_the_token_to_every_child_playlist():
    rewritten = rewrite_playlist(MASTER, TOKEN, JOB, OUTPUT)
    assert f'URI="audio/index.m3u8?kt={TOKEN}"' in rewritten
    assert f"\nv0/index.m3u8?kt={TOKEN}\n" in rewritten
    assert f"\nv1/index.m3u8?kt={TOKEN}\n" in rewritten
    assert rewritten.count(TOKEN) == 3


def test_media_playlist_points_its_key_at_the_key_endpoint_and_leaves_segments():
    rewritten = rewrite_playlist(MEDIA, TOKEN, JOB, OUTPUT)
    assert f'URI="/keys/{TOKEN}/{JOB}/{OUTPUT}/{KEY_ID.hex()}"' in rewritten
    assert "kiln-key:" not in rewritten
    # Segments and the init segment are one URL for every viewer: never rewritten.
    assert "\nseg_00000.m4s\n" in rewritten
    assert '#EXT-X-MAP:URI="init_0.mp4"' in rewritten
    assert rewritten.count(TOKEN) == 1


def test_a_clear_playlist_is_unchanged_but_for_its_child_playlists():
    clear = "#EXTM3U\n#EXTINF:1.0,\nseg_00000.ts\n#EXT-X-ENDLIST\n"
    assert rewrite_playlist(clear, TOKEN, JOB, OUTPUT) == clear


def test_an_mpd_gets_the_viewers_absolute_license_url():
    mpd = (
        '<?xml version="1.0"?>\n<MPD><ContentProtection schemeIdUri="urn:uuid:e2719d58">'
        f"<dashif:Laurl>{key_uri(KEY_ID)}</dashif:Laurl></ContentProtection>"
        '<SegmentTemplate media="seg-$Number$.m4s"/></MPD>\n'
    )
    rewritten = rewrite_manifest(mpd, TOKEN, JOB, OUTPUT, "https://kiln.example")
    license_url = f"https://kiln.example/keys/{TOKEN}/{JOB}/{OUTPUT}/clearkey"
    assert f"<dashif:Laurl>{license_url}</dashif:Laurl>" in rewritten
    assert 'media="seg-$Number$.m4s"' in rewritten and rewritten.count(TOKEN) == 1
    # A playlist is told apart by its first line and rewritten as one.
    assert rewrite_manifest(MEDIA, TOKEN, JOB, OUTPUT, "") == rewrite_playlist(
        MEDIA, TOKEN, JOB, OUTPUT
    )


def test_an_mpd_without_a_license_url_gets_one():
    clear_key = (
        '<ContentProtection schemeIdUri="urn:uuid:e2719d58-a985-b3c9-781a-b030af78d30e" '
        'value="ClearKey1.0">'
    )
    cenc = '<ContentProtection schemeIdUri="urn:mpeg:dash:mp4protection:2011" value="cenc"/>'
    for empty in (f"{clear_key}</ContentProtection>", clear_key[:-1] + "/>"):
        mpd = f"<MPD><AdaptationSet>{cenc}{empty}</AdaptationSet></MPD>\n"
        rewritten = rewrite_manifest(mpd, TOKEN, JOB, OUTPUT, "https://kiln.example")
        license_url = f"https://kiln.example/keys/{TOKEN}/{JOB}/{OUTPUT}/clearkey"
        assert (
            f'{clear_key}<dashif:Laurl xmlns:dashif="https://dashif.org/CPS">{license_url}'
            "</dashif:Laurl></ContentProtection>"
        ) in rewritten, rewritten
        assert cenc in rewritten
