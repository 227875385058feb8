"""setup_logging(): the only place handlers and formats are set.

One line per event; JSON when stderr is not a terminal, readable text when it is. The bot token is
redacted from every record (python-telegram-bot and httpx put it in URLs), and the chatty
`httpx`/`telegram` loggers are held at WARNING.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from datetime import UTC, datetime
from types import TracebackType
from typing import IO, Any

_TOKEN_RE = re.compile(r"\d{5,12}:[A-Za-z0-9_-]{30,}")
# Credentials in URLs (agency feeds with basic auth or an API key), as feed URLs appear in log lines
_URL_USER_RE = re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+@")
_URL_SECRET_RE = re.compile(r"([?&](?:api[_-]?key|key|token|access_token|auth|password|passwd|pass|secret|sig|"
                            r"signature)=)[^&#\s\"']+", re.IGNORECASE)


class RedactingFilter(logging.Filter):
    """Replaces the token (and anything shaped like a bot token) in messages and arguments."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[REDACTED]")
        text = _URL_USER_RE.sub("[REDACTED]@", text)
        text = _URL_SECRET_RE.sub(r"\1[REDACTED]", text)
        return _TOKEN_RE.sub("[REDACTED]", text)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            # A bad format string: logging's own report would print the arguments as they are (a URL with
            # the token). Keep the message and its arguments, redacted, in plain words instead.
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            message = f"{record.msg} (a log call with a bad format string; its arguments: "
            message += ", ".join(map(str, args)) + ")"
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg = self.redact(message)
        record.args = None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


class LibraryNoise(logging.Filter):
    """python-telegram-bot logs some conditions mediabot handles as ERROR with a traceback: a 5xx error page
    (not JSON) from Telegram or a proxy in front of it, which is retried; a failed confirmation poll at
    stop, after which the updates simply come again. One WARNING line each."""

    _REWRITES = (
        ("Can not load invalid JSON data", "telegram answered with something that is not JSON (an error page "
                                           "from Telegram or a proxy?); retrying"),
        ("Error while calling `get_updates` one more time", "telegram: could not confirm the last updates at "
                                                             "stop; they may be fetched again at the next start"),
    )

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("telegram") and record.levelno >= logging.ERROR:
            try:
                message = record.getMessage()
            except (TypeError, ValueError):
                return True
            for start, said in self._REWRITES:
                if message.startswith(start):
                    record.msg, record.args = said, None
                    record.exc_info, record.exc_text = None, None
                    record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (+ exception)."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_text:
            data["exc"] = record.exc_text
        if record.stack_info:
            data["stack"] = record.stack_info
        return json.dumps(data, ensure_ascii=False)


def _install_record_factory(redactor: RedactingFilter) -> None:
    """Redact every record as it is made, so that *any* handler (a library's, a test runner's) only
    ever sees the scrubbed text, not just ours."""
    base = logging.getLogRecordFactory()
    base = getattr(base, "_mediabot_base", base)  # called again: wrap the original, not our wrapper

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = base(*args, **kwargs)
        redactor.filter(record)
        return record

    factory._mediabot_base = base  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def setup_logging(level: str = "INFO", secrets: list[str] | None = None, json_lines: bool | None = None,
                  stream: IO[str] | None = None) -> None:
    """Configure the root logger once; safe to call again (replaces the handler). Logs go to stderr."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_mediabot", False):
            root.removeHandler(handler)
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler._mediabot = True  # type: ignore[attr-defined]
    if json_lines is None:
        json_lines = not stream.isatty()
    handler.setFormatter(
        JsonFormatter() if json_lines else logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                                                             "%H:%M:%S")
    )
    redactor = RedactingFilter(secrets or [])
    handler.addFilter(LibraryNoise())
    handler.addFilter(redactor)
    _install_record_factory(redactor)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "telegram", "apscheduler", "hpack"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    # An uncaught exception would otherwise print a raw traceback (URLs with the token) to stderr.
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is not None:
        name = args.thread.name if args.thread else "?"
        logging.getLogger("mediabot").critical("uncaught exception in thread %s", name,
                                               exc_info=(args.exc_type, args.exc_value, args.exc_traceback))


def _log_uncaught(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, tb)
        return
    logging.getLogger("mediabot").critical("uncaught exception", exc_info=(exc_type, exc, tb))
