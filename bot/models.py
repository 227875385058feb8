"""Frozen values passed between stages. No behaviour beyond trivial properties."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

MAX_TITLE = 500  # characters of a headline kept from a feed (and from a `mediabot match` record)
MAX_SUMMARY = 2000  # characters of a teaser kept: matching and dedup see no more, in the bot or in `match`

@dataclass(frozen=True, slots=True)
class FeedSpec:
    """One feed from feeds.yaml."""

    id: str
    url: str
    name: str
    lang: str
    enabled: bool = True
    interval: int | None = None  # seconds; None -> the global poll interval
    identity: str = "auto"  # auto | guid | link | title_link
    allow_private: bool = False
    max_new_alerts: int | None = None  # burst cap override
    source: str = ""  # file:line where it was defined


@dataclass(frozen=True, slots=True)
class Item:
    """One feed entry, normalised. `key` is the stable identity used for "seen"."""

    key: str
    feed_id: str
    title: str
    summary: str
    link: str  # as published (for display)
    canonical_link: str  # for identity and dedup
    guid: str
    published: datetime  # UTC, clamped to "now" when in the future, first-seen when absent
    lang: str
    source: str = ""  # display name of the outlet
    dated: bool = True  # False when the feed gave no date and `published` is first-seen


class TermHit(NamedTuple):
    """Where one watchlist term matched: the term as written, the text found, its field, and its word
    index within that field (a Match's hits; while matching, regex hits count on from the headline into
    the summary, as NEAR compares positions across both).

    A named tuple, not a frozen dataclass like the others: a matched item makes about ten, and a tuple is
    built in a third of the time."""

    term: str
    text: str
    field: str  # "title" | "summary"
    position: int
    score: float


@dataclass(frozen=True, slots=True)
class Match:
    """An item matched a watchlist; `hits` explain why."""

    watchlist: str
    score: float
    hits: tuple[TermHit, ...]

    @property
    def terms(self) -> list[str]:
        """The distinct terms that matched, in first-hit order."""
        seen: dict[str, None] = {}
        for hit in self.hits:
            seen.setdefault(hit.term, None)
        return list(seen)

    @property
    def words(self) -> list[str]:
        """The words the terms took, as the item writes them, distinct and in first-hit order: what an
        alert shows ("Artilleriegranaten", not the term names "Munition, ammunition"). A word that a
        longer phrase shown already holds goes ("Africa Corps" and "Africa" from two terms: "Africa Corps")."""
        seen: dict[str, str] = {}
        for hit in self.hits:
            seen.setdefault((hit.text or hit.term).casefold(), hit.text or hit.term)
        return [text for key, text in seen.items()
                if not any(other != key and f" {key} " in f" {other} " for other in seen)]


@dataclass(frozen=True, slots=True)
class FetchResult:
    """What one fetch produced. `body` is None for 304 and for errors."""

    feed_id: str
    status: int  # HTTP status, 0 when no response
    body: bytes | None = None
    etag: str | None = None
    last_modified: str | None = None
    final_url: str | None = None
    permanent_redirect: bool = False
    content_type: str = ""
    error: str | None = None  # plain words, for the feed status
    transient: bool = True  # when error: worth retrying soon?
    retry_after: float | None = None
    max_age: float | None = None  # Cache-Control max-age hint, seconds
    elapsed_ms: float = 0.0


@dataclass(slots=True)
class FeedState:
    """Stored per-feed state (mutable record owned by the store)."""

    feed_id: str
    url: str
    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None
    last_success: datetime | None = None
    last_attempt: datetime | None = None
    last_error: str | None = None
    failures: int = 0
    next_poll: datetime | None = None
    polls: int = 0
    disabled: bool = False
    last_full_fetch: datetime | None = None
    interval: float | None = None
    ttl: float | None = None
    configured: str | None = None  # the feeds.yaml URL this state follows (`url` may be a 301's target)
    identity: str | None = None  # the feeds.yaml identity its stored keys were made with (None: not known yet)
    configured_interval: float | None = None  # the feeds.yaml interval (0: the global one; None: not known yet)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One message waiting to leave (or already sent)."""

    id: int
    chat_id: int
    kind: str  # alert | edit | digest | notice
    watchlist: str
    story_id: int | None
    payload: str  # JSON of the rendered message
    state: str
    attempts: int
    not_before: datetime
    message_id: int | None = None
    created: datetime | None = None


@dataclass(frozen=True, slots=True)
class PollReport:
    """What one poll cycle did, for logs and the exit code of `poll --once`."""

    feeds_ok: list[str] = field(default_factory=list)
    feeds_not_modified: list[str] = field(default_factory=list)
    feeds_failed: dict[str, str] = field(default_factory=dict)
    # not polled this time: failing and in backoff (id -> last error, streak, next try), or disabled (410)
    feeds_waiting: dict[str, str] = field(default_factory=dict)
    new_items: int = 0
    matched: int = 0
    queued: int = 0
    suppressed: int = 0
