"""Environment and YAML -> frozen Settings, FeedSpec and Watchlist values; all validation.

Every problem is reported at once, as `file:line: message`. Nothing here runs at import time.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from bot.errors import ConfigError
from bot.models import FeedSpec

DEFAULT_API_BASE = "https://api.telegram.org/bot"
DEFAULT_USER_AGENT = "mediabot/0.1 (+https://github.com/mediabot/mediabot)"
TERM_MODES = ("fuzzy", "exact", "acronym", "regex")
FIELDS = ("title", "title+lead", "title+summary")
IDENTITIES = ("auto", "guid", "link", "title_link")
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MAX_WATCHLIST_ID = 58  # "unsub:<id>" in a button's callback data, which Telegram caps at 64 bytes
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_CHAT_ID = 2**52  # Telegram: user and chat ids have at most 52 significant bits


def split_addr(addr: str) -> tuple[str, int]:
    """'host:port' or '[v6]:port' → (host, port); an empty host means all interfaces."""
    host, _, port = addr.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


def is_chat_id(value: object) -> bool:
    """A number Telegram could use as a user or chat id (and the store's integer column can hold)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < abs(value) < MAX_CHAT_ID


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True, slots=True)
class Settings:
    """Runtime settings from the environment. `token` is a secret: never log it."""

    token: str | None = field(default=None, repr=False)  # a repr ends up in test output and tracebacks
    api_base_url: str = DEFAULT_API_BASE
    watchlists_dir: Path = Path("watchlists")
    state_dir: Path = Path("state")
    admins: frozenset[int] = frozenset()
    allowed: frozenset[int] = frozenset()  # empty = open bot
    poll_interval: float = 300.0
    poll_min_interval: float = 60.0
    poll_max_interval: float = 3600.0
    timezone: str = "Europe/Berlin"
    language: str = "de"  # chats with no language of their own: channels and groups in `chats:`, the terminal
    recent_window: float = 6 * 3600.0  # a new feed may alert only on items this recent
    burst_cap: int = 20  # a known feed alerting on more new items than this at once is a burst
    dedup_window: float = 48 * 3600.0
    retention_days: int = 30
    http_addr: str | None = None
    log_level: str = "INFO"
    user_agent: str = DEFAULT_USER_AGENT
    max_body_bytes: int = 10 * 1024 * 1024
    fetch_concurrency: int = 50
    per_host_concurrency: int = 4
    digest_threshold: int = 10
    fetch_timeout: float = 60.0  # seconds for one whole feed request (connect + redirects + body)

    @property
    def tz(self) -> ZoneInfo:
        """The display and quiet-hours time zone."""
        return ZoneInfo(self.timezone)

    @property
    def let_in(self) -> frozenset[int] | None:
        """Who may get alerts in a restricted bot (MEDIABOT_ALLOWED_USERS and the admins); None: an open bot."""
        return self.allowed | self.admins if self.allowed else None

    @property
    def db_path(self) -> Path:
        """The SQLite file inside the state directory."""
        return self.state_dir / "mediabot.db"


