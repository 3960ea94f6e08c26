"""The process log: every line masked, and tagged with the request or job it belongs to, as
text or as JSON lines (LOG_FORMAT=json) for a log collector."""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime

from gateway.redact import RedactingFilter, Redactor

# Set by the request middleware and by the job runner; asyncio tasks inherit them.
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
job_id: ContextVar[str | None] = ContextVar("job_id", default=None)


class ContextFilter(logging.Filter):
    """Copies the current request and job ids onto every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        ids = {"request": request_id.get(), "job": job_id.get()}
        record.__dict__.update(request_id=ids["request"], job_id=ids["job"])
        tags = " ".join(f"{key}={value}" for key, value in ids.items() if value)
        record.__dict__["context"] = f" [{tags}]" if tags else ""
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
            "job_id": getattr(record, "job_id", None),
        }
        if record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(context)s: %(message)s"


def configure_logging(level: str, redact: Redactor, fmt: str = "text") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    # Masking first: the JSON formatter reads the message the redactor has rewritten.
    handler.addFilter(RedactingFilter(redact))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
