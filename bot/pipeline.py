"""One poll cycle: due feeds -> fetch -> parse -> new? -> match -> story -> record (one txn).

The shell that sequences the stages. CPU work (parsing, matching) runs in a worker thread so the
event loop keeps answering Telegram commands during a big cycle. Delivery is separate (deliver.py):
this module only queues outbox rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import multiprocessing
import os
import random
import threading
import time
from collections.abc import Callable, Container, Iterable, Sequence
from collections.abc import Set as AbstractSet
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Protocol, TypeVar

from bot.config import Config, Settings, Watchlist
from bot.dedup import identity_keys
from bot.errors import ParseError, StoreError
from bot.match import Matcher
from bot.models import FeedSpec, FeedState, FetchResult, Item, Match, OutboxRow, PollReport
from bot.parse import ParsedFeed, parse_document
from bot.store import NewItem
from bot.text import squash

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

CONSOLE_CHAT = 0  # the terminal "chat" used when no Telegram token is set
FAILING_NOTICE_AFTER = 5  # failed polls in a row before the admins hear of it (about 15 min with the defaults)
FULL_FETCH_EVERY = timedelta(hours=4)  # servers that answer 304 with stale validators


class FetcherPort(Protocol):
    async def fetch(self, spec: FeedSpec, state: FeedState, *, conditional: bool = True) -> FetchResult: ...


class StorePort(Protocol):
    def feed_state(self, feed_id: str, url: str) -> FeedState: ...
    def save_feed_state(self, s: FeedState) -> None: ...
    def note_polled(self) -> None: ...
    def seen_keys(self, keys: Iterable[str]) -> set[str]: ...
    def learn_keys(self, known: Sequence[tuple[Sequence[str], str]], now: datetime) -> int: ...
    def unmatched_texts(self, keys: Sequence[str], since: datetime) -> dict[str, tuple[str, str]]: ...
    def record_items(self, new: Sequence[NewItem], state: FeedState | None, now: datetime,
                     notices: Sequence[tuple[int, str]] = (), still_listed: Sequence[str] = (),
                     touch_before: datetime | None = None) -> tuple[list[int], set[int]]: ...
    def subscribers(self, watchlist: str, *, let_in: Container[int] | None = None) -> list[int]: ...
    def queue_notice(self, chat_ids: Sequence[int], text: str, now: datetime) -> None: ...
    def sent_alerts_for_story(self, story_id: int) -> list[OutboxRow]: ...
    def story_chats(self, story_id: int) -> set[int]: ...
    def pending_edit_chats(self, story_id: int) -> set[int]: ...
    def queue_row(self, chat_id: int, kind: str, payload: dict[str, Any], now: datetime, watchlist: str = "",
                  story_id: int | None = None, message_id: int | None = None,
                  replaces: Sequence[int] = ()) -> int: ...


class StoryFolder(Protocol):
    """Finds the story an item belongs to (near duplicates); see dedup.StoryIndex."""

    def find(self, item: Item, now: datetime) -> int | None: ...
    def add_item(self, item: Item, story_id: int) -> None: ...
    def expire(self, now: datetime) -> None: ...


@dataclass
class FeedOutcome:
    """What polling one feed did."""

    feed_id: str
    status: str  # ok | not_modified | error | skipped
    error: str | None = None
    new: int = 0
    matched: int = 0
    queued: int = 0
    suppressed: int = 0
    by_watchlist: dict[str, int] = field(default_factory=dict)  # matches per watchlist (metrics)


@dataclass
class CycleContext:
    """Everything a cycle needs; built by the CLI, reused across cycles."""

    config: Config
    settings: Settings
    store: StorePort
    fetcher: FetcherPort
    matcher: Matcher
    console: bool  # no token: alerts go to the terminal chat
    stories: StoryFolder | None = None
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    on_feed: Callable[[FeedOutcome], None] | None = None  # progress display / metrics
    # Fetched feeds are parsed, matched and written a few at a time (bounds memory in a big cycle),
    # and every store call of a cycle goes to one writer thread (never blocks the event loop).
    processing_slots: int = 4
    _processing: asyncio.Semaphore | None = field(default=None, repr=False)
    _writer: ThreadPoolExecutor | None = field(default=None, repr=False)
    # Big cycles parse in a second process (the GIL keeps threads on one core); small ones in a thread.
    parse_process_from: int = 50  # feeds to parse in one cycle
    _parser: ProcessPoolExecutor | None = field(default=None, repr=False)
    _parser_watchlists: object = field(default=None, repr=False)
    # Feed states the store could not save (a full disk): their backoff holds from memory meanwhile; read
    # from the store, each such feed was due again at every tick, fetched and parsed for nothing.
    _unsaved: dict[str, FeedState] = field(default_factory=dict, repr=False)
    big_cycle: bool = False  # set by run_cycle from the number of due feeds
    # The store is a restored older copy: the latest poll it recorded (feeds not polled since are like new)
    restored_at: datetime | None = None

    async def parse(self, *args: Any) -> tuple[ParsedFeed, list[list[Match]] | None]:
        """parse_document off the event loop. In big cycles a second process parses and also matches
        every item (the GIL keeps threads on one core); otherwise a thread parses and matching
        happens later, for the new items only."""
        if self.big_cycle:
            watchlists = self.config.watchlists
            if self._parser is not None and self._parser_watchlists is not watchlists:
                self._parser.shutdown(wait=False, cancel_futures=True)  # the config was reloaded
                self._parser = None
            if self._parser is None:
                # forkserver: never fork a process that runs threads (the store writer, asyncio's pool)
                self._parser = ProcessPoolExecutor(
                    max_workers=1, mp_context=multiprocessing.get_context("forkserver"),
                    initializer=_child_init, initargs=(watchlists, os.getpid()))
                self._parser_watchlists = watchlists
            try:
                return await asyncio.get_running_loop().run_in_executor(self._parser, _parse_and_match, *args)
            except BrokenProcessPool:
                logger.warning("parse process died; parsing in a thread")
                self._parser = None
        return await asyncio.to_thread(parse_document, *args), None

    async def in_store(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run a store call on the writer thread."""
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mediabot-store")
        return await asyncio.get_running_loop().run_in_executor(self._writer, partial(fn, *args))

    def processing(self) -> asyncio.Semaphore:
        """The slots for the CPU and store stages of a feed."""
        if self._processing is None:
            self._processing = asyncio.Semaphore(self.processing_slots)
        return self._processing

    def close(self) -> None:
        """Stop the writer thread and the parse process (after the last cycle)."""
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None
        if self._parser is not None:
            # Not waiting, and the worker ended: after a cancelled cycle a big feed may still be parsing, and a
            # worker left behind outlived mediabot, holding the caller's stdout and stderr open (a cron job hung).
            for worker in list(getattr(self._parser, "_processes", {}).values()):
                with contextlib.suppress(Exception):
                    worker.terminate()
            self._parser.shutdown(wait=True, cancel_futures=True)  # quick once the worker is gone
            self._parser = None


