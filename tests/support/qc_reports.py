"""Quality-control reports as a played worker sends them (the server judges them again)."""

from __future__ import annotations

from kiln.v1 import job_pb2

QC_JSON = "qc.json"
QC_JSON_SIZE = 64


def measured_qc(seconds: float, **values: float) -> job_pb2.QcReport:
    """A report of the two checks every output has (duration, no decode errors) and any
    others given by name, every verdict claimed PASS: the server must not believe it."""
    checks = {"duration": seconds, "decode": 0.0, **values}
    return job_pb2.QcReport(
        verdict=job_pb2.QC_VERDICT_PASS,
        checks=[
            job_pb2.QcCheck(name=name, value=value, verdict=job_pb2.QC_VERDICT_PASS)
            for name, value in checks.items()
        ],
    )


def qc_file() -> job_pb2.OutputFile:
    return job_pb2.OutputFile(path=QC_JSON, size_bytes=QC_JSON_SIZE, mime_type="application/json")
