"""`kiln jobs ...`: create, plan, get, list, watch, cancel, retry, confirm, delete-outputs,
download."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from kiln.v1 import job_pb2, job_service_pb2

from . import download as downloads
from .client import JOB_SERVICE, ApiError, Client, parse
from .common import (
    DEFAULT_URL,
    EXIT_CODES_HELP,
    EXIT_JOB_NOT_COMPLETED,
    ApiKeyOption,
    JsonOption,
    UrlOption,
    client_command,
    connect,
    json_line,
    print_json,
    stderr,
    stdout,
)
from .job_display import show_job, show_job_page
from .plan_display import show_plan
from .specs import SHORTHAND_HELP, SpecError, load_spec, parse_metadata, parse_output
from .specs import parse_priority as priority_value
from .specs import parse_qc_policy as qc_policy_value
from .watching import JsonLines, LiveBoard, follow, short_enum, status_name

app = typer.Typer(
    help=f"Create, inspect, steer, watch and download jobs. {EXIT_CODES_HELP}",
    no_args_is_help=True,
)

JobId = Annotated[str, typer.Argument(help="The job id (job_...).")]


def _job_call(
    url: str, api_key: str | None, method: str, request: Any, answer: Any, as_json: bool
) -> Any:
    with connect(url, api_key) as client:
        payload = client.call(JOB_SERVICE, method, request)
    if as_json:
        print_json(payload)
    response = parse(payload, answer)
    if not as_json and response.HasField("job"):
        show_job(response.job)
    return response


def watch_job(client: Client, job_id: str, as_json: bool) -> None:
    """Follow a job to its end; exits 3 unless it COMPLETED."""
    if as_json:

        def retrying(reason: str, last: int | None, attempt: int) -> None:
            stderr.print(
                f"kiln: watch interrupted ({reason}); resuming after sequence {last} "
                f"(attempt {attempt})",
                markup=False,
            )

        job = follow(client, job_id, JsonLines(), on_retry=retrying)
    else:
        with LiveBoard(stdout) as board:

            def note_retry(reason: str, last: int | None, attempt: int) -> None:
                board.note(f"watch interrupted ({reason}); resuming (attempt {attempt})")

            job = follow(client, job_id, board, on_retry=note_retry)
        show_job(job)
    if job.status != job_pb2.JOB_STATUS_COMPLETED:
        reason = f": {job.error.code}: {job.error.message}" if job.error.code else ""
        stderr.print(
            f"kiln: job {job.id} ended {status_name(job.status).upper()}{reason}", markup=False
        )
        raise typer.Exit(EXIT_JOB_NOT_COMPLETED)


@app.command()
@client_command
def create(
    input_url: Annotated[
        str | None, typer.Option("--input", help="file://, http(s):// or gs:// URL of the input.")
    ] = None,
    input_origin_id: Annotated[
        str | None,
        typer.Option(
            "--input-origin-id", "--input-origin", help="Read the input from this origin (ori_...)."
        ),
    ] = None,
    input_path: Annotated[
        str | None,
        typer.Option("--input-path", help="With --input-origin-id: the input's path there."),
    ] = None,
    output_origin_id: Annotated[
        str | None,
        typer.Option("--output-origin-id", help="Write the outputs to this origin (ori_...)."),
    ] = None,
    output_path_prefix: Annotated[
        str | None,
        typer.Option(
            "--output-path-prefix", help="A path under the output origin's prefix for this job."
        ),
    ] = None,
    output: Annotated[
        list[str] | None, typer.Option("--output", "-o", help=f"An output: {SHORTHAND_HELP}.")
    ] = None,
    preset: Annotated[
        list[str] | None,
        typer.Option("--preset", "-p", help="An output from a preset (pst_... or a system slug)."),
    ] = None,
    priority: Annotated[
        str | None, typer.Option(help="economy, standard (the default) or premium.")
    ] = None,
    delayed_start: Annotated[
        bool, typer.Option("--delayed-start", help="Wait for `kiln jobs confirm` after probing.")
    ] = False,
    qc_policy: Annotated[
        str | None,
        typer.Option(
            "--qc-policy", help="report (the default) or fail: a failed QC check fails its output."
        ),
    ] = None,
    metadata: Annotated[
        list[str] | None, typer.Option("--metadata", "-m", help="KEY=VALUE (repeatable).")
    ] = None,
    webhook_url: Annotated[
        str | None, typer.Option("--webhook-url", help="Receives terminal-state webhooks.")
    ] = None,
    idempotency_key: Annotated[
        str | None, typer.Option("--idempotency-key", help="Repeating it returns the first job.")
    ] = None,
    spec: Annotated[
        Path | None,
        typer.Option(
            "--spec",
            help="A CreateRequest as JSON or YAML (Connect JSON field names); "
            "flags given as well are added to it.",
        ),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Follow the job like `jobs watch` until it ends.")
    ] = False,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a job from flags or a spec file.

    kiln jobs create --input file:///videos/in.mp4 -o mp4:h264:720p -o hls:h264:1080p,720p --wait
    """
    request = (
        load_spec(spec, job_service_pb2.CreateRequest) if spec else job_service_pb2.CreateRequest()
    )
    if input_url:
        request.input_url = input_url
    if input_origin_id:
        request.input_origin_id = input_origin_id
    if input_path:
        request.input_path = input_path
    if output_origin_id:
        request.output_origin_id = output_origin_id
    if output_path_prefix:
        request.output_path_prefix = output_path_prefix
    for shorthand in output or []:
        request.outputs.append(parse_output(shorthand))
    for reference in preset or []:
        request.outputs.append(job_pb2.OutputSpec(preset=reference))
    if priority:
        request.priority = priority_value(priority)
    if delayed_start:
        request.delayed_start = True
    if qc_policy:
        request.qc_policy = qc_policy_value(qc_policy)
    request.metadata.update(parse_metadata(metadata or []))
    if webhook_url:
        request.webhook_url = webhook_url
    if idempotency_key:
        request.idempotency_key = idempotency_key
    if not request.input_url and not request.input_origin_id:
        raise SpecError(
            "no input: pass --input URL or --input-origin-id ID --input-path PATH "
            "(or input_url or input_origin_id in --spec)"
        )
    if not request.outputs:
        raise SpecError("no outputs: pass --output, --preset or a --spec with outputs")
    with connect(url, api_key) as client:
        payload = client.call(JOB_SERVICE, "Create", request)
        job = parse(payload, job_service_pb2.CreateResponse).job
        if as_json and wait:
            # With --wait the answer is the first of the JSON lines the events follow.
            json_line(payload)
        elif as_json:
            print_json(payload)
        elif wait:
            stdout.print(f"created {job.id}")
        else:
            show_job(job)
        if wait:
            watch_job(client, job.id, as_json)