_LONGEST_RETRY_AFTER = 86400.0  # a bogus far-future Retry-After must not silence a feed for good


def feed_due(spec: FeedSpec, state: FeedState, now: datetime, *, ignore_schedule: bool,
             longest_wait: float = _LONGEST_RETRY_AFTER) -> bool:
    """Is this feed to be polled now? `ignore_schedule` (poll --once) still honours backoff.
    A next poll further ahead than the bot ever waits (`longest_wait`) was set by a clock that ran ahead
    (a host before NTP synced): it is due, or the feed would stay silent until that time came."""
    if not spec.enabled or state.disabled:
        return False
    if state.next_poll is None:
        return True
    if ignore_schedule and state.failures == 0:
        return True
    return state.next_poll <= now or (state.next_poll - now).total_seconds() > longest_wait


def follow_feeds_yaml(spec: FeedSpec, state: FeedState) -> list[str]:
    """Take up what was edited in feeds.yaml since this state was made; returns what changed.

    - The URL: start over at the new address (validators, backoff and a 410's "disabled" belonged to the
      old one). A URL learned from a 301 keeps `configured` as it was, so it is not undone.
    - The identity: the items' keys change with it, so every item the feed lists would look new and old
      stories would alert again. The document is read again (validators dropped), and that poll alerts
      only as a feed's first does (recent items); `identity` follows once it succeeded (see _succeeded).
    - The interval: polled now, and the adaptive interval starts again from the new one.
    """
    changed = []
    if state.configured != spec.url:
        state.url = state.configured = spec.url
        state.etag = state.last_modified = state.body_hash = state.last_error = None
        state.failures = 0
        state.next_poll = None
        state.disabled = False
        changed.append("url")
    if state.identity is not None and state.identity != spec.identity:
        state.etag = state.last_modified = state.body_hash = None
        changed.append("identity")
    interval = float(spec.interval or 0)
    if state.configured_interval is not None and state.configured_interval != interval:
        state.interval = state.next_poll = None
        changed.append("interval")
    state.configured_interval = interval
    return changed


