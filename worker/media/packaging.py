"""What happens after ffmpeg exits and before the files are described and stored.

A ladder's manifests are corrected from the produced segments (worker.media.hls_master,
worker.media.dash_mpd); a sprite gets the WebVTT map that says which tile shows which time
range (worker.media.images.sprite_vtt).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from kiln.v1 import job_pb2

from worker.media.audio_tracks import label_dash_audio, label_hls_audio
from worker.media.dash_mpd import correct_mpd_codecs, end_after_the_media, measure_mpd_bandwidth
from worker.media.hls_master import rewrite_hls_master, tidy_cmaf_media_playlists
from worker.media.images import sprite_vtt
from worker.media.ladder import AUDIO_GROUP
from worker.media.plan import CommandPlan, LadderPackaging, SpriteSheet
from worker.media.text_tracks import add_dash_text_sets, add_hls_text_renditions, write_sidecars


async def finalize_output(
    spec: job_pb2.OutputSpec,
    info: job_pb2.InputInfo,
    out_dir: Path,
    plan: CommandPlan,
) -> list[str]:
    """Completes an output after run_ffmpeg succeeded; returns notes to add to plan.notes.

    Call it before describing the files in out_dir: it rewrites playlists and adds files.
    Raises MediaError(ENCODE_FAILED) when the produced files are not what the plan promised.
    spec and info are accepted for steps that need them; the current ones read the files.
    """
    del spec, info  # the plan already carries everything the current steps need
    step = plan.finalize
    if step is None:
        # A progressive file: its text tracks are inside it, and beside it as .vtt files.
        await write_sidecars(out_dir, plan.text_tracks)
        return []
    if isinstance(step, SpriteSheet):
        await asyncio.to_thread(step.vtt.write_text, sprite_vtt(step), "utf-8")
        return []
    # Named before the master is measured: every variant must name the audio group first.
    if step.hls_master is not None:
        await label_hls_audio(step.hls_master, plan.audio_tracks, f"group_{AUDIO_GROUP}")
    if step.dash_manifest is not None:
        await label_dash_audio(step.dash_manifest, plan.audio_tracks)
    notes = await _finalize_ladder(step)
    if step.hls_master is not None:
        await add_hls_text_renditions(step.hls_master, plan.text_tracks)
    if step.dash_manifest is not None:
        await add_dash_text_sets(step.dash_manifest, plan.text_tracks)
    return notes


async def _finalize_ladder(step: LadderPackaging) -> list[str]:
    notes: list[str] = []
    if step.dash_manifest is not None:
        notes += await correct_mpd_codecs(step.dash_manifest)
        await asyncio.to_thread(measure_mpd_bandwidth, step.dash_manifest)
        await asyncio.to_thread(end_after_the_media, step.dash_manifest)
    if step.hls_master is not None:
        if step.dash_manifest is not None:
            # CMAF: the dash muxer's HLS playlists lack what a VOD playlist says about itself.
            await tidy_cmaf_media_playlists(step.hls_master.parent)
        notes += await rewrite_hls_master(step.hls_master)
    return notes
