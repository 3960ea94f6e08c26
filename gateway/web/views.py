"""The API's answers, built as the response models (gateway/schemas.py) from what the services
and the store return, and serialised in one way."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from gateway import schemas
from gateway.models import NotebookOutcome
from gateway.records import JobRecord, LogLine
from gateway.services.health import CheckResult


def dump(model: BaseModel) -> dict[str, Any]:
    """A model as JSON: under its aliases, without what was never set (optional parts of an
    answer that do not apply are left out rather than null)."""
    return model.model_dump(mode="json", by_alias=True, exclude_unset=True)


def answer(
    model: BaseModel, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.json_response(dump(model), status=status, headers=headers)


def job(record: JobRecord, url: str, log: Sequence[LogLine] | None = None) -> schemas.Job:
    extra: dict[str, Any] = {}
    if record.params:
        extra["params"] = record.params
    if record.result:
        extra["result"] = record.result
    if log is not None:
        extra["log"] = [log_entry(line) for line in log]
    error = record.error
    return schemas.Job(
        id=record.id,
        project=record.project,
        action=record.action,
        origin=record.origin,
        state=record.state,
        commit=record.commit,
        created=record.created_at,
        started=record.started_at,
        finished=record.finished_at,
        notebooks=[notebook(o) for o in record.notebooks],
        error=schemas.JobError(
            code=error.code, status=error.status, message=error.message, detail=error.detail
        )
        if error
        else None,
        covered_by=record.covered_by,
        parent=record.parent,
        url=url,
        **extra,
    )


def notebook(outcome: NotebookOutcome) -> schemas.NotebookResult:
    return schemas.NotebookResult(
        name=outcome.path,
        project=outcome.project,
        url=outcome.url,
        state=outcome.state,
        action=outcome.action,
        image=outcome.image,
        commit=outcome.commit,
        reason=outcome.reason or None,
        message=outcome.message or None,
        log=outcome.log,
    )


def log_entry(line: LogLine) -> schemas.LogEntry:
    event = line.event
    return schemas.LogEntry(
        seq=line.seq or 0,
        at=line.at,
        phase=event.phase.value,
        notebook=event.notebook,
        message=event.message,
        output=event.output,
    )


def health(checks: Mapping[str, CheckResult]) -> schemas.Health:
    ok = all(result.ok for result in checks.values())
    return schemas.Health(
        status="ok" if ok else "unavailable",
        checks={
            name: schemas.HealthCheck(
                ok=result.ok, message=result.message, seconds=round(result.seconds, 3)
            )
            for name, result in checks.items()
        },
    )