async def run_cycle(ctx: CycleContext, *, ignore_schedule: bool = False) -> PollReport:
    """Poll every due feed concurrently; one feed's failure never stops the others."""
    now = ctx.now()
    if ctx.stories is not None:
        ctx.stories.expire(now)
    feeds = [f for f in ctx.config.feeds if f.enabled]
    states = {f.id: ctx._unsaved.get(f.id) or ctx.store.feed_state(f.id, f.url) for f in feeds}
    for f in feeds:
        if changed := follow_feeds_yaml(f, states[f.id]):
            logger.info("feed edited in feeds.yaml feed=%s changed=%s url=%s identity=%s interval=%s", f.id,
                        ",".join(changed), f.url, f.identity, f.interval or "default")
    longest = max(ctx.settings.poll_max_interval, _LONGEST_RETRY_AFTER)  # backoff and Retry-After never wait longer
    due = [f for f in feeds if feed_due(f, states[f.id], now, ignore_schedule=ignore_schedule, longest_wait=longest)]
    ctx.big_cycle = len(due) >= ctx.parse_process_from
    outcomes = await asyncio.gather(*(poll_feed(ctx, f, states[f.id]) for f in due))
    polled = {f.id for f in due}
    if any(o.status in ("ok", "not_modified") for o in outcomes):  # (a run whose polls all failed notes nothing)
        await ctx.in_store(ctx.store.note_polled)
    report = PollReport(
        feeds_waiting={f.id: _waiting(states[f.id]) for f in feeds
                       if f.id not in polled and (states[f.id].failures or states[f.id].disabled)},
        feeds_ok=[o.feed_id for o in outcomes if o.status == "ok"],
        feeds_not_modified=[o.feed_id for o in outcomes if o.status == "not_modified"],
        feeds_failed={o.feed_id: o.error or "failed" for o in outcomes if o.status == "error"},
        new_items=sum(o.new for o in outcomes),
        matched=sum(o.matched for o in outcomes),
        queued=sum(o.queued for o in outcomes),
        suppressed=sum(o.suppressed for o in outcomes),
    )
    logger.log(
        logging.INFO if due else logging.DEBUG,  # a tick with no feed due is not news
        "cycle done feeds=%d ok=%d not_modified=%d failed=%d new=%d matched=%d queued=%d",
        len(due), len(report.feeds_ok), len(report.feeds_not_modified), len(report.feeds_failed),
        report.new_items, report.matched, report.queued,
    )
    return report


def _waiting(state: FeedState) -> str:
    """Why a feed was not polled this time, for `poll --once`'s summary (cron mode has no /feeds)."""
    error = state.last_error or "failed"
    if state.disabled:
        return f"disabled: {error}"
    when = f", next try {state.next_poll:%Y-%m-%d %H:%M} UTC" if state.next_poll else ""
    return f"{error} ({state.failures}× in a row{when})"


def next_interval(spec: FeedSpec, state: FeedState, settings: Settings, new_items: int,
                  hint: float | None) -> float:
    """Adaptive interval: shorter while a feed publishes, longer while it is quiet, inside the bounds.

    Starts at the feed's `interval` or MEDIABOT_POLL_INTERVAL; halves after a poll with new items,
    grows by half after a quiet one; never below a TTL/Cache-Control hint from the publisher.
    """
    lo, hi = settings.poll_min_interval, settings.poll_max_interval
    base = float(spec.interval or settings.poll_interval)
    current = state.interval or base
    current = max(current / 2, base / 4) if new_items else min(current * 1.5, base * 4)
    if hint:
        current = max(current, min(hint, hi))
    return max(lo, min(hi, current))


def _backoff(failures: int, retry_after: float | None, settings: Settings) -> float:
    if retry_after is not None:
        # Retry-After (RFC 9110 10.2.3) is honoured, but a day at most.
        return min(max(retry_after, settings.poll_min_interval, 1.0), _LONGEST_RETRY_AFTER)
    base = min(settings.poll_max_interval, settings.poll_min_interval * (2 ** min(failures - 1, 10)))
    return float(base * random.uniform(0.8, 1.2))  # jitter: failing feeds must not retry in lockstep


