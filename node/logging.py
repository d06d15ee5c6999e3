"""Structured logging: one line per event, `text` (key=value) or `json` (DESIGN §7).

Code logs an *event* (a short constant message) plus fields, so lines are greppable and machine
parseable:

    log = get_logger("p2p")
    log.info("peer connected", peer=node_id, addr="1.2.3.4:26656")

text:  2026-11-21T18:00:00.123Z INFO  p2p: peer connected peer=ab12.. addr=1.2.3.4:26656
json:  {"ts": "2026-11-21T18:00:00.123Z", "level": "info", "logger": "p2p", "event": "peer connected", ...}

Newlines inside messages, fields and tracebacks are escaped so an event can never span lines. Levels
are set per logger with a spec like `info` or `info,p2p=debug,consensus=warning`.
Plain `logging.getLogger(...)` calls elsewhere (libraries, `ledger.storage.keystore`) go through the same
formatter.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from collections.abc import Mapping
from typing import Any, TextIO

LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
FORMATS = ("text", "json")
ROOT = "pocl"  # every project logger lives under this name
FIELDS_ATTR = "pocl_fields"
_HANDLER_MARK = "_pocl_handler"


class LogConfigError(ValueError):
    """Bad level spec or format name."""


def parse_level_spec(spec: str) -> tuple[int, dict[str, int]]:
    """`info,p2p=debug` → (INFO, {"pocl.p2p": DEBUG}). Names are relative to the `pocl` root."""
    default = logging.INFO
    per_logger: dict[str, int] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, sep, level_text = part.rpartition("=")
        level = LEVELS.get(level_text.strip().lower())
        if level is None:
            raise LogConfigError(
                f"unknown log level {level_text.strip()!r} (use one of: debug, info, warning, error, critical)"
            )
        if sep:
            name = name.strip()
            if not name:
                raise LogConfigError(f"empty logger name in log level spec {spec!r}")
            per_logger[name if name.startswith(ROOT) else f"{ROOT}.{name}"] = level
        else:
            default = level
    return default, per_logger


def _timestamp(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


def _short_logger(name: str) -> str:
    return name[len(ROOT) + 1 :] if name.startswith(ROOT + ".") else name


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    return str(value)


def _text_value(value: Any) -> str:
    value = _jsonable(value)
    if isinstance(value, str):
        if value and not any(c in value for c in ' ="\n\r\t\\'):
            return value
        return json.dumps(value)
    return json.dumps(value, separators=(",", ":"))


def _one_line(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")


def _record_fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, FIELDS_ATTR, None)
    return dict(fields) if fields else {}


def _exception_text(record: logging.LogRecord) -> str | None:
    if not record.exc_info or record.exc_info[0] is None:
        return None
    return "".join(traceback.format_exception(*record.exc_info)).rstrip()


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = [
            _timestamp(record.created),
            f"{record.levelname:<5}",
            f"{_short_logger(record.name)}:",
            _one_line(record.getMessage()),
        ]
        parts.extend(f"{k}={_text_value(v)}" for k, v in _record_fields(record).items())
        exc = _exception_text(record)
        if exc:
            parts.append(f"exc={json.dumps(exc)}")
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": _short_logger(record.name),
            "event": record.getMessage(),
        }
        for key, value in _record_fields(record).items():
            doc.setdefault(key, _jsonable(value))
        exc = _exception_text(record)
        if exc:
            doc["exc"] = exc
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def make_formatter(fmt: str) -> logging.Formatter:
    if fmt == "text":
        return TextFormatter()
    if fmt == "json":
        return JsonFormatter()
    raise LogConfigError(f"unknown log format {fmt!r} (use text or json)")


QUIET_LIBRARIES = ("httpx", "httpcore")  # HTTP client libraries: warnings and errors only
FLOOD_INTERVAL_S = 10.0
# Lines a client can make us write at any rate: asyncio's failed accept (EMFILE: it logs once per
# listener backlog slot and retry, 12,000 lines/s were seen), and aiohttp's rejected malformed requests.
FLOOD_PRONE: dict[str, tuple[str, ...]] = {
    "asyncio": ("socket.accept() out of system resource", "Accept failed on"),
    "pocl.rpc.http": ("rejected malformed http request",),
    "pocl.metrics.http": ("rejected malformed http request",),
}
SUPPRESSED_FIELD = "suppressed"


class RateLimitFilter(logging.Filter):
    """Lets one record per `interval_s` through for each of `prefixes` (the start of the message); the
    next one that passes carries `suppressed=N`, the number dropped since. Other records pass."""

    def __init__(self, prefixes: tuple[str, ...], interval_s: float = FLOOD_INTERVAL_S) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        prefix = next((p for p in self.prefixes if message.startswith(p)), None)
        if prefix is None:
            return True
        now = time.monotonic()
        last = self._last.get(prefix)
        if last is not None and now - last < self.interval_s:
            self._suppressed[prefix] = self._suppressed.get(prefix, 0) + 1
            return False
        self._last[prefix] = now
        dropped = self._suppressed.pop(prefix, 0)
        if dropped:
            setattr(record, FIELDS_ATTR, {**_record_fields(record), SUPPRESSED_FIELD: dropped})
        return True


def _install_flood_filters(interval_s: float = FLOOD_INTERVAL_S) -> None:
    for name, prefixes in FLOOD_PRONE.items():
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, RateLimitFilter)]:
            logger.removeFilter(old)
        logger.addFilter(RateLimitFilter(prefixes, interval_s))


def setup_logging(level: str = "info", fmt: str = "text", stream: TextIO | None = None) -> None:
    """(Re)configure the root logger: one handler writing one line per event to `stream` (stderr)."""
    default, per_logger = parse_level_spec(level)
    formatter = make_formatter(fmt)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    setattr(handler, _HANDLER_MARK, True)
    handler.setFormatter(formatter)
    root.addHandler(handler)
    root.setLevel(default)
    logging.getLogger(ROOT).setLevel(logging.NOTSET)
    for name in QUIET_LIBRARIES:  # one INFO line per HTTP request is noise, not an event of the node
        logging.getLogger(name).setLevel(logging.WARNING)
    for name, lvl in per_logger.items():
        logging.getLogger(name).setLevel(lvl)
    _install_flood_filters()
    logging.captureWarnings(True)


class EventLogger:
    """Thin wrapper: `log.info("event", key=value, ...)` puts the keywords into the record's fields."""

    def __init__(self, logger: logging.Logger, fields: Mapping[str, Any] | None = None) -> None:
        self.logger = logger
        self._fields = dict(fields or {})

    def bind(self, **fields: Any) -> EventLogger:
        """A logger that adds `fields` to every event (e.g. peer=..., height=...)."""
        return EventLogger(self.logger, {**self._fields, **fields})

    def log(self, level: int, event: str, *, exc_info: Any = None, **fields: Any) -> None:
        if self.logger.isEnabledFor(level):
            self.logger.log(
                level, event, exc_info=exc_info, extra={FIELDS_ATTR: {**self._fields, **fields}}, stacklevel=3
            )

    def debug(self, event: str, **fields: Any) -> None:
        self.log(logging.DEBUG, event, **fields)

    def info(self, event: str, **fields: Any) -> None:
        self.log(logging.INFO, event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self.log(logging.WARNING, event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self.log(logging.ERROR, event, **fields)

    def exception(self, event: str, **fields: Any) -> None:
        """An ERROR event with the current exception's traceback (escaped onto the same line)."""
        self.log(logging.ERROR, event, exc_info=True, **fields)


def get_logger(name: str, **fields: Any) -> EventLogger:
    """The event logger `pocl.<name>`."""
    full = name if name == ROOT or name.startswith(ROOT + ".") else f"{ROOT}.{name}"
    return EventLogger(logging.getLogger(full), fields)
