"""The server's log lines on stderr: one formatter for every logger (text for people, or one JSON
object per line with --log-format json), and the access log.

The access log (logger `scratchnet.access`) is an Observer of the data plane: one line per
inference call it answered or refused (ModelInfer, Predict, HTTP infer and their streams; not
metadata or health calls, which probes repeat every few seconds), with the API, method, model,
version, items, the items of the model run the request was part of, the status, the durations
and, for a refused call, the reason its client was given: refused before a model was found (an
unknown model, a request that does not decode, a server shutting down), model and version are
empty. Never payloads, never metadata (so never tokens). Every line is INFO, so
`--log-level warning` silences it; text lines are logfmt (`key=value`), JSON lines carry the
same keys as typed fields.
"""

from __future__ import annotations

import datetime
import functools
import json
import logging
import re
import sys
import time
from dataclasses import dataclass
from typing import Any

from scratchnet.errors import one_line
from scratchnet.status import STATUS
from server.dataplane import Outcome

__all__ = [
    "ACCESS_LOGGER",
    "AccessEntry",
    "AccessLog",
    "JsonFormatter",
    "TextFormatter",
    "collect_only_what_is_printed",
    "configure",
    "status_code",
]

ACCESS_LOGGER = "scratchnet.access"
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The data plane's status strings (Outcome.status) as the canonical code names both transports
# share: "InvalidArgument" -> "INVALID_ARGUMENT".
_CODES = {
    "OK": "OK",
    "Cancelled": "CANCELLED",
    "Internal": "INTERNAL",
    **{kind.__name__: status.grpc.name for kind, status in STATUS.items()},
}
_NS_PER_MS = 1e6
# A logfmt value that needs no quotes: no whitespace, quote, equals sign, backslash or control.
_PLAIN = re.compile(r'[^\s"=\\\x00-\x1f\x7f]+')


def status_code(status: str) -> str:
    """An Outcome's status as a code name: "OK", "INVALID_ARGUMENT", "CANCELLED", ..."""
    return _CODES.get(status, status.upper())


@dataclass(slots=True)  # not frozen: one is built per request, frozen costs 3x
class AccessEntry:
    """What the access log says of one request: a logfmt line as text, typed fields as JSON."""

    api: str
    method: str
    model: str
    version: str
    status: str
    items: int
    batch_items: int
    duration_ms: float
    queue_ms: float
    compute_ms: float
    reason: str = ""
    """Why a refused request was refused (what its client was told); "" for a successful one."""

    @classmethod
    def of(cls, outcome: Outcome) -> AccessEntry:
        """The entry of one request the data plane answered or refused."""
        timing = outcome.timing
        compute = timing.compute_input + timing.compute_infer + timing.compute_output
        return cls(
            outcome.api,
            outcome.method,
            outcome.model,
            outcome.version,
            status_code(outcome.status),
            outcome.items,
            outcome.batch_items,
            timing.total / _NS_PER_MS,
            timing.queue / _NS_PER_MS,
            compute / _NS_PER_MS,
            outcome.reason if outcome.status != "OK" else "",
        )

    def fields(self) -> dict[str, Any]:
        """The entry by key, durations in milliseconds to the microsecond; the reason only for
        a refused request."""
        fields: dict[str, Any] = {
            "api": self.api,
            "method": self.method,
            "model": self.model,
            "version": self.version,
            "status": self.status,
            "items": self.items,
            "batch_items": self.batch_items,
            "duration_ms": round(self.duration_ms, 3),
            "queue_ms": round(self.queue_ms, 3),
            "compute_ms": round(self.compute_ms, 3),
        }
        if self.status != "OK":
            fields["reason"] = self.reason
        return fields

    def __str__(self) -> str:
        line = (
            f"api={_quoted(self.api)} method={_quoted(self.method)} model={_quoted(self.model)} "
            f"version={_quoted(self.version)} "
            f"status={self.status} items={self.items} batch_items={self.batch_items} "
            f"duration_ms={self.duration_ms:.3f} queue_ms={self.queue_ms:.3f} "
            f"compute_ms={self.compute_ms:.3f}"
        )
        if self.status != "OK":
            # Always quoted: a client's words in it must never start a line of their own.
            line += f" reason={json.dumps(self.reason)}"
        return line


@functools.lru_cache(maxsize=1024)  # the same few API, method and model names, line after line
def _quoted(text: str) -> str:
    """`text` as a logfmt value: as is when plain, else in JSON quotes (escaped)."""
    return text if _PLAIN.fullmatch(text) else json.dumps(text)


class AccessLog:
    """Logs every request the data plane answered or refused, at INFO (an Observer)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or logging.getLogger(ACCESS_LOGGER)

    def observe(self, outcome: Outcome) -> None:
        """Log one request (nothing to do when INFO is off: the check comes first)."""
        if self._log.isEnabledFor(logging.INFO):
            self._log.info(AccessEntry.of(outcome))


class TextFormatter(logging.Formatter):
    """Text lines, each record's message on its line: line breaks and other control characters
    in it are escaped, since a message may quote a client's words (a model name in a load
    request) and those must never start a line that looks like another record. A traceback
    still follows on lines of its own."""

    _second = -1
    _stamp = ""

    def formatMessage(self, record: logging.LogRecord) -> str:
        """The line, escaped where it needs to be."""
        return one_line(super().formatMessage(record))

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """logging's own time stamp, its date and time made once a second: the access log
        writes a line per call, and strftime was a tenth of the line's cost."""
        if datefmt is not None or self.default_msec_format is None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._stamp = time.strftime(self.default_time_format, self.converter(second))
            self._second = second
        return self.default_msec_format % (self._stamp, record.msecs)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, an access line's
    fields, and a traceback as one string (so that it stays on the record's line)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        moment = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        entry: dict[str, Any] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if isinstance(record.msg, AccessEntry):
            entry.update(record.msg.fields())
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


def configure(level: str, log_format: str = "text") -> None:
    """Log to stderr at `level` with every logger's records in `log_format` (text or json)."""
    handler = logging.StreamHandler(sys.stderr)
    json_lines = log_format == "json"
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter(_TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    # Python's warnings go to stderr on their own; in JSON they must be records like the rest.
    logging.captureWarnings(json_lines)


def collect_only_what_is_printed() -> None:
    """Keep the logging module from collecting what no line of the server prints: where each
    record was made (a walk up the stack), its thread and its process (the "Optimization" of
    Python's logging HOWTO): about 15k of an access line's instructions, 125k at the time
    (bench/instructions.py). Process-wide: for the server's own process."""
    logging._srcfile = None  # the HOWTO's own advice; the attribute is the documented switch
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