async def poll_feed(ctx: CycleContext, spec: FeedSpec, state: FeedState) -> FeedOutcome:
    """Poll one feed and record what it brought. Never raises for feed trouble."""
    try:
        outcome = await _poll_feed(ctx, spec, state)
        ctx._unsaved.pop(spec.id, None)
    except Exception as exc:  # a bug (with traceback) or a store that cannot be written; the others go on
        if isinstance(exc, StoreError):  # a full disk, a read-only file: words, no traceback
            logger.error("feed not recorded, the state store cannot be written feed=%s error=%s: %s; it is "
                         "polled again next time", spec.id, type(exc).__name__, exc)
        else:
            logger.exception("feed poll crashed feed=%s", spec.id)
        state.last_error = f"internal error: {type(exc).__name__}: {exc}"[:300]
        # What was fetched is not recorded: the next poll must fetch and read it again, not take the
        # document for one it has (a full disk lost every item of it that way, for good).
        state.etag = state.last_modified = state.body_hash = None
        state.failures += 1
        state.next_poll = ctx.now() + timedelta(seconds=_backoff(state.failures, None, ctx.settings))
        try:
            ctx.store.save_feed_state(state)
            ctx._unsaved.pop(spec.id, None)
        except Exception as exc2:
            if spec.id not in ctx._unsaved:  # once, not at every retry
                logger.error("cannot save feed state feed=%s error=%s: %s; its next poll is kept in memory",
                             spec.id, type(exc2).__name__, exc2)
            ctx._unsaved[spec.id] = state
        outcome = FeedOutcome(spec.id, "error", error=state.last_error)
    if ctx.on_feed:
        ctx.on_feed(outcome)
    return outcome


async def _poll_feed(ctx: CycleContext, spec: FeedSpec, state: FeedState) -> FeedOutcome:
    now = ctx.now()
    full = state.last_full_fetch is None or now - state.last_full_fetch >= FULL_FETCH_EVERY
    # The first full fetch of a UTC day reads the document even when it has not changed, so the keys of the
    # items it still lists stay seen: a feed that sits unchanged for months (or answers 304) would otherwise
    # lose them to the store's retention, and its old items would alert again (see _record's still_listed).
    new_day = state.last_full_fetch is None or now.date() != state.last_full_fetch.date()
    result = await ctx.fetcher.fetch(spec, state, conditional=not full)
    now = ctx.now()
    state.last_attempt = now
    if result.error:
        return await _failed(ctx, spec, state, result, now)
    if result.permanent_redirect and result.final_url and result.final_url != state.url:
        # 301/308 (RFC 9110 15.4.2, 15.4.9): use the new URL from now on. Only after a good answer
        # there, so a redirect into an error page does not replace a working URL.
        logger.info("feed moved permanently feed=%s url=%s", spec.id, result.final_url)
        state.url = result.final_url
    if full:
        state.last_full_fetch = now
    state.etag = result.etag or (state.etag if result.status == 304 else None)
    state.last_modified = result.last_modified or (state.last_modified if result.status == 304 else None)
    if result.status == 304 or result.body is None:
        return await _succeeded(ctx, spec, state, now, result, FeedOutcome(spec.id, "not_modified"))
    async with ctx.processing():
        body = result.body
        digest = await asyncio.to_thread(lambda: hashlib.sha256(body).hexdigest())
        if digest == state.body_hash and not (full and new_day):
            return await _succeeded(ctx, spec, state, now, result, FeedOutcome(spec.id, "not_modified"))
        try:
            parsed, found = await ctx.parse(body, spec, now, result.final_url or state.url, result.content_type)
        except ParseError as exc:
            return await _failed(ctx, spec, state, replace(result, error=str(exc), transient=False), now)
        state.body_hash = digest
        state.ttl = parsed.ttl
        return await _record(ctx, spec, state, parsed.items, now, result, found)