def parse_duration(value: str) -> float:
    """`90`, `90s`, `15m`, `6h`, `2d`, `1w` -> seconds. Raises ValueError otherwise."""
    m = _DURATION_RE.match(value)
    if not m:
        raise ValueError(f"not a duration: {value!r} (use e.g. 90, 15m, 6h, 2d)")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _ids(value: str, name: str, problems: list[str]) -> frozenset[int]:
    out: set[int] = set()
    for part in value.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            number = int(part)
        except ValueError:
            number = 0
        if is_chat_id(number):
            out.add(number)
        else:
            problems.append(f"environment: {name}: {part!r} is not a numeric Telegram id")
    return frozenset(out)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read settings from the environment; every bad value is reported at once."""
    env = os.environ if env is None else env
    problems: list[str] = []

    def duration(name: str, default: float) -> float:
        raw = env.get(name, "").strip()
        if not raw:
            return default
        try:
            seconds = parse_duration(raw)
        except ValueError as exc:
            problems.append(f"environment: {name}: {exc}")
            return default
        if seconds <= 0:
            problems.append(f"environment: {name}: must be positive")
            return default
        return seconds

    def integer(name: str, default: int, least: int = 1, most: int = 10**12) -> int:
        """A whole number in [least, most]: 0 concurrency hangs every poll, 0 retention days deletes the
        seen keys at each prune so every item alerts again, a 0 burst cap silences every feed."""
        raw = env.get(name, "").strip()
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            problems.append(f"environment: {name}: {raw!r} is not a whole number")
            return default
        if not least <= value <= most:
            problems.append(f"environment: {name}: {value} must be from {least} to {most}")
            return default
        return value

    token = env.get("TELEGRAM_BOT_TOKEN", "").strip() or None
    interval = duration("MEDIABOT_POLL_INTERVAL", 300.0)
    min_interval = duration("MEDIABOT_POLL_MIN_INTERVAL", min(60.0, interval))
    max_interval = duration("MEDIABOT_POLL_MAX_INTERVAL", max(3600.0, interval))
    if min_interval > max_interval:
        problems.append("environment: MEDIABOT_POLL_MIN_INTERVAL is larger than MEDIABOT_POLL_MAX_INTERVAL")
    elif not min_interval <= interval <= max_interval:
        problems.append(f"environment: MEDIABOT_POLL_INTERVAL ({interval:g}s) must lie between "
                        f"MEDIABOT_POLL_MIN_INTERVAL ({min_interval:g}s) and MEDIABOT_POLL_MAX_INTERVAL "
                        f"({max_interval:g}s)")
    tz = env.get("MEDIABOT_TIMEZONE", "Europe/Berlin").strip() or "Europe/Berlin"
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"environment: MEDIABOT_TIMEZONE: unknown time zone {tz!r}")
        tz = "Europe/Berlin"
    language = env.get("MEDIABOT_LANGUAGE", "de").strip().lower() or "de"
    if language not in ("de", "en"):
        problems.append(f"environment: MEDIABOT_LANGUAGE: {language!r} is not de or en")
        language = "de"
    level = env.get("MEDIABOT_LOG_LEVEL", "INFO").strip().upper() or "INFO"
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):  # (CRITICAL would hide every error)
        problems.append(f"environment: MEDIABOT_LOG_LEVEL: {level!r} is not DEBUG, INFO, WARNING or ERROR")
        level = "INFO"
    http_addr = env.get("MEDIABOT_HTTP_ADDR", "").strip() or None
    if http_addr and not re.match(r"^[\w.\-\[\]:]*:\d{1,5}$", http_addr):
        problems.append(f"environment: MEDIABOT_HTTP_ADDR: {http_addr!r} is not host:port")
    elif http_addr and not 0 < split_addr(http_addr)[1] <= 65535:
        problems.append(f"environment: MEDIABOT_HTTP_ADDR: port {split_addr(http_addr)[1]} is not 1 to 65535")
    api_base = env.get("TELEGRAM_API_BASE_URL", "").strip() or DEFAULT_API_BASE
    if not re.match(r"^https?://[^\s/]+", api_base):
        problems.append(f"environment: TELEGRAM_API_BASE_URL: {api_base!r} is not an http(s) URL")
    elif not api_base.endswith("/bot") and "{token}" not in api_base:
        # python-telegram-bot appends the token (".../bot" + "123:ABC" + "/getMe"), or puts it where {token} is
        # (Telegram's test environment: https://api.telegram.org/bot{token}/test)
        problems.append(f"environment: TELEGRAM_API_BASE_URL: {api_base!r} must end in /bot, as "
                        f"{DEFAULT_API_BASE} does (a local Bot API server: http://host:8081/bot), or say where the "
                        "token goes with {token}")
    user_agent = env.get("MEDIABOT_USER_AGENT", "").strip() or DEFAULT_USER_AGENT
    if not user_agent.isprintable() or not user_agent.isascii():
        problems.append("environment: MEDIABOT_USER_AGENT: only printable ASCII can go into an HTTP header")
    settings = Settings(
        token=token,
        api_base_url=api_base,
        watchlists_dir=Path(env.get("MEDIABOT_WATCHLISTS_DIR", "").strip() or "watchlists"),
        state_dir=Path(env.get("MEDIABOT_STATE_DIR", "").strip() or "state"),
        admins=_ids(env.get("MEDIABOT_ADMINS", ""), "MEDIABOT_ADMINS", problems),
        allowed=_ids(env.get("MEDIABOT_ALLOWED_USERS", ""), "MEDIABOT_ALLOWED_USERS", problems),
        poll_interval=interval,
        poll_min_interval=min_interval,
        poll_max_interval=max_interval,
        timezone=tz,
        language=language,
        recent_window=duration("MEDIABOT_RECENT_WINDOW", 6 * 3600.0),
        burst_cap=integer("MEDIABOT_BURST_CAP", 20),
        dedup_window=duration("MEDIABOT_DEDUP_WINDOW", 48 * 3600.0),
        retention_days=integer("MEDIABOT_RETENTION_DAYS", 30, most=36500),
        http_addr=http_addr,
        log_level=level,
        user_agent=user_agent,
        max_body_bytes=integer("MEDIABOT_MAX_BODY_BYTES", 10 * 1024 * 1024, least=64 * 1024),
        fetch_concurrency=integer("MEDIABOT_FETCH_CONCURRENCY", 50),
        per_host_concurrency=integer("MEDIABOT_PER_HOST_CONCURRENCY", 4),
        digest_threshold=integer("MEDIABOT_DIGEST_THRESHOLD", 10),
        fetch_timeout=duration("MEDIABOT_FETCH_TIMEOUT", 60.0),
    )
    if problems:
        raise ConfigError(problems)
    return settings


def mask_secret(value: str | None) -> str:
    """Show that a secret is set without showing it."""
    if not value:
        return "(not set)"
    return "***" + ("" if len(value) < 12 else f" ({len(value)} chars)")


# --------------------------------------------------------------------------- YAML with lines


class _Located:
    """A YAML value with the line it was written on (1-based); scalars keep the text as written (`raw`),
    mappings the line of each key (`keys`)."""

    __slots__ = ("keys", "line", "lines", "raw", "value")

    def __init__(self, value: Any, line: int, raw: str | None = None, keys: dict[str, int] | None = None,
                 lines: int = 1) -> None:
        self.value = value
        self.line = line
        self.raw = raw
        self.keys = keys or {}
        self.lines = lines  # how many lines a plain (unquoted) scalar runs over; YAML joins them with spaces


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that keeps positions; used only through compose()."""


MAX_YAML_BYTES = 2 * 1024 * 1024  # hand-written files: a bigger one is a mistake (and costs seconds to read)
_MERGE_TAG = "tag:yaml.org,2002:merge"