@app.command()
@client_command
def plan(
    spec: Annotated[
        Path,
        typer.Option(
            "--spec", help="The CreateRequest to explain, as JSON or YAML (as `jobs create`)."
        ),
    ],
    input_facts: Annotated[
        Path | None,
        typer.Option(
            "--input-facts",
            help="What probing the input finds, an InputInfo as JSON or YAML (a job's "
            "inputInfo); without it the plan assumes a 60 s 1080p30 input with stereo audio.",
        ),
    ] = None,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Explain a spec without running it: the tasks kiln would queue, each FFmpeg argument
    list and the estimated cost. Nothing is created.

    kiln jobs plan --spec job.yaml
    """
    request = job_service_pb2.PlanJobRequest(request=load_spec(spec, job_service_pb2.CreateRequest))
    if input_facts:
        request.input.CopyFrom(load_spec(input_facts, job_pb2.InputInfo))
    with connect(url, api_key) as client:
        payload = client.call(JOB_SERVICE, "PlanJob", request)
    if as_json:
        print_json(payload)
        return
    show_plan(parse(payload, job_service_pb2.PlanJobResponse))


@app.command()
@client_command
def get(
    job_id: JobId,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one job, its outputs and their files."""
    _job_call(
        url,
        api_key,
        "Get",
        job_service_pb2.GetRequest(id=job_id),
        job_service_pb2.GetResponse,
        as_json,
    )


@app.command("list")
@client_command
def list_jobs(
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status", "-s", help="Only jobs in this status (repeatable): completed, failed, ..."
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=100, help="Page size.")] = 20,
    page_token: Annotated[
        str | None, typer.Option("--page-token", help="next_page_token of a previous page.")
    ] = None,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the organization's jobs, newest first."""
    request = job_service_pb2.ListRequest(page_size=limit, page_token=page_token or "")
    for name in status or []:
        key = "JOB_STATUS_" + name.upper().replace("-", "_")
        if key not in job_pb2.JobStatus.keys()[1:]:
            names = ", ".join(
                n.removeprefix("JOB_STATUS_").lower() for n in job_pb2.JobStatus.keys()[1:]
            )
            raise SpecError(f"--status {name!r}: one of {names}")
        request.statuses.append(job_pb2.JobStatus.Value(key))
    with connect(url, api_key) as client:
        payload = client.call(JOB_SERVICE, "List", request)
    if as_json:
        print_json(payload)
        return
    show_job_page(parse(payload, job_service_pb2.ListResponse))


