"""One log format for every pipeline process: logfmt lines that carry the upload, song and step.

`bind(...)` sets fields for the current task; every line logged meanwhile, the pipeline's and
Celery's own, carries them, so `grep upload=<id>` gives an upload's whole story.
"""

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

_fields: ContextVar[dict[str, Any] | None] = ContextVar("pipeline_log_fields", default=None)
_ORDER = ("task", "task_id", "upload", "song", "step")


@contextlib.contextmanager
def bind(**fields: Any) -> Iterator[None]:
    token = _fields.set({**(_fields.get() or {}), **fields})
    try:
        yield
    finally:
        _fields.reset(token)


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "process": record.processName,
            "logger": record.name,
        }
        fields |= _task_fields()
        fields |= _fields.get() or {}
        fields["msg"] = record.getMessage()
        line = " ".join(f"{key}={_quote(value)}" for key, value in _ordered(fields) if value is not None)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _task_fields() -> dict[str, Any]:
    from celery import current_task  # a proxy: falsy, or raising on .request, outside a task

    try:
        request = current_task.request
    except AttributeError:
        return {}
    if not current_task or request.id is None:
        return {}
    return {"task": current_task.name, "task_id": request.id}


def _ordered(fields: dict[str, Any]) -> list[tuple[str, Any]]:
    head = [(k, fields[k]) for k in ("time", "level", "process", "logger", *_ORDER) if k in fields]
    return head + [(k, v) for k, v in fields.items() if k not in dict(head)]


def _quote(value: Any) -> str:
    text = str(value)
    if text and not any(ch in text for ch in ' "=\n'):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def configure(level: str | int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    logging.getLogger("botocore").setLevel(logging.WARNING)
