"""Logging for the coordinator service: readable text, or JSON lines for a log collector.

JSON lines carry ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``msg``, any ``extra=`` fields
the caller passed, and ``exc`` with the traceback when there is one: one object per line, so
``journalctl -o cat -u peergrid-coordinator | jq`` reads them.
"""

from __future__ import annotations

import datetime
import json
import logging

from coordinator.errors import CoordinatorError

FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warning", "error")
TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# attributes every LogRecord has: anything else was passed with ``extra=``
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in vars(record).items():
            if k not in _STANDARD and k not in out:
                out[k] = v if isinstance(v, str | int | float | bool | type(None)) else repr(v)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, separators=(",", ":"))


def setup(fmt: str = "text", level: str = "info") -> None:
    """Configure the root logger (replacing earlier handlers) to write to stderr."""
    if fmt not in FORMATS:
        raise CoordinatorError(f"log format {fmt!r} is not one of {', '.join(FORMATS)}")
    if level not in LEVELS:
        raise CoordinatorError(f"log level {level!r} is not one of {', '.join(LEVELS)}")
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLines() if fmt == "json" else logging.Formatter(TEXT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