@app.command()
@client_command
def watch(
    job_id: JobId,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Follow a job live (progress per output, stage, speed, ETA) until it ends; resumes
    after a dropped connection or a server restart. Exits 0 only when it COMPLETED."""
    with connect(url, api_key) as client:
        watch_job(client, job_id, as_json)


def _simple(method: str, request_type: Any, response_type: Any, doc: str) -> None:
    def command(
        job_id: JobId,
        url: UrlOption = DEFAULT_URL,
        api_key: ApiKeyOption = None,
        as_json: JsonOption = False,
    ) -> None:
        response = _job_call(url, api_key, method, request_type(id=job_id), response_type, as_json)
        if method == "DeleteOutputs" and not as_json:
            stdout.print(f"deleted {response.deleted_files} files")

    command.__doc__ = doc
    name = "delete-outputs" if method == "DeleteOutputs" else method.lower()
    app.command(name)(client_command(command))


_simple(
    "Cancel",
    job_service_pb2.CancelRequest,
    job_service_pb2.CancelResponse,
    "Cancel a job that has not ended; completed outputs stay.",
)
_simple(
    "Retry",
    job_service_pb2.RetryRequest,
    job_service_pb2.RetryResponse,
    "Run a FAILED, REJECTED, CANCELED or PARTIAL job again.",
)
_simple(
    "Confirm",
    job_service_pb2.ConfirmRequest,
    job_service_pb2.ConfirmResponse,
    "Start a --delayed-start job waiting in AWAITING_CONFIRMATION.",
)
_simple(
    "DeleteOutputs",
    job_service_pb2.DeleteOutputsRequest,
    job_service_pb2.DeleteOutputsResponse,
    "Delete a job's stored output files (the job record stays).",
)


# --ttl: a number of seconds, or with a unit (90s, 10m, 2h).
_TTL = re.compile(r"(?P<number>[0-9]+)(?P<unit>[smh]?)")
_TTL_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600}


def _ttl_seconds(text: str) -> int:
    found = _TTL.fullmatch(text.strip())
    if found is None:
        raise SpecError(f"--ttl {text!r}: a number of seconds, or with s, m or h (10m)")
    return int(found["number"]) * _TTL_UNITS[found["unit"]]


@app.command("play")
@client_command
def play(
    job_id: JobId,
    output_id: Annotated[
        str | None, typer.Option("--output", help="Only this output (out_...).")
    ] = None,
    ttl: Annotated[
        str | None,
        typer.Option(
            "--ttl",
            help="How long an encrypted output's key token lasts (90s, 10m, 2h); "
            "the server's default (KILN_KEY_TOKEN_TTL_SECONDS) when unset.",
        ),
    ] = None,
    open_page: Annotated[
        bool,
        typer.Option(
            "--open", help="Also open the job's dashboard page (it plays every output) here."
        ),
    ] = False,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print each output's playback URL: the one URL any player opens (HLS master, MPD, or
    the file), e.g. `ffplay "$(kiln jobs play latest | head -1 | cut -f3)"`. An encrypted
    output's URL carries a key token (CreatePlaybackGrant) that expires after --ttl. JOB_ID
    may be `latest`: the organization's newest job."""
    request = job_service_pb2.CreatePlaybackGrantRequest(output_id=output_id or "")
    if ttl is not None:
        request.ttl.seconds = _ttl_seconds(ttl)
    with connect(url, api_key) as client:
        if job_id == "latest":
            newest = parse(
                client.call(JOB_SERVICE, "List", job_service_pb2.ListRequest(page_size=1)),
                job_service_pb2.ListResponse,
            ).jobs
            if not newest:
                raise ApiError("not_found", "the organization has no jobs yet")
            job_id = newest[0].id
        job = parse(
            client.call(JOB_SERVICE, "Get", job_service_pb2.GetRequest(id=job_id)),
            job_service_pb2.GetResponse,
        ).job
        request.id = job.id
        grants = parse(
            client.call(JOB_SERVICE, "CreatePlaybackGrant", request),
            job_service_pb2.CreatePlaybackGrantResponse,
        ).grants
        page = f"{client.base_url}/ui/#/jobs/{job.id}"
    outputs = {output.id: output for output in job.outputs}
    links = [_play_link(grant, outputs[grant.output_id]) for grant in grants]
    if as_json:
        print_json({"job_id": job.id, "outputs": links, "dashboard": page})
    else:
        # Tab-separated, one output a line: easy to cut, and long URLs are never wrapped.
        for link in links:
            print(f"{link['output_id']}\t{link['type']}\t{link['playback_url']}")
        if not links:
            stdout.print(f"{job.id} has no playable output yet ({status_name(job.status)})")
    if open_page:
        import webbrowser

        if not webbrowser.open(page):
            stderr.print(f"no browser to open here; the dashboard page is {page}", markup=False)


def _play_link(grant: job_service_pb2.PlaybackGrant, output: job_pb2.Output) -> dict[str, Any]:
    link: dict[str, Any] = {
        "output_id": grant.output_id,
        "type": short_enum(job_pb2.OutputType, output.spec.type, "OUTPUT_TYPE_"),
        "playback_url": grant.playback_url,
        "playback_base_url": output.playback_base_url,
    }
    if grant.key_token:
        link["key_token_expire_time"] = grant.key_token_expire_time.ToJsonString()
        link["key_url_prefix"] = grant.key_url_prefix
        if grant.clearkey_license_url:
            link["clearkey_license_url"] = grant.clearkey_license_url
    return link


@app.command("download")
@client_command
def download_outputs(
    job_id: JobId,
    directory: Annotated[
        Path, typer.Option("--dir", "-d", help="Folder to write DIR/<output_id>/<path> into.")
    ] = Path("."),
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Download every file of every output into DIR/<output_id>/<path>."""
    with connect(url, api_key) as client:
        job = parse(
            client.call(JOB_SERVICE, "Get", job_service_pb2.GetRequest(id=job_id)),
            job_service_pb2.GetResponse,
        ).job
        planned = downloads.plan(job, directory)
        written: list[dict[str, Any]] = []
        for file, destination, output_id in planned:
            try:
                size = downloads.fetch(client.http, client.base_url, file, destination)
            except httpx.HTTPError as error:
                raise ApiError("unavailable", f"downloading {file.path}: {error}") from error
            written.append(
                {"output_id": output_id, "path": file.path, "file": str(destination), "size": size}
            )
            if not as_json:
                stdout.print(f"{destination}  {size} bytes", markup=False)
    if as_json:
        print_json({"job_id": job.id, "files": written})
    elif not written:
        stdout.print(f"{job.id} has no output files ({status_name(job.status)})")
