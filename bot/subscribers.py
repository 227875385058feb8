"""Subscriber decisions, pure: parse /mute, /quiet and /digest arguments, decide whether an alert is
held now and until when, and group held alerts into digests. No I/O, no clock: `now` comes in."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import Any

_MUTE_RE = re.compile(r"^\s*(\d{1,4})\s*(m|min|h|d|w)?\s*$", re.IGNORECASE)
_MUTE_UNITS = {"m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_MUTE = timedelta(days=30)
_CLOCK_RE = re.compile(r"^(\d{1,2})(?:[:.](\d{2})|\s*(?:h|uhr))?$", re.IGNORECASE)


def parse_mute(text: str) -> timedelta:
    """`30m`, `2h`, `1d`, `1w` (a bare number means hours) -> a duration of at most 30 days."""
    m = _MUTE_RE.match(text or "")
    if not m:
        raise ValueError(f"not a duration: {text!r} (e.g. 30m, 2h, 1d)")
    amount = int(m.group(1))
    unit = (m.group(2) or "h").lower()
    seconds = amount * _MUTE_UNITS[unit]
    if seconds <= 0:
        raise ValueError("the duration must be positive")
    return min(timedelta(seconds=seconds), MAX_MUTE)


def parse_clock(text: str) -> time:
    """`8:00`, `08:00`, `22.30`, and a whole hour as `8`, `22` or `8h` -> a time of day."""
    m = _CLOCK_RE.match(text.strip())
    if not m or int(m.group(1)) > 23 or int(m.group(2) or 0) > 59:
        raise ValueError(f"not a time of day: {text!r} (e.g. 08:00)")
    return time(int(m.group(1)), int(m.group(2) or 0))


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily window in local time; it may cross midnight (22:00-07:00)."""

    start: time
    end: time

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


def parse_quiet(text: str) -> QuietHours | None:
    """`22:00-07:00` -> QuietHours; `off` -> None."""
    value = (text or "").strip().lower()
    if value in ("off", "aus", "none"):
        return None
    for dash in ("–", "—", "‒", "−", " bis ", " to "):  # phones turn "--" into a dash; people write words
        value = value.replace(dash, "-")
    parts = value.split("-")
    if len(parts) != 2:
        raise ValueError(f"not a time window: {text!r} (e.g. 22:00-07:00, or off)")
    start, end = parse_clock(parts[0]), parse_clock(parts[1])
    if start == end:
        raise ValueError("the quiet hours must not start and end at the same time")
    return QuietHours(start, end)


def quiet_end(quiet: QuietHours | None, now: datetime, tz: tzinfo) -> datetime | None:
    """When the quiet window that contains `now` ends; None when `now` is not quiet."""
    if quiet is None:
        return None
    local = now.astimezone(tz)
    t = local.time().replace(tzinfo=None)
    if quiet.start < quiet.end:
        inside = quiet.start <= t < quiet.end
        end_day = local.date()
    else:  # crosses midnight
        inside = t >= quiet.start or t < quiet.end
        end_day = local.date() + timedelta(days=1) if t >= quiet.start else local.date()
    if not inside:
        return None
    end = datetime.combine(end_day, quiet.end, tzinfo=tz)
    if end.astimezone(UTC) <= now.astimezone(UTC):  # in the hour repeated when clocks go back: the second pass
        end = end.replace(fold=1)
        if end.astimezone(UTC) <= now.astimezone(UTC):
            return None
    return end.astimezone(now.tzinfo)


@dataclass(frozen=True, slots=True)
class DigestMode:
    """How a chat wants its alerts: at once (`off`), collected every hour, or once a day at `at`."""

    kind: str = "off"  # off | hourly | daily
    at: time | None = None

    def __str__(self) -> str:
        return f"daily {self.at:%H:%M}" if self.kind == "daily" and self.at else self.kind


def parse_digest(text: str) -> DigestMode:
    """`off`, `hourly`, `daily` (08:00) or `daily 18:30` -> DigestMode."""
    parts = (text or "").strip().lower().split()
    if not parts:
        raise ValueError("say off, hourly or daily 08:00")
    kind = {"aus": "off", "stündlich": "hourly", "täglich": "daily"}.get(parts[0], parts[0])
    if kind in ("off", "hourly") and len(parts) == 1:
        return DigestMode(kind)
    if kind == "daily" and len(parts) <= 3:  # "daily 8 Uhr"
        return DigestMode("daily", parse_clock(" ".join(parts[1:])) if len(parts) > 1 else time(8, 0))
    raise ValueError(f"not a digest setting: {text!r} (off, hourly or daily 08:00)")