async def _failed(ctx: CycleContext, spec: FeedSpec, state: FeedState, result: FetchResult,
                  now: datetime) -> FeedOutcome:
    state.failures += 1
    state.last_error = result.error
    delay = _backoff(state.failures, result.retry_after, ctx.settings)
    if not result.transient:
        delay = max(delay, ctx.settings.poll_interval)
    state.next_poll = now + timedelta(seconds=delay)
    notices: list[tuple[int, str]] = []
    if result.status == 410:
        state.disabled = True
        text = (f"Feed {spec.name} ({spec.id}) is gone (HTTP 410) and was disabled. Remove it from feeds.yaml, "
                "or give it its new URL there.")
        notices = [(a, text) for a in ctx.settings.admins]
        logger.warning("feed disabled feed=%s status=410", spec.id)
    elif state.failures == FAILING_NOTICE_AFTER:  # once per streak: no notice storm from a dead feed
        text = (f"Feed {spec.name} ({spec.id}) failed {state.failures} times in a row: {result.error}. "
                "It is retried with growing pauses; /feeds shows its state. Fix or remove it in feeds.yaml "
                "if it stays broken.")
        notices = [(a, text) for a in ctx.settings.admins]
    logger.warning("feed failed feed=%s status=%s error=%r failures=%d next_in_s=%d",
                   spec.id, result.status, result.error, state.failures, delay)
    await ctx.in_store(ctx.store.record_items, [], state, now, notices)  # like every store call of a cycle
    return FeedOutcome(spec.id, "error", error=result.error)


async def _succeeded(ctx: CycleContext, spec: FeedSpec, state: FeedState, now: datetime, result: FetchResult,
               outcome: FeedOutcome, notices: Sequence[tuple[int, str]] = (),
               new_items: Sequence[NewItem] = (), still_listed: Sequence[str] = ()) -> FeedOutcome:
    if state.failures >= FAILING_NOTICE_AFTER:  # the admins were told it failed: tell them it is back
        text = f"Feed {spec.name} ({spec.id}) works again after {state.failures} failed polls."
        notices = [*notices, *((a, text) for a in ctx.settings.admins)]
    state.failures = 0
    state.last_error = None
    state.last_success = now
    state.polls += 1
    state.identity = spec.identity  # the keys just stored were made with it
    interval = next_interval(spec, state, ctx.settings, outcome.new, state.ttl or result.max_age)
    state.interval = interval
    state.next_poll = now + timedelta(seconds=interval)
    # The one big write of a feed runs in a worker thread: SQLite releases the GIL while it works, and
    # the event loop stays free for commands and deliveries (the store serialises its connection).
    outcome.queued = await ctx.in_store(_write, ctx, new_items, state, now, notices, still_listed)
    logger.info("feed polled feed=%s status=%s new=%d matched=%d queued=%d elapsed_ms=%d",
                spec.id, outcome.status, outcome.new, outcome.matched, outcome.queued, result.elapsed_ms)
    return outcome


