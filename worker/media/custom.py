"""Custom FFmpeg commands: checked again, then turned into a CommandPlan like any other output.

The server refused anything outside the allowlist at Create; this check is the second line,
for a job stored before a rule changed or a task that never went through Create. Nothing
runs unless `check_custom_args` finds no problem, and the plan it makes confines the run:
the worker's own flags (`-y`, `-progress pipe:1`), the input behind the worker's
`-protocol_whitelist` (InputAccess.apply), the output a file of the task's scratch folder,
that folder as the working directory and a CPU-time limit (`cpu_limited`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from kiln.v1 import job_pb2

from common.custom_command import INPUT, check_custom_args, covered_seconds, describe
from common.custom_command_allowlist import MUXERS_BY_TYPE
from worker.media.containers import AUDIO_CONTAINERS, PROGRESSIVE_CONTAINERS
from worker.media.errors import INPUT_ZERO_DURATION, UNSUPPORTED_COMMAND, MediaError
from worker.media.plan import COMMON_FLAGS, CommandPlan

OutputType = job_pb2.OutputType


def build_custom_command(
    *,
    input_path: str,
    spec: job_pb2.OutputSpec,
    info: job_pb2.InputInfo,
    out_dir: Path,
    ffmpeg: str = "ffmpeg",
    extra_inputs: Sequence[object] = (),
) -> CommandPlan:
    """The plan for `spec.custom.args`, or MediaError(UNSUPPORTED_COMMAND) naming the first
    argument the allowlist refuses. Starts nothing and touches no file."""
    if extra_inputs:
        raise MediaError(UNSUPPORTED_COMMAND, "a custom command reads the job's one input")
    type_name = OutputType.Name(spec.type).removeprefix("OUTPUT_TYPE_")
    args = list(spec.custom.args)
    violations = check_custom_args(args, type_name)
    if violations:
        raise MediaError(UNSUPPORTED_COMMAND, describe(violations))
    container = PROGRESSIVE_CONTAINERS.get(spec.type) or AUDIO_CONTAINERS.get(spec.type)
    if container is None or type_name not in MUXERS_BY_TYPE:
        raise MediaError(UNSUPPORTED_COMMAND, f"custom commands cannot make {type_name} outputs")
    duration = covered_seconds(args, info.duration_seconds)
    if duration <= 0:
        raise MediaError(INPUT_ZERO_DURATION, "the command covers none of the input")

    output = out_dir / container.file_name
    body = [input_path if argument == INPUT else argument for argument in args[:-1]]
    if "-f" not in body:
        body += ["-f", MUXERS_BY_TYPE[type_name][0]]
    return CommandPlan(
        argv=[ffmpeg, *COMMON_FLAGS, *body, str(output)],
        outputs=[output],
        expected_duration=duration,
        cwd=out_dir,
        cpu_limited=True,
    )