def _compose(path: Path, problems: list[str]) -> _Located | None:
    try:
        size = path.stat().st_size
        if size > MAX_YAML_BYTES:
            problems.append(f"{path}:1: {size:,} bytes is too big for a hand-written file (at most {MAX_YAML_BYTES:,})")
            return None
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        problems.append(f"{path}:{line}: not UTF-8 text ({exc.reason} at byte {exc.start}; save the file as UTF-8)")
        return None
    except OSError as exc:
        problems.append(f"{path}:1: cannot read ({exc.strerror})")
        return None
    try:
        node = yaml.compose(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as exc:
        problems.append(_yaml_problem(path, exc))
        return None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        problems.append(f"{path}:{line}: invalid YAML: the character U+{exc.character:04X} is not allowed "
                        "(a control character; retype that line)" if isinstance(exc.character, int)
                        else f"{path}:{line}: invalid YAML: {exc.reason}")
        return None
    except yaml.YAMLError as exc:
        problems.append(f"{path}:1: invalid YAML: {' '.join(str(exc).split())}")
        return None
    if node is None:
        return _Located(None, 1)
    return _Converter(path, problems).convert(node)


# PyYAML's words for common slips of hand-written files -> what to do about them.
_YAML_HINTS = (
    ("'\\t' that cannot start any token", "a tab character: indent with spaces"),
    ("mapping values are not allowed here", "a ': ' inside a value: put the whole text in quotes"),
    ("unknown escape character", "in double quotes a backslash starts an escape: write regexes in single quotes"),
    ("'@' that cannot start any token", "text that starts with @ or ` must be in quotes"),
    ("'`' that cannot start any token", "text that starts with @ or ` must be in quotes"),
    ("expected <block end>", "this line is indented differently from the lines of its list or mapping above"),
)


def _yaml_problem(path: Path, exc: yaml.MarkedYAMLError) -> str:
    """A YAML syntax error as `file:line: ...`. An unclosed quote or bracket is reported where it opened
    (the parser notices only at the end of the file, or at the next key), with the line it got to."""
    problem = exc.problem or exc.context or "not valid YAML"
    at = exc.problem_mark.line + 1 if exc.problem_mark else 1
    context = exc.context or ""
    opened = exc.context_mark.line + 1 if exc.context_mark else at
    if "quoted scalar" in context and opened != at:
        return (f"{path}:{opened}: invalid YAML: a quote opened on this line is never closed (the file reads on "
                f"to line {at})")
    if "flow sequence" in context or "flow mapping" in context:
        bracket = "[" if "sequence" in context else "{"
        if opened != at:
            return (f"{path}:{opened}: invalid YAML: a {bracket} opened on this line is not closed where it should be "
                    f"({problem} on line {at}); check its commas and its closing {']' if bracket == '[' else '}'}")
    hint = next((h for key, h in _YAML_HINTS if key in problem), None)
    return f"{path}:{at}: invalid YAML: {problem}" + (f" ({hint})" if hint else "")


class _Converter:
    """Composed YAML nodes -> _Located values. An anchor used twice is converted once and shared, so a
    file of nested aliases ("billion laughs") costs its size, not its expansion; an anchor used inside
    itself is an error, not a RecursionError. Merge keys (`<<: *defaults`) work as in YAML 1.1."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        self.done: dict[int, _Located] = {}
        self.open: set[int] = set()

    def err(self, line: int, message: str) -> None:
        self.problems.append(f"{self.path}:{line}: {message}")

    def convert(self, node: yaml.Node) -> _Located:
        line = node.start_mark.line + 1
        key = id(node)
        if key in self.done:
            return self.done[key]
        if key in self.open:
            self.err(line, "an anchor is used inside itself (a recursive alias)")
            return _Located(None, line)
        self.open.add(key)
        try:
            out = self._convert(node, line)
        finally:
            self.open.discard(key)
        self.done[key] = out
        return out

    def _convert(self, node: yaml.Node, line: int) -> _Located:
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, line)
        if isinstance(node, yaml.SequenceNode):
            return _Located([self.convert(v) for v in node.value], line)
        assert isinstance(node, yaml.ScalarNode)
        loader = yaml.SafeLoader("")
        try:
            value = loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            self.err(line, " ".join(str(exc).split()))
            value = None
        finally:
            loader.dispose()
        lines = node.end_mark.line - node.start_mark.line + 1 if node.style is None else 1
        return _Located(value, line, raw=node.value, lines=lines)

    def _mapping(self, node: yaml.MappingNode, line: int) -> _Located:
        out: dict[str, _Located] = {}
        keylines: dict[str, int] = {}
        merged: list[_Located] = []
        for key_node, value_node in node.value:
            kline = key_node.start_mark.line + 1
            if key_node.tag == _MERGE_TAG:
                value = self.convert(value_node)
                sources = value.value if isinstance(value.value, list) else [value]
                for src in sources:
                    if isinstance(src.value, dict):
                        merged.append(src)
                    else:
                        self.err(kline, "`<<:` merges a mapping (or a list of them) into this one")
                continue
            # A key is the text as written: `on:` or `no:` is a name, not YAML 1.1's true/false.
            if not isinstance(key_node, yaml.ScalarNode) or not key_node.value.strip():
                self.err(kline, "keys must be text")
                continue
            name = key_node.value
            if name in out:
                self.err(kline, f"duplicate key {name!r} (first at line {keylines[name]})")
                continue
            keylines[name] = kline
            out[name] = self.convert(value_node)
        for src in merged:  # explicit keys win, then earlier merged mappings
            for name, value in src.value.items():
                if name not in out:
                    out[name] = value
                    keylines[name] = src.keys.get(name, src.line)
        return _Located(out, line, keys=keylines)


def _as_text(node: _Located) -> str | None:
    """A scalar as text: the string, or for a bare YAML 1.1 number, date or boolean the characters as
    written (`007`, `3.10`, `2024-02-24`, `NO`). None for null, mappings and lists."""
    if isinstance(node.value, str):
        return node.value
    if node.value is None or isinstance(node.value, (dict, list)) or node.raw is None:
        return None
    return node.raw


class _Reader:
    """Typed accessors over a located mapping that record problems instead of raising."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        # Slips that loaded before they were recognised stay warnings (an upgrade must not stop a deployment
        # whose files loaded until then); `mediabot check` and a reload show them.
        self.warnings: list[str] = []

    def err(self, line: int, message: str) -> None:
        self.problems.append(f"{self.path}:{line}: {message}")

    def warn(self, line: int, message: str) -> None:
        self.warnings.append(f"{self.path}:{line}: warning: {message}")

    def mapping(self, node: _Located, what: str, allowed: Iterable[str]) -> dict[str, _Located] | None:
        if not isinstance(node.value, dict):
            self.err(node.line, f"{what} must be a mapping of keys, got {_kind(node.value)}")
            return None
        allowed = tuple(allowed)
        for key, value in node.value.items():
            if key not in allowed:
                hint = _closest(key, allowed)
                self.err(
                    node.keys.get(key, value.line),
                    f"{what}: unknown key {key!r}"
                    + (f" (did you mean {hint!r}?)" if hint else f"; allowed: {', '.join(allowed)}"),
                )
        return dict(node.value)

    def text(self, m: dict[str, _Located], key: str, what: str, default: str | None = None) -> str | None:
        node = m.get(key)
        if node is None or node.value is None:
            return default
        text = _as_text(node)
        if text is None:
            self.err(node.line, f"{what}.{key} must be text, got {_kind(node.value)}")
            return default
        return text

    def boolean(self, m: dict[str, _Located], key: str, what: str, default: bool) -> bool:
        node = m.get(key)
        if node is None or node.value is None:
            return default
        if not isinstance(node.value, bool):
            self.err(node.line, f"{what}.{key} must be true or false, got {node.value!r}")
            return default
        return node.value

    def number(
        self, m: dict[str, _Located], key: str, what: str, lo: float, hi: float, default: float | None,
        whole: bool = False,
    ) -> float | None:
        """A number in [lo, hi]; `whole`: a count, where 12.9 is a mistake, not 12."""
        node = m.get(key)
        if node is None or node.value is None:
            return default
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            hint = ""
            if isinstance(value, str) and _NUMBER_TEXT.match(value.strip()):
                # '90' in quotes, or 085 (YAML 1.1 reads a leading 0 as octal, and 8 is no octal digit)
                hint = " (write it as a plain number: no quotes, no leading 0)"
            self.err(node.line, f"{what}.{key} must be a {'whole ' if whole else ''}number, got {_kind(value)}{hint}")
            return default
        if whole and value != int(value):
            self.err(node.line, f"{what}.{key} must be a whole number, got {value:g}")
            return default
        return self._within(node, key, what, value, lo, hi, default)

    def duration(
        self, m: dict[str, _Located], key: str, what: str, lo: float, hi: float, default: float | None
    ) -> float | None:
        """Seconds: a number, or text such as `90s`, `15m`, `6h`, `1d`."""
        node = m.get(key)
        if node is None or node.value is None:
            return default
        value = node.value
        if isinstance(value, str):
            try:
                value = parse_duration(value)
            except ValueError:
                self.err(node.line, f"{what}.{key} must be a duration such as 90s, 15m, 6h or 1d, got {value!r}")
                return default
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.err(node.line, f"{what}.{key} must be a duration such as 90s, 15m, 6h or 1d, got {_kind(value)}")
            return default
        return self._within(node, key, what, value, lo, hi, default)

    def _within(self, node: _Located, key: str, what: str, value: float, lo: float, hi: float,
                default: float | None) -> float | None:
        if not lo <= value <= hi:
            self.err(node.line, f"{what}.{key} must be between {lo:g} and {hi:g}, got {value:g}")
            return default
        return float(value)


_NUMBER_TEXT = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?$")


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    return f"{value!r}"


def _closest(key: str, allowed: Iterable[str]) -> str | None:
    from difflib import get_close_matches

    found = get_close_matches(key, list(allowed), n=1, cutoff=0.6)
    return found[0] if found else None


# --------------------------------------------------------------------------- feeds


FEED_KEYS = ("id", "url", "name", "lang", "enabled", "interval", "identity", "allow_private", "max_new_alerts")


def load_feeds(path: Path, problems: list[str]) -> list[FeedSpec]:
    """Read feeds.yaml; problems are appended as `file:line: message`."""
    root = _compose(path, problems)
    if root is None:
        return []
    r = _Reader(path, problems)
    top = r.mapping(root, "feeds.yaml", ("feeds",)) if root.value is not None else {}
    if top is None:
        return []
    node = top.get("feeds")
    if node is None or not isinstance(node.value, list):
        r.err(node.line if node else 1, "feeds.yaml must have a list under `feeds:`")
        return []
    feeds: list[FeedSpec] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(node.value):
        what = f"feeds#{i + 1}"  # counted from 1, as an admin counts
        m = r.mapping(entry, what, FEED_KEYS)
        if m is None:
            continue
        fid = r.text(m, "id", what)
        url = r.text(m, "url", what)
        if not fid:
            r.err(entry.line, f"{what}: missing `id`")
            continue
        if not _ID_RE.match(fid):
            r.err(m["id"].line, f"{what}.id {fid!r}: use lower-case letters, digits, - and _")
        if fid in seen:
            r.err(m["id"].line, f"{what}: duplicate feed id {fid!r} (first at line {seen[fid]})")
            continue
        seen[fid] = m["id"].line
        if not url:
            r.err(entry.line, f"{what} ({fid}): missing `url`")
            continue
        host, bad = _feed_host(url)
        if bad:
            r.err(m["url"].line, f"{what} ({fid}): {bad}")
            continue
        allow_private = r.boolean(m, "allow_private", what, False)
        if not allow_private and _is_private_host(host):
            r.err(
                m["url"].line,
                f"{what} ({fid}): {host} is a private or loopback address; "
                "set `allow_private: true` if that is intended",
            )
        identity = r.text(m, "identity", what, "auto") or "auto"
        if identity not in IDENTITIES:
            r.err(m["identity"].line, f"{what}.identity must be one of {', '.join(IDENTITIES)}")
            identity = "auto"
        interval = r.duration(m, "interval", what, 10, 7 * 86400, None)
        cap = r.number(m, "max_new_alerts", what, 1, 10000, None, whole=True)  # (0 silenced the feed)
        feeds.append(
            FeedSpec(
                id=fid,
                url=url,
                name=r.text(m, "name", what, fid) or fid,
                lang=(r.text(m, "lang", what, "") or "").lower(),
                enabled=r.boolean(m, "enabled", what, True),
                interval=int(interval) if interval is not None else None,
                identity=identity,
                allow_private=allow_private,
                max_new_alerts=int(cap) if cap is not None else None,
                source=f"{path}:{entry.line}",
            )
        )
    return feeds


def _feed_host(url: str) -> tuple[str, str | None]:
    """(host, None) for a feed URL that can be fetched, else ("", why not). urlsplit raises on some (an
    unclosed IPv6 bracket), and its `port` raises on a bad port: both are reported instead of crashing."""
    if any(ch.isspace() for ch in url):
        return "", f"url must not contain spaces, got {url!r}"
    try:
        parts = urlsplit(url)
        port = parts.port
        host = parts.hostname
    except ValueError as exc:
        return "", f"url is not a valid URL ({exc}): {url!r}"
    if parts.scheme not in ("http", "https") or not host:
        return "", f"url must be an http(s) URL, got {url!r}"
    if port == 0:
        return "", f"url has port 0: {url!r}"
    return host, None


def _is_private_host(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain") or host.lower().endswith(".localhost"):
        return True
    return is_private_address(host)


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # the well-known prefix: an IPv4 address in the last 32 bits


def is_private_address(host: str) -> bool:
    """Is a literal address anything but a public Internet address? Private, loopback, link-local (cloud
    metadata at 169.254.169.254), carrier-grade NAT, reserved, multicast, and IPv6 forms that carry such
    an IPv4 address (::ffff:10.0.0.1, 6to4, NAT64). `check` and the fetcher (for every request and
    redirect, after DNS) both ask this, so a feed `check` accepts is one the fetcher will fetch. A name
    is False here: the fetcher resolves it."""
    try:
        addr = ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address):
        inner = addr.ipv4_mapped or addr.sixtofour
        if inner is None and addr in _NAT64:
            inner = ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
        if inner is not None and is_private_address(str(inner)):
            return True
    return not addr.is_global or addr.is_multicast


# --------------------------------------------------------------------------- watchlists


@dataclass(frozen=True, slots=True)
class Term:
    """One watchlist term with its aliases; `mode` decides how it is compared."""

    term: str
    aliases: tuple[str, ...] = ()
    mode: str = "fuzzy"
    threshold: float | None = None
    line: int = 0

    @property
    def spellings(self) -> tuple[str, ...]:
        """The term and all its aliases."""
        return (self.term, *self.aliases)


@dataclass(frozen=True, slots=True)
class Rule:
    """All `groups` must match; with `near`, their hits must lie within that many words; the groups in
    `title` must match in the headline; and the rule does not hold when every group in `unless` matches
    too (e.g. Kursk AND war, unless North Korea AND thanks: a diplomatic thank-you is not front news);
    nor when any group in `unless_any` matches; nor when any group in `unless_title` matches in the
    headline (a story about another country, not one that names it in passing)."""

    groups: tuple[str, ...]
    near: int | None = None
    unless: tuple[str, ...] = ()
    title: tuple[str, ...] = ()  # these groups must match in the headline itself
    unless_any: tuple[str, ...] = ()  # the rule does not hold when any one of these groups matches
    unless_title: tuple[str, ...] = ()  # ... nor when any one of these matches in the headline
    line: int = 0  # where it is written; 0 for the one rule a list without `rules:` has (all its groups)


@dataclass(frozen=True, slots=True)
class Watchlist:
    """A validated watchlist; its id is the file stem."""

    id: str
    name: str
    description: str
    fields: str = "title+summary"
    threshold: float = 88.0
    groups: Mapping[str, tuple[Term, ...]] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    exclude: tuple[Term, ...] = ()
    chats: tuple[int, ...] = ()
    enabled: bool = True
    source: str = ""
    warnings: tuple[str, ...] = ()  # `file:line: warning: ...` the loader found (see lint_watchlists)


WATCHLIST_KEYS = ("name", "description", "fields", "threshold", "groups", "rules", "exclude", "chats", "enabled")
TERM_KEYS = ("term", "aliases", "mode", "threshold")
RULE_KEYS = ("all", "near", "unless", "unless_any", "unless_title", "title")


def load_watchlist(path: Path, problems: list[str]) -> Watchlist | None:
    """Read one watchlist file; None when it has errors (appended to `problems`)."""
    before = len(problems)
    root = _compose(path, problems)
    if root is None:
        return None
    r = _Reader(path, problems)
    wid = path.stem
    if not _ID_RE.match(wid):
        r.err(1, f"watchlist id {wid!r} (the file name) must be lower-case letters, digits, - and _")
    elif len(wid) > MAX_WATCHLIST_ID:
        r.err(1, f"watchlist id {wid!r} (the file name) is {len(wid)} characters; at most {MAX_WATCHLIST_ID} fit "
                 "in an alert's buttons (Telegram allows 64 bytes of button data)")
    m = r.mapping(root, wid, WATCHLIST_KEYS)
    if m is None:
        return None
    description = r.text(m, "description", wid, "") or ""
    if not description:
        r.err(root.line, f"{wid}: add a one-line `description:` (shown in /list)")
    fields = r.text(m, "fields", wid, "title+summary") or "title+summary"
    if fields not in FIELDS:
        r.err(m["fields"].line, f"{wid}.fields must be `title`, `title+lead` or `title+summary`, got {fields!r}")
    threshold = r.number(m, "threshold", wid, 50, 100, 88.0) or 88.0
    groups: dict[str, tuple[Term, ...]] = {}
    gnode = m.get("groups")
    if gnode is None:
        r.err(root.line, f"{wid}: needs `groups:` (named lists of terms)")
    elif gnode.value in ({}, None):
        r.err(gnode.line, f"{wid}.groups is empty: a watchlist without terms never matches")
    else:
        declared = list(gnode.value) if isinstance(gnode.value, dict) else []
        gmap = r.mapping(gnode, f"{wid}.groups", declared)
        for gname, terms_node in (gmap or {}).items():
            if not _ID_RE.match(gname):
                r.err(terms_node.line, f"{wid}.groups: name {gname!r} must be lower-case letters, digits, - and _")
            groups[gname] = _terms(r, terms_node, f"{wid}.groups.{gname}")
            if terms_node.value == []:  # (a list whose terms all had errors was reported term by term)
                r.err(terms_node.line, f"{wid}.groups.{gname} has no terms")
    rules: list[Rule] = []
    rnode = m.get("rules")
    if rnode is None or rnode.value is None:
        if groups:
            rules.append(Rule(tuple(groups)))
        if rnode is not None and len(groups) >= 2:  # (every rule commented out?)
            r.warn(rnode.line, f"`rules:` is empty, so the one rule is all {len(groups)} groups together "
                               f"({', '.join(groups)}); list the rules under it, or remove the key")
    elif rnode.value == []:
        r.warn(rnode.line, "`rules: []` lists no rule, so this list never matches; list the rules, or remove the "
                           "key to require every group together")
    elif not groups:
        pass  # no usable groups: the rules cannot be checked against them (the groups' problem is reported)
    elif not isinstance(rnode.value, list):
        r.err(rnode.line, f"{wid}.rules must be a list of {{all: [groups], near: N}}")
    else:
        for i, rule_node in enumerate(rnode.value):
            what = f"{wid}.rules#{i + 1}"
            rm = r.mapping(rule_node, what, RULE_KEYS)
            if rm is None:
                continue
            names_node = rm.get("all")
            if names_node is None:
                r.err(rule_node.line, f"{what} needs `all:` with the groups that must match (all: [group, group])")
                continue
            if _single_name(names_node) is None and (not isinstance(names_node.value, list) or not names_node.value):
                r.err(names_node.line, f"{what}.all must list one or more group names in brackets "
                                       "(all: [place, actor])")
                continue
            names = _group_names(r, names_node, f"{what}.all", groups)
            unless = _optional_group_list(r, rm, "unless", what, groups)
            unless_any = _optional_group_list(r, rm, "unless_any", what, groups)
            unless_title = _optional_group_list(r, rm, "unless_title", what, groups)
            in_title = _optional_group_list(r, rm, "title", what, groups)
            for g in in_title:
                if g not in names:
                    r.err(rm["title"].line, f"{what}.title: {g!r} must also be in `all`")
            # A veto that every match of the rule sets off: the rule could never hold.
            for g in unless_any:
                if g in names:
                    r.err(rm["unless_any"].line, f"{what}.unless_any: {g!r} is also in `all`, so the rule could "
                                                 "never hold (name it in `unless` with another group instead)")
            if unless and set(unless) <= set(names):
                r.err(rm["unless"].line, f"{what}.unless: every group of it is also in `all`, so the rule could "
                                         "never hold (`unless` vetoes when all of its groups match)")
            for g in unless_title:
                if g in in_title:
                    r.err(rm["unless_title"].line, f"{what}.unless_title: {g!r} must be in the headline (`title`) "
                                                   "and must not be, so the rule could never hold")
            near = r.number(rm, "near", what, 1, 200, None, whole=True)
            written = names_node.value if isinstance(names_node.value, list) else [names_node]
            if near is not None and len(written) < 2:
                r.err(rm["near"].line, f"{what}.near needs at least two groups in `all`")
            rules.append(Rule(tuple(names), int(near) if near is not None else None, tuple(unless),
                              tuple(in_title), tuple(unless_any), tuple(unless_title), rule_node.line))
    exclude: tuple[Term, ...] = ()
    if "exclude" in m and m["exclude"].value is not None:
        exclude = _terms(r, m["exclude"], f"{wid}.exclude")
    chats: list[int] = []
    cnode = m.get("chats")
    if cnode is not None and cnode.value is not None:
        if not isinstance(cnode.value, list):
            r.err(cnode.line, f"{wid}.chats must be a list of Telegram chat ids")
        else:
            for c in cnode.value:
                if not is_chat_id(c.value):
                    shown = c.raw if c.raw is not None else c.value
                    r.err(c.line, f"{wid}.chats: {shown!r} is not a Telegram chat id (e.g. -1001234567890)")
                else:
                    chats.append(c.value)
    if len(problems) > before:
        return None
    return Watchlist(
        id=wid,
        name=r.text(m, "name", wid, wid) or wid,
        description=description,
        fields=fields,
        threshold=threshold,
        groups=groups,
        rules=tuple(rules),
        exclude=exclude,
        chats=tuple(chats),
        enabled=r.boolean(m, "enabled", wid, True),
        source=str(path),
        warnings=tuple(r.warnings),
    )


def _optional_group_list(r: _Reader, rule: dict[str, _Located], key: str, what: str,
                         groups: Mapping[str, object]) -> list[str]:
    node = rule.get(key)
    if node is None or node.value is None:
        return []
    if _single_name(node) is None and (not isinstance(node.value, list) or not node.value):
        r.err(node.line, f"{what}.{key} must list one or more group names in brackets ({key}: [name, name])")
        return []
    return _group_names(r, node, f"{what}.{key}", groups)


def _single_name(node: _Located) -> str | None:
    """One group name written without brackets (`unless_title: israel`): taken as a list of one. Several
    names without brackets (`all: iran, drones`) are not guessed at."""
    text = _as_text(node)
    return text if text is not None and _ID_RE.match(text) else None


def _group_names(r: _Reader, node: _Located, what: str, groups: Mapping[str, object]) -> list[str]:
    names: list[str] = []
    for n in node.value if isinstance(node.value, list) else [node]:
        name = _as_text(n)
        if name is None:
            r.err(n.line, f"{what}: {_shown(n)} is not a group name")
        elif name not in groups:
            hint = _closest(name, groups)
            r.err(
                n.line,
                f"{what}: no group named {name!r}"
                + (f" (did you mean {hint!r}?)" if hint else f"; groups: {', '.join(groups)}"),
            )
        else:
            names.append(name)
    return names


def _terms(r: _Reader, node: _Located, what: str) -> tuple[Term, ...]:
    if not isinstance(node.value, list):
        r.err(node.line, f"{what} must be a list of terms")
        return ()
    out: list[Term] = []
    for i, t in enumerate(node.value):
        term = _term(r, t, f"{what}#{i + 1}")
        if term is not None:
            out.append(term)
    return tuple(out)


def _shown(node: _Located) -> str:
    """A value as the admin wrote it, for a message (a mapping's _Located parts are no text to show)."""
    value = node.value
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_shown(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    return repr(node.raw if node.raw is not None and value is not None else value)


def _colon_in_text(r: _Reader, node: _Located, what: str) -> bool:
    """`Shahed: 136` in a list reads as a mapping of one key: report the text the admin meant, when it looks
    so (not a misspelt `term:`, which the key check names)."""
    if isinstance(node.value, dict) and len(node.value) == 1:
        ((key, value),) = node.value.items()
        if key not in TERM_KEYS and not _closest(key, TERM_KEYS) and not isinstance(value.value, (dict, list)):
            text = f"{key}: {_as_text(value) or ''}".strip()
            quoted = '"' + text.replace('"', '\\"') + '"'
            r.err(node.line, f"{what}: {text!r} reads as a key and a value (the ': ' in it); put text that holds "
                             f"': ' in quotes: {quoted}")
            return True
    return False


def _term(r: _Reader, node: _Located, what: str) -> Term | None:
    if _colon_in_text(r, node, what):
        return None
    if not isinstance(node.value, dict):
        text = _as_text(node)
        if text is None:
            r.err(node.line, f"{what} must be a term (text) or a mapping with `term:`, got {_kind(node.value)}")
            return None
        text = text.strip()
        if not text:
            r.err(node.line, f"{what} is empty")
            return None
        if node.lines > 1 and " - " in text:
            # "- Niger" with "  - Niamey" indented deeper below it: YAML joins the lines into one term
            r.warn(node.line, f"{text!r} runs over {node.lines} lines and reads as one term, which never matches "
                              "as meant; a list item below it is indented deeper than it: give every `- ` of the "
                              "list the same indentation")
        _near_operator(r, node.line, text, "fuzzy")
        return Term(text, line=node.line) if _can_match(r, node.line, what, text, "fuzzy") else None
    m = r.mapping(node, what, TERM_KEYS)
    if m is None:
        return None
    text = (r.text(m, "term", what) or "").strip()
    if not text:
        r.err(node.line, f"{what} needs `term:`")
        return None
    mode = r.text(m, "mode", what, "fuzzy") or "fuzzy"
    if mode not in TERM_MODES:
        r.err(m["mode"].line, f"{what}.mode must be one of {', '.join(TERM_MODES)}, got {mode!r}")
        return None
    spellings = [(text, m["term"].line)]
    anode = m.get("aliases")
    if anode is not None and anode.value is not None:
        if not isinstance(anode.value, list):
            r.err(anode.line, f"{what}.aliases must be a list")
        else:
            for a in anode.value:
                alias = _as_text(a)
                if _colon_in_text(r, a, f"{what}.aliases"):
                    continue
                if isinstance(a.value, dict):
                    r.err(a.line, f"{what}.aliases: {_shown(a)}: an alias is plain text and takes the term's mode; "
                                  "to give a spelling its own mode, write it as a term of its own in the group "
                                  "(- {term: ..., mode: exact})")
                elif alias is None or not alias.strip():
                    r.err(a.line, f"{what}.aliases: {_shown(a)} is not text")
                else:
                    spellings.append((alias.strip(), a.line))
    threshold = r.number(m, "threshold", what, 50, 100, None)
    if threshold is not None and mode != "fuzzy":
        r.err(m["threshold"].line, f"{what}.threshold only applies to mode fuzzy")
    if not all([_can_match(r, line, what, spelling, mode) for spelling, line in spellings]):
        return None
    for spelling, line in spellings:
        _near_operator(r, line, spelling, mode)
    return Term(text, tuple(a for a, _ in spellings[1:]), mode, threshold, node.line)


def _can_match(r: _Reader, line: int, what: str, spelling: str, mode: str) -> bool:
    """Report a spelling that cannot work: an invalid regex, a regex that matches empty text (it would
    match every item), or a word with no letter or digit (folding drops it, so it would never match)."""
    if mode == "regex":
        if any(ord(ch) < 32 for ch in spelling):  # YAML read "\b" in double quotes as a backspace
            r.err(line, f"{what}: the regular expression {spelling!r} holds a control character: in double quotes "
                        "YAML reads \\b as a backspace and \\d as an error; write regexes in single quotes "
                        "('\\bFAA\\b')")
            return False
        import re2

        options = re2.Options()
        options.log_errors = False  # RE2 would print its own copy of the error to stderr
        try:
            compiled = re2.compile(spelling, options)
        except Exception as exc:  # re2.error has no stable public base class
            reason = exc.args[0] if exc.args else exc
            if isinstance(reason, bytes):
                reason = reason.decode("utf-8", "replace")
            hint = (" (RE2 has no lookaround and no backreferences: that is what keeps every pattern linear in "
                    "time; use an `unless` group or exclude: instead)"
                    if "perl operator" in str(reason) or "backreference" in str(reason) else "")
            r.err(line, f"{what}: invalid regular expression {spelling!r}: {reason}{hint}")
            return False
        if compiled.search("") is not None:
            r.err(line, f"{what}: the regular expression {spelling!r} matches empty text, so it would match every item")
            return False
        return True
    if not any(ch.isalnum() for ch in spelling):
        r.err(line, f"{what}: {spelling!r} has no letter or digit, so it can never match")
        return False
    return True


def _near_operator(r: _Reader, line: int, spelling: str, mode: str) -> None:
    """NEAR/5 inside a term, as commercial tools write proximity, is read as words here."""
    if mode in ("fuzzy", "exact") and _NEAR_OPERATOR.search(spelling):
        r.warn(line, f"{spelling!r}: NEAR/n inside a term is read as words, not as an operator, so the term "
                     "matches only that phrase; put the two concepts in two groups and give the rule `near: n`")


# NEAR/5 or W/3 as commercial tools write it, or a bare upper-case NEAR ("near Kursk" is a phrase).
_NEAR_OPERATOR = re.compile(r"(?i:\b(?:NEAR|W)/\d+\b)|\bNEAR\b")


# --------------------------------------------------------------------------- everything


@dataclass(frozen=True, slots=True)
class Config:
    """Feeds and watchlists loaded together; swapped in as a whole on reload."""

    feeds: tuple[FeedSpec, ...]
    watchlists: tuple[Watchlist, ...]

    def watchlist(self, watchlist_id: str) -> Watchlist | None:
        return next((w for w in self.watchlists if w.id == watchlist_id), None)

    def watchlist_names(self) -> dict[str, str]:
        """Watchlist id -> name, as alerts, digests and commands show it."""
        return {w.id: w.name for w in self.watchlists}


def config_files(directory: Path) -> list[Path]:
    """The YAML files of a config directory, in order. Hidden files are editors' and file managers' (an
    Emacs lock `.#kursk.yaml`, macOS `._kursk.yaml`), never the admin's: reading them would reject the
    whole config while a file is open."""
    return [p for p in sorted(directory.iterdir())
            if not p.name.startswith(".") and p.suffix.lower() in (".yaml", ".yml")]


def config_signature(directory: Path) -> dict[str, tuple[int, int, str]]:
    """What the config files are now (modification time, size, content hash), to see any edit: a
    filesystem with coarse timestamps can keep the mtime across a second write."""
    out: dict[str, tuple[int, int, str]] = {}
    with contextlib.suppress(OSError):
        for p in config_files(directory):
            try:
                st = p.stat()
                digest = hashlib.sha1(p.read_bytes()).hexdigest() if st.st_size <= MAX_YAML_BYTES else ""
            except OSError:
                out[p.name] = (0, -1, "")  # unreadable or a dangling link: a change of its own
                continue
            out[p.name] = (st.st_mtime_ns, st.st_size, digest)
    return out


def load_config(directory: Path) -> Config:
    """Load feeds.yaml and every other *.yaml in `directory`; ConfigError lists every problem."""
    try:
        return _load_config(directory)
    except OSError as exc:  # the directory itself unreadable (a bind mount made under umask 077): not a bug
        raise ConfigError([f"{directory}: cannot read the watchlists directory ({exc.strerror or exc}); "
                           "the user mediabot runs as needs read access"]) from exc


def _load_config(directory: Path) -> Config:
    problems: list[str] = []
    if not directory.is_dir():
        raise ConfigError([f"{directory}: watchlists directory not found (set MEDIABOT_WATCHLISTS_DIR)"])
    feeds_path = directory / "feeds.yaml"
    if not feeds_path.exists() and (directory / "feeds.yml").exists():
        feeds_path = directory / "feeds.yml"
    feeds: list[FeedSpec] = []
    if feeds_path.exists():
        feeds = load_feeds(feeds_path, problems)
    else:
        problems.append(f"{feeds_path}:1: missing; it lists the feeds to poll under `feeds:`")
    watchlists: list[Watchlist] = []
    if feeds_path.name == "feeds.yaml" and (directory / "feeds.yml").exists():
        problems.append(f"{directory / 'feeds.yml'}:1: next to feeds.yaml, which is the one read; remove one of them")
    for path in config_files(directory):
        if path.stem.lower() == "feeds":
            continue
        if not path.exists():  # a symlink whose target is gone: a watchlist would vanish without a word
            problems.append(f"{path}:1: a symlink to {os.readlink(path)}, which does not exist")
            continue
        if not path.is_file():
            continue
        wl = load_watchlist(path, problems)
        if wl is not None:
            if any(w.id == wl.id for w in watchlists):
                problems.append(f"{path}:1: duplicate watchlist id {wl.id!r} (.yaml and .yml)")
                continue
            watchlists.append(wl)
    if problems:
        raise ConfigError(_in_line_order(problems))
    return Config(tuple(feeds), tuple(watchlists))


_PLACE = re.compile(r"(.*?):(\d+): ")


def place_of(message: str) -> tuple[str, int]:
    """(file, line) of a `file:line: ...` problem or warning; (the message, 0) for one without."""
    m = _PLACE.match(message)
    return (m.group(1), int(m.group(2))) if m else (message, 0)


def _in_line_order(problems: list[str]) -> list[str]:
    """Problems file by file (in the order the files were read), each file's in line order."""
    files: dict[str, int] = {}
    for problem in problems:
        files.setdefault(place_of(problem)[0], len(files))
    return sorted(problems, key=lambda problem: (files[place_of(problem)[0]], place_of(problem)[1]))


GOOD_COPY = "last-good-config.json"  # in the state directory


def save_good_copy(directory: Path, state_dir: Path, loaded: Mapping[str, tuple[int, int, str]]) -> None:
    """Keep the YAML files that just loaded cleanly in the state directory. The daemon keeps its last good
    config in memory; a fresh process (a cron run, a restart) that finds a broken edit has only this copy,
    and runs on it instead of stopping every alert until the edit is fixed. `loaded`: the files'
    config_signature taken before they were read; files edited since then are not known to be good, and the
    copy there is stays."""
    raw = {p.name: p.read_bytes() for p in config_files(directory) if p.is_file()}
    if {name: hashlib.sha1(data).hexdigest() for name, data in raw.items()} != {
            name: digest for name, (_, _, digest) in loaded.items()}:
        return
    files = {name: data.decode("utf-8") for name, data in raw.items()}
    target = state_dir / GOOD_COPY
    tmp = target.with_name(target.name + ".tmp")
    saved = datetime.now(UTC).isoformat(timespec="seconds")
    tmp.write_text(json.dumps({"saved": saved, "files": files}, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, target)


def load_good_copy(state_dir: Path) -> tuple[Config, str] | None:
    """The config saved by save_good_copy and when it was saved, or None when there is none (or it no
    longer loads: a newer mediabot may refuse what an older one took)."""
    try:
        data = json.loads((state_dir / GOOD_COPY).read_text(encoding="utf-8"))
        files = {Path(str(name)).name: str(text) for name, text in data["files"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    config = _config_of(files)
    return (config, str(data.get("saved", "?"))) if config is not None else None


def _config_of(files: Mapping[str, str]) -> Config | None:
    """The config these files (name -> text) make, or None when they have errors."""
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in files.items():
            (Path(tmp) / name).write_text(text, encoding="utf-8")
        try:
            return load_config(Path(tmp))
        except ConfigError:
            return None