async def _record(ctx: CycleContext, spec: FeedSpec, state: FeedState, items: list[Item], now: datetime,
                  result: FetchResult, found: list[list[Match]] | None = None) -> FeedOutcome:
    settings = ctx.settings
    first_poll = _like_a_first_poll(spec, state, now, settings, ctx.restored_at)
    items, frozen = _dates_that_say_nothing(items, now, timedelta(seconds=settings.dedup_window), known=not first_poll)
    keyed = [identity_keys(spec.id, it.guid, it.canonical_link, it.title, spec.identity) for it in items]
    seen = await ctx.in_store(ctx.store.seen_keys, [k for keys in keyed for k in keys])
    fresh = [not any(k in seen for k in keys) for keys in keyed]
    # A known item under a key not seen yet (a new slug, a new guid): remember that key too when the item
    # was edited, so another feed of the outlet carrying the new link does not alert it again.
    edited = [(keys, it.title) for it, keys, is_new in zip(items, keyed, fresh, strict=True)
              if not is_new and not all(k in seen for k in keys)]
    if edited:
        await ctx.in_store(ctx.store.learn_keys, edited, now)
    # items a feed keeps listing stay seen however long it keeps them (and after a clock jump): with the write
    still_listed = [k for keys in keyed for k in keys if k in seen]
    rewritten = await _rewritten(ctx, items, fresh, found)
    new: list[tuple[Item, list[str]]] = []
    known: list[list[Match]] = []  # matches the parse process already found, for the new items
    batch_keys: set[str] = set()
    for index, (it, keys, is_new) in enumerate(zip(items, keyed, fresh, strict=True)):
        if not (is_new or index in rewritten) or any(k in batch_keys for k in keys):  # repeated inside one document
            continue
        batch_keys.update(keys)
        new.append((it, keys))
        if found is not None:
            known.append(found[index])
    # Matching is CPU work: a worker thread (or the parse process already did it), never the event loop.
    if found is not None:
        matches = known
    else:
        matches = await asyncio.to_thread(_match_all, ctx.matcher, [it for it, _ in new]) if new else []
    if frozen and new:
        logger.info("feed dates ignored feed=%s date=%s new=%d (every item carries it: new items count as "
                    "published when first seen)", spec.id, frozen.isoformat(), len(new))
    alertable = _alertable(spec, state, [it for it, _ in new], now, settings,
                           {it.key for (it, _), ms in zip(new, matches, strict=True) if ms}, first_poll)
    notices: list[tuple[int, str]] = []
    suppressed = sum(1 for (it, _), ms in zip(new, matches, strict=True) if ms and it.key not in alertable)
    if alertable.burst and suppressed:
        text = (f"Feed {spec.name} ({spec.id}) suddenly delivered {len(new)} new items ({alertable.burst}); "
                f"they were recorded but {suppressed} matching items did not alert.")
        notices = [(a, text) for a in settings.admins]
        logger.warning("feed burst feed=%s new=%d suppressed=%d reason=%r", spec.id, len(new), suppressed,
                       alertable.burst)
    recipients_cache: dict[str, list[int]] = {}
    rewritten_keys = {items[i].key for i in rewritten}
    names = {w.id: w for w in ctx.config.watchlists}
    records: list[NewItem] = []
    matched = 0
    for (it, keys), ms in zip(new, matches, strict=True):
        chats: list[tuple[int, str]] = []
        if ms:
            matched += 1
        if ms and it.key in alertable:
            for m in ms:
                wl = names.get(m.watchlist)
                if wl is None:
                    continue
                if m.watchlist not in recipients_cache:
                    recipients_cache[m.watchlist] = _recipients(ctx, wl.chats, m.watchlist)
                chats.extend((c, m.watchlist) for c in recipients_cache[m.watchlist])
        # One alert per chat: a chat reached by two watchlists gets the best-scoring one. (Whether the
        # item repeats a story some chats already have is decided on the writer thread, see _write.)
        lists: dict[int, list[str]] = {}
        for c, w in chats:
            lists.setdefault(c, []).append(w)
        unique = [(c, ws[0]) for c, ws in lists.items()]
        records.append(NewItem(it, keys, ms, unique, rewritten=it.key in rewritten_keys,
                               chat_lists={c: ws for c, ws in lists.items() if len(ws) > 1}))
        for m in ms:
            logger.debug("item matched feed=%s item=%s watchlist=%s score=%.0f terms=%s",
                         spec.id, it.key, m.watchlist, m.score, ",".join(m.terms))
    outcome = FeedOutcome(spec.id, "ok", new=len(new), matched=matched, suppressed=suppressed)
    for ms in matches:
        for m in ms:
            outcome.by_watchlist[m.watchlist] = outcome.by_watchlist.get(m.watchlist, 0) + 1
    return await _succeeded(ctx, spec, state, now, result, outcome, notices, records, still_listed)


async def _rewritten(ctx: CycleContext, items: Sequence[Item], fresh: Sequence[bool],
                     found: list[list[Match]] | None) -> set[int]:
    """Positions of known items that matched nothing when stored (within the dedup window) and match now
    that the outlet rewrote them: a bare "Eilmeldung" filled in under the same guid and link. They never
    alerted, so they count as new. (Edits of items that did match never alert again: `learn_keys`.)"""
    known = [i for i, is_new in enumerate(fresh) if not is_new]
    if not known:
        return set()
    # only items first seen lately: a placeholder is filled in within hours; an old item a feed keeps and
    # touches up (or one an upgrade now reads better) must not alert days later
    since = ctx.now() - timedelta(seconds=ctx.settings.dedup_window)
    stored = await ctx.in_store(ctx.store.unmatched_texts, [items[i].key for i in known], since)
    changed = [i for i in known if items[i].key in stored
               and tuple(map(squash, stored[items[i].key])) != (squash(items[i].title), squash(items[i].summary))]
    if not changed:
        return set()
    if found is not None:
        matches = [found[i] for i in changed]
    else:
        matches = await asyncio.to_thread(_match_all, ctx.matcher, [items[i] for i in changed])
    out = {i for i, ms in zip(changed, matches, strict=True) if ms}
    for i in out:
        logger.info("rewritten item matches now feed=%s item=%s", items[i].feed_id, items[i].key)
    return out