def next_digest(mode: DigestMode, after: datetime, tz: tzinfo) -> datetime | None:
    """The first digest time strictly after `after`; None when digests are off."""
    # Arithmetic and comparisons in UTC: on local wall times (same tzinfo) Python ignores the offset, so
    # the hour repeated when clocks go back was skipped, and a daily slot in it could lie in the past.
    if mode.kind == "hourly":
        hour = after.astimezone(tz).replace(minute=0, second=0, microsecond=0)  # keeps `fold` in the repeat
        return (hour.astimezone(UTC) + timedelta(hours=1)).astimezone(after.tzinfo)
    if mode.kind == "daily":
        local = after.astimezone(tz)
        at = mode.at or time(8, 0)
        slot = datetime.combine(local.date(), at, tzinfo=tz)
        if slot.astimezone(UTC) <= after.astimezone(UTC):
            slot = datetime.combine(local.date() + timedelta(days=1), at, tzinfo=tz)
        return slot.astimezone(after.tzinfo)
    return None


@dataclass(frozen=True, slots=True)
class ChatPrefs:
    """A chat's delivery settings, as stored in the `chats` table."""

    muted_until: datetime | None = None
    quiet: QuietHours | None = None
    digest: DigestMode = DigestMode()

    @classmethod
    def from_row(cls, row: Mapping[str, Any] | None) -> ChatPrefs:
        """From a `store.chat()` dict (bad stored values count as unset)."""
        if not row:
            return cls()
        muted = datetime.fromisoformat(row["muted_until"]) if row.get("muted_until") else None
        try:
            quiet = parse_quiet(str(row["quiet"])) if row.get("quiet") else None
        except ValueError:
            quiet = None
        try:
            digest = parse_digest(str(row.get("digest") or "off"))
        except ValueError:
            digest = DigestMode()
        return cls(muted, quiet, digest)


def lists_muted_until(mutes: Mapping[str, datetime], lists: Sequence[str], now: datetime) -> datetime | None:
    """Until when an alert that came through `lists` (every list of the chat the item matched) is held by
    the chat's button mutes: only while all of them are muted (a Kursk story also on a muted troops list
    still arrives through Kursk), so until the first of those mutes ends; None when one list is on."""
    ends = [mutes.get(w) for w in lists]
    if not ends or any(e is None or e <= now for e in ends):
        return None
    return min(e for e in ends if e is not None)


def held_until(prefs: ChatPrefs, created: datetime, now: datetime, tz: tzinfo,
               watchlist_muted_until: datetime | None = None) -> datetime | None:
    """When an alert queued at `created` may leave; None = now. The latest of every hold that applies:
    a chat mute, a watchlist mute (the alert's button), quiet hours, the next digest slot."""
    waits: list[datetime] = []
    if prefs.muted_until and prefs.muted_until > now:
        waits.append(prefs.muted_until)
    if watchlist_muted_until and watchlist_muted_until > now:
        waits.append(watchlist_muted_until)
    slot = next_digest(prefs.digest, created, tz)
    if slot is not None and slot > now:
        waits.append(slot)
    if not waits:
        end = quiet_end(prefs.quiet, now, tz)
        return end
    latest = max(waits)
    # a hold that ends inside quiet hours is extended to their end
    return quiet_end(prefs.quiet, latest, tz) or latest


@dataclass(frozen=True, slots=True)
class Release:
    """What to do with a chat's held alerts now: nothing, send one as-is, or merge several into a digest."""

    row_ids: tuple[int, ...]
    as_digest: bool


def plan_release(held: Sequence[tuple[int, datetime | None]]) -> Release:
    """`held` = (row id, held_until now) for one chat's held rows: the ones free now leave together,
    as one digest when there are two or more."""
    free = tuple(rid for rid, until in held if until is None)
    return Release(free, len(free) > 1)


def over_backlog(pending_alerts: int, threshold: int) -> bool:
    """A chat with more pending alerts than the threshold gets one digest instead of a flood."""
    return threshold > 0 and pending_alerts > threshold