def _write(ctx: CycleContext, new_items: Sequence[NewItem], state: FeedState, now: datetime,
           notices: Sequence[tuple[int, str]], still_listed: Sequence[str] = ()) -> int:
    """Everything one feed's poll writes, on the store's single writer thread, in order: the story
    lookup for matched items, the transaction, the new stories into the dedup index, then "also: ..."
    edits for later copies. Because one thread does this for every feed, a copy of a story that
    another feed carried in the same cycle is found (once that feed's write is done). Returns the
    number of alerts queued."""
    # A reload may have paused or removed a list since this feed was matched: no alerts of it any more.
    live = {w.id for w in ctx.config.watchlists if w.enabled}
    new_items = [n if all(w in live for _, w in n.alert_chats)
                 else replace(n, alert_chats=[(c, w) for c, w in n.alert_chats if w in live]) for n in new_items]
    if ctx.stories is not None:
        folded: list[NewItem] = []
        for n in new_items:
            story_id = ctx.stories.find(n.item, now) if n.matches else None
            if story_id is not None:
                # A later copy: it alerts only chats the story has not reached; the others get an edit.
                reached = ctx.store.story_chats(story_id)
                n = replace(n, story_id=story_id, alert_chats=[(c, w) for c, w in n.alert_chats if c not in reached])
            folded.append(n)
        new_items = folded
    story_ids, grown = ctx.store.record_items(new_items, state, now, notices, still_listed,
                                       now - timedelta(days=ctx.settings.retention_days))
    if ctx.stories is not None:  # a new story's first item; its copies stay out (see StoryIndex.check)
        for n, sid in zip(new_items, story_ids, strict=True):
            if sid and n.story_id is None and n.matches:
                ctx.stories.add_item(n.item, sid)
    # Once per story, however many copies this feed carried; none for a copy that added no outlet or headline
    # (an outlet re-publishing its copy, a second feed of the outlet): the edit would change nothing.
    for story_id in dict.fromkeys(n.story_id for n in new_items if n.story_id in grown):
        _queue_also_edits(ctx, story_id, now)
    return sum(len(n.alert_chats) for n, sid in zip(new_items, story_ids, strict=True) if sid)


def _queue_also_edits(ctx: CycleContext, story_id: int, now: datetime) -> None:
    """A later copy of a story: update the alerts already sent for it ("also: Spiegel, Zeit ...")
    with editMessageText instead of a new ping. Alerts still pending pick the sources up when sent."""
    waiting = ctx.store.pending_edit_chats(story_id)  # twenty copies make one edit, not twenty
    for row in ctx.store.sent_alerts_for_story(story_id):
        if row.chat_id not in waiting:
            ctx.store.queue_row(row.chat_id, "edit", json.loads(row.payload), now, watchlist=row.watchlist,
                                story_id=story_id, message_id=row.message_id)


def _match_all(matcher: Matcher, items: Sequence[Item]) -> list[list[Match]]:
    return [matcher.match(it.title, it.summary) for it in items]


# -- the parse process -------------------------------------------------------------------------

_CHILD_MATCHER: Matcher | None = None


def _child_init(watchlists: Sequence[Watchlist], parent: int) -> None:
    """Runs once in the parse process: compile the watchlists there, and end with mediabot. A mediabot
    killed outright (kill -9, the OOM killer) never shuts the pool down, and the process, the forkserver and
    its resource tracker stayed for good (~64 MB), holding the daemon's output pipes open."""
    global _CHILD_MATCHER
    _CHILD_MATCHER = Matcher(watchlists)
    threading.Thread(target=_end_with, args=(parent,), daemon=True, name="end-with-mediabot").start()


def _end_with(parent: int) -> None:
    while True:
        time.sleep(1.0)
        try:
            os.kill(parent, 0)
        except OSError:  # gone (or EPERM: the pid was reused by another user's process)
            os._exit(0)


def _parse_and_match(*args: Any) -> tuple[ParsedFeed, list[list[Match]] | None]:
    parsed = parse_document(*args)
    assert _CHILD_MATCHER is not None  # set by _child_init, the pool's initializer
    return parsed, _match_all(_CHILD_MATCHER, parsed.items)


def _recipients(ctx: CycleContext, chats: Sequence[int], watchlist: str) -> list[int]:
    if ctx.console:
        return [CONSOLE_CHAT]
    # A bot restricted to some users (MEDIABOT_ALLOWED_USERS): a user taken off the list gets no more alerts.
    return list(dict.fromkeys([*chats, *ctx.store.subscribers(watchlist, let_in=ctx.settings.let_in)]))


def _dates_that_say_nothing(items: list[Item], now: datetime, older_than: timedelta,
                            known: bool) -> tuple[list[Item], datetime | None]:
    """A document whose dated items (three or more) all carry one date (a constant, a zero or a frozen
    build date) gives no publication dates: its items count as undated (published when first seen), and
    the date is returned. Otherwise, with a date older than `older_than`, every new item of such a feed
    looked like an old story listed again and never alerted; with a recent one, a new item showed the old
    time and took the lead of its story from the outlet that really published first. A poll like a first
    one (`known` False: see _like_a_first_poll) keeps a recent shared date: it is all it has to tell the
    recent items apart."""
    dates = {it.published for it in items if it.dated}
    if len(dates) != 1 or sum(it.dated for it in items) < 3:
        return items, None
    (date,) = dates
    if not known and now - date <= older_than:
        return items, None
    return [replace(it, dated=False, published=now) if it.dated else it for it in items], date


def _like_a_first_poll(spec: FeedSpec, state: FeedState, now: datetime, settings: Settings,
                       restored_at: datetime | None = None) -> bool:
    """A feed's first poll, its first since its identity was edited (every key changed, so every item it lists
    looks new), its first after a lapse longer than the dedup window (paused, removed and added back,
    failing for days), or its first on a restored older copy of the store (what it alerted since the backup
    looks new): only recent items may alert."""
    return (state.polls == 0 and state.last_success is None) or (
        state.identity is not None and state.identity != spec.identity) or (
        state.last_success is not None and now - state.last_success > timedelta(seconds=settings.dedup_window)) or (
        restored_at is not None and state.last_success is not None and state.last_success <= restored_at)


class _Alertable(set[str]):
    burst: str = ""


def _alertable(spec: FeedSpec, state: FeedState, items: Sequence[Item], now: datetime,
               settings: Settings, matched: AbstractSet[str], first_poll: bool) -> _Alertable:
    """Which new items may alert. A feed's first poll alerts only on recent items (catch-up), as does
    a poll like it (`first_poll`: see _like_a_first_poll); a known feed that suddenly yields many new or mostly
    old items (a migration, changed GUIDs) alerts on at most `burst_cap` recent items, and never on an
    item dated before the dedup window."""
    out = _Alertable()
    window = timedelta(seconds=settings.recent_window)
    recent = [it for it in items if it.dated and now - it.published <= window]
    # What a feed published while it was unknown, its keys changed or it lapsed is no alert any more.
    lapse = timedelta(seconds=settings.dedup_window)
    if first_poll:
        out.update(it.key for it in recent)
        return out
    cap = spec.max_new_alerts if spec.max_new_alerts is not None else settings.burst_cap
    old = len(items) - len(recent)
    undated = [it for it in items if not it.dated]
    # The cap is per poll interval: a feed that published all along while the bot was down (a restart, an
    # upgrade, a full disk) lists many new items for good reason, and a sudden burst is one beyond that.
    expected = state.interval or float(spec.interval or settings.poll_interval)
    gap = (now - state.last_success).total_seconds() if state.last_success else 0.0
    if len(items) > cap * max(1.0, gap / expected):
        out.burst = f"more than the cap of {cap}"
    elif len(items) >= 5 and old - len(undated) > len(items) / 2:
        out.burst = "mostly older than the recent window"
    if out.burst:  # the newest recent items that matched alert, up to the cap (others must not use it up)
        alerting = sorted((it for it in recent if it.key in matched), key=lambda it: it.published, reverse=True)
        out.update(it.key for it in alerting[:cap])
        return out
    # An item dated before the dedup window that a known feed lists for the first time is an old story under
    # new keys (GUIDs reissued, the site moved) or listed again: the story index no longer reaches back that
    # far to tell it from a repeat, so it is recorded, not alerted, whatever the number of items.
    stale = {it.key for it in items if it.dated and now - it.published > lapse}
    out.update(it.key for it in items if it.key not in stale)
    if stale:
        out.burst = (f"{len(stale)} dated before the {int(settings.dedup_window // 3600)} h dedup window: "
                     "reissued GUIDs, a moved site, or old items listed again")
    return out
