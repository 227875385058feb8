"""Delivery: outbox rows -> Telegram (or the terminal), paced inside Telegram's limits.

The outbox is the source of truth: a row is marked sent in its own commit right after Telegram
accepted it, so a crash loses nothing and repeats at most the message in flight.

Pacing (one place decides when a message may leave), from the Bot API FAQ
(https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this):
at most 30 messages in any 1 s window overall, about 1 per second per chat, at most 20 per minute
per group or channel, and after a 429 nothing to that chat before `retry_after` has passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
import warnings
from collections import deque
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo
from typing import IO, Any, Protocol

from bot.alerts import Rendered, digest_dated, digest_order, digest_pages, labels
from bot.errors import (
    ChatUnavailableError,
    DeliveryError,
    MessageGoneError,
    MessageRejectedError,
    RetryLaterError,
    StoreError,
    TokenRejectedError,
)
from bot.models import OutboxRow
from bot.subscribers import ChatPrefs, held_until, lists_muted_until, over_backlog, plan_release

logger = logging.getLogger(__name__)


class Sender(Protocol):
    """Sends rendered messages; raises RetryLaterError / ChatUnavailableError / DeliveryError."""

    async def send(self, chat_id: int, message: Rendered) -> int | None: ...
    async def edit(self, chat_id: int, message_id: int, message: Rendered) -> None: ...


# --------------------------------------------------------------------------- pacing


class Pacer:
    """Sliding-window limits: global, per chat, per group/channel, plus per-chat retry_after blocks."""

    def __init__(self, per_second: int = 30, window: float = 1.0, chat_interval: float = 1.0,
                 group_per_minute: int = 20, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second = per_second
        # A small margin: the server counts arrivals, which jitter by a few ms against our clock.
        self.window = window * 1.03
        self.chat_interval = chat_interval
        self.group_per_minute = group_per_minute
        self.clock = clock
        # Messages are spread evenly over the window instead of leaving in bursts of 30: a burst sits
        # on the server's window edge (429 risk), and a crash mid fan-out finds fewer in flight.
        self.spacing = self.window / per_second
        self._slot = 0.0  # the earliest time the next message may leave
        self._global: deque[float] = deque()
        self._chat_last: dict[int, float] = {}
        self._group: dict[int, deque[float]] = {}
        self._blocked: dict[int, float] = {}

    def wait_time(self, chat_id: int) -> float:
        """Seconds until a message to `chat_id` may leave (0 = now)."""
        now = self.clock()
        waits = [self.global_wait()]
        last = self._chat_last.get(chat_id)
        if last is not None:
            waits.append(last + self.chat_interval - now)
        if chat_id < 0:  # groups, supergroups and channels have negative ids
            log = self._group.get(chat_id)
            if log:
                while log and now - log[0] >= 60.0:
                    log.popleft()
                if len(log) >= self.group_per_minute:
                    waits.append(log[0] + 60.0 - now)
        blocked = self._blocked.get(chat_id)
        if blocked is not None:
            waits.append(blocked - now)
        return max(waits)

    def global_wait(self) -> float:
        """Seconds until any message may leave (the overall limit and even spacing)."""
        now = self.clock()
        while self._global and now - self._global[0] >= self.window:
            self._global.popleft()
        waits = [0.0, self._slot - now]
        if len(self._global) >= self.per_second:
            waits.append(self._global[0] + self.window - now)
        return max(waits)

    def record(self, chat_id: int) -> None:
        """A message to `chat_id` is leaving now."""
        now = self.clock()
        self._global.append(now)
        # The next slot follows the previous slot, not the (slightly late) actual send, so timer
        # lateness does not add up; after a pause at most half a slot is made up, so nothing bursts.
        self._slot = max(self._slot, now - self.spacing / 2) + self.spacing
        self._chat_last[chat_id] = now
        if chat_id < 0:
            self._group.setdefault(chat_id, deque()).append(now)

    def block(self, chat_id: int, seconds: float) -> None:
        """Nothing to this chat for `seconds` (Telegram's retry_after)."""
        self._blocked[chat_id] = max(self._blocked.get(chat_id, 0.0), self.clock() + seconds)

    def hold_all(self, seconds: float) -> None:
        """Nothing to any chat for `seconds` (the token was rejected: every send would fail alike)."""
        self._slot = max(self._slot, self.clock() + seconds)


# --------------------------------------------------------------------------- senders


class ConsoleSender:
    """Prints alerts to the terminal (no token set): the same outbox path, another sink."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout
        self._next_id = 1

    async def send(self, chat_id: int, message: Rendered) -> int | None:
        print("─" * 72, file=self.stream)
        print(message.plain, file=self.stream)
        self.stream.flush()
        self._next_id += 1
        return self._next_id

    async def edit(self, chat_id: int, message_id: int, message: Rendered) -> None:
        lines = message.plain.splitlines()
        also = next((line for line in lines if line.startswith("➕")), lines[-1] if lines else "")
        print(f"(update to alert #{message_id}: {lines[0] if lines else ''}) {also}", file=self.stream)
        for line in lines:
            if line.startswith("↳"):  # other outlets' own headlines for the story
                print(f"    {line}", file=self.stream)
        self.stream.flush()


class TelegramSender:
    """python-telegram-bot's Bot, with its errors mapped to ours by what the caller must do next."""

    def __init__(self, bot: Any) -> None:
        self.bot = bot
        self.on_topic_gone: Callable[[int], None] | None = None  # a chat's forum topic was deleted or closed
        # PTB 22's RetryAfter reads its own deprecated int `retry_after` while being constructed; under
        # `-W error` that warning would replace the 429 itself. We read `_retry_after` (a timedelta).
        from telegram.warnings import PTBDeprecationWarning

        warnings.filterwarnings("ignore", message=r".*`retry_after`.*", category=PTBDeprecationWarning)

    async def send(self, chat_id: int, message: Rendered) -> int | None:
        from telegram.constants import ParseMode

        try:
            sent = await self.bot.send_message(
                chat_id=chat_id, text=message.html, parse_mode=ParseMode.HTML, message_thread_id=message.thread,
                reply_markup=_keyboard(message), link_preview_options=_no_preview(),
            )
        except Exception as exc:
            if message.thread is not None and any(w in str(exc).lower() for w in ("thread not found", "topic_closed")):
                # the forum topic it subscribed in was deleted or closed: the General topic, rather than nowhere
                logger.warning("forum topic gone or closed, posting in the General topic from now on chat=%s "
                               "topic=%s", chat_id, message.thread)
                if self.on_topic_gone is not None:
                    self.on_topic_gone(chat_id)
                return await self.send(chat_id, replace(message, thread=None))
            plain = _plain_fallback(exc, message)
            if plain is None:
                raise _map_error(exc) from exc
            logger.warning("html rejected, resending as plain text chat=%s error=%s", chat_id, exc)
            try:
                sent = await self.bot.send_message(chat_id=chat_id, text=plain.plain, reply_markup=_keyboard(plain),
                                                   message_thread_id=plain.thread)
            except Exception as exc2:
                raise _map_error(exc2) from exc2
        return int(sent.message_id)

    async def edit(self, chat_id: int, message_id: int, message: Rendered) -> None:
        from telegram.constants import ParseMode
        from telegram.error import BadRequest

        try:
            await self.bot.edit_message_text(
                chat_id=chat_id, message_id=message_id, text=message.html, parse_mode=ParseMode.HTML,
                reply_markup=_keyboard(message), link_preview_options=_no_preview(),
            )
        except BadRequest as exc:
            text = str(exc).lower()
            if "not modified" in text:
                return
            if "message to edit not found" in text or "message can't be edited" in text:
                raise MessageGoneError(str(exc)) from exc
            plain = _plain_fallback(exc, message)
            if plain is None:
                raise _map_error(exc) from exc
            logger.warning("html rejected, editing as plain text chat=%s error=%s", chat_id, exc)
            try:
                await self.bot.edit_message_text(chat_id=chat_id, message_id=message_id, text=plain.plain,
                                                 reply_markup=_keyboard(plain))
            except BadRequest as exc2:
                if "not modified" not in str(exc2).lower():
                    raise _map_error(exc2) from exc2
            except Exception as exc2:
                raise _map_error(exc2) from exc2
        except Exception as exc:
            raise _map_error(exc) from exc


def _no_preview() -> Any:
    from telegram import LinkPreviewOptions

    return LinkPreviewOptions(is_disabled=True)


def _keyboard(message: Rendered) -> Any:
    if not message.buttons:
        return None
    from telegram import InlineKeyboardButton, InlineKeyboardMarkup

    return InlineKeyboardMarkup([[
        InlineKeyboardButton(b.label, url=b.url) if b.url else InlineKeyboardButton(b.label, callback_data=b.callback)
        for b in message.buttons
    ]])


def _plain_fallback(exc: Exception, message: Rendered) -> Rendered | None:
    """The message to send instead when Telegram refused it for its markup, or None for other refusals.
    HTML it cannot parse: the plain text. A link it will not take (its URL rules are stricter than ours can
    know): the plain text, which shows the link as text, without the link button."""
    from telegram.error import BadRequest

    if not isinstance(exc, BadRequest):
        return None
    text = str(exc).lower()
    if "parse entities" in text:
        return message
    if "url" in text and any(w in text for w in ("invalid", "wrong", "unsupported", "host")):
        return replace(message, buttons=tuple(b for b in message.buttons if not b.url))
    return None


def retry_after_seconds(exc: Any) -> float:
    """RetryAfter's delay in seconds, without touching the deprecated int/timedelta property."""
    value = getattr(exc, "_retry_after", None)
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value if value is not None else 1.0)


# Telegram's 400 answers for a chat the bot is in but may not post to: a channel admin without "Post
# messages", a group where members may not write. (A forum's closed General topic is a refused message:
# the group stays on, and a /subscribe in another topic moves its alerts there.)
_NO_RIGHTS = ("need administrator rights", "not enough rights", "have no rights to send")


def _map_error(exc: Exception) -> DeliveryError:
    from telegram.error import BadRequest, ChatMigrated, Forbidden, InvalidToken, NetworkError, RetryAfter, TimedOut

    if isinstance(exc, InvalidToken):  # 401/404 on a method that exists: the token itself
        return TokenRejectedError()
    if isinstance(exc, RetryAfter):
        return RetryLaterError(f"flood control: retry after {retry_after_seconds(exc):g} s", retry_after_seconds(exc))
    if isinstance(exc, ChatMigrated):
        return ChatUnavailableError("group became a supergroup", migrated_to=int(exc.new_chat_id))
    if isinstance(exc, Forbidden):
        return ChatUnavailableError(f"forbidden: {exc}")
    if isinstance(exc, BadRequest):
        text = str(exc).lower()
        if "chat not found" in text or "user is deactivated" in text or "chat_write_forbidden" in text:
            return ChatUnavailableError(f"chat unavailable: {exc}")
        if any(w in text for w in _NO_RIGHTS):  # in the chat, but may not post there: 400, not 403
            return ChatUnavailableError(f"may not post: {exc}")
        return MessageRejectedError(f"rejected by Telegram: {exc}")
    if isinstance(exc, (TimedOut, NetworkError)):
        # The request went out and its answer was lost (no answer in time, the connection dropped mid-way):
        # Telegram may have taken the message. Not connected, no free connection, or an answer that came (a
        # 502 from Telegram's front): it did not.
        import httpx

        lost = (httpx.ReadTimeout, httpx.WriteTimeout, httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)
        return RetryLaterError(f"network: {exc}", 0.0, maybe_sent=isinstance(exc.__cause__, lost))
    return DeliveryError(f"{type(exc).__name__}: {exc}")


# --------------------------------------------------------------------------- the worker


class OutboxStore(Protocol):
    def due(self, now: datetime, limit: int = 500) -> list[OutboxRow]: ...
    def mark_sent(self, row_id: int, message_id: int | None, now: datetime) -> None: ...
    def mark_retry(self, row_id: int, not_before: datetime, error: str) -> None: ...
    def mark_failed(self, row_id: int, error: str) -> None: ...
    def deactivate_chat(self, chat_id: int) -> None: ...
    def migrate_chat(self, old: int, new: int) -> None: ...
    def forget_message(self, chat_id: int, message_id: int) -> None: ...
    def next_due(self) -> datetime | None: ...
    def pending_edit_chats(self, story_id: int) -> set[int]: ...
    def queue_row(self, chat_id: int, kind: str, payload: dict[str, Any], now: datetime,
                  watchlist: str = "", story_id: int | None = None, message_id: int | None = None,
                  replaces: Sequence[int] = ()) -> int: ...


class HoldStore(Protocol):
    def chat(self, chat_id: int) -> dict[str, Any] | None: ...
    def mute_map(self, chat_id: int) -> dict[str, datetime]: ...
    def held_chats(self) -> list[int]: ...
    def outbox_rows(self, state: str | None = None, chat_id: int | None = None) -> list[OutboxRow]: ...
    def set_state(self, row_ids: Sequence[int], state: str, not_before: datetime | None = None) -> None: ...
    def queue_row(self, chat_id: int, kind: str, payload: dict[str, Any], now: datetime,
                  watchlist: str = "", story_id: int | None = None, message_id: int | None = None,
                  replaces: Sequence[int] = ()) -> int: ...


STORE_RETRY = 5.0  # s between tries while the store cannot record what was sent (a full disk)


class _Unrecorded(Exception):
    """Telegram accepted the message; the store could not record it."""

    def __init__(self, message_id: int | None) -> None:
        super().__init__("sent but not recorded")
        self.message_id = message_id


TOKEN_RETRY = 300.0  # s between tries while Telegram rejects the token (a fix needs a restart anyway)
Renderer = Callable[[OutboxRow], Rendered | None]  # None: nothing to send (row is dropped as sent)


class Router(Protocol):
    """Holds rows for mute/quiet hours/digests and releases them later as one digest."""

    def route(self, rows: list[OutboxRow], now: datetime) -> list[OutboxRow]: ...
    def release(self, now: datetime) -> int: ...
    def merge_backlog(self, chat_id: int, now: datetime, busy: Container[int]) -> bool: ...


@dataclass
class DeliveryStats:
    """Counts for logs, metrics and benchmarks."""

    sent: int = 0
    retried: int = 0
    failed: int = 0
    rate_limited: int = 0
    chats_gone: int = 0
    maybe_repeated: int = 0  # sent again after an answer was lost (the message may arrive twice)


class Deliverer:
    """Takes due rows, paces them, sends them concurrently (one in flight per chat), records outcomes."""

    def __init__(self, store: OutboxStore, sender: Sender, render: Renderer, *, pacer: Pacer | None = None,
                 router: Router | None = None, now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 max_in_flight: int = 30, on_sent: Callable[[OutboxRow], None] | None = None) -> None:
        self.store = store
        self.sender = sender
        self.render = render
        self.pacer = pacer or Pacer()
        self.router = router
        self.now = now
        self.max_in_flight = max_in_flight
        self.stats = DeliveryStats()
        self.on_sent = on_sent
        # (chat id, why, the supergroup it became or None): a chat that can't be reached, or moved
        self.on_chat_gone: Callable[[int, str, int | None], None] | None = None
        self._wake = asyncio.Event()
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        self._stopping = False
        self._next_release = 0.0
        self._cache: list[OutboxRow] = []
        self._cache_until = 0.0
        self._dirty = True
        self._in_flight_rows: set[int] = set()
        self._routed: set[int] = set()  # rows the router already let through (not routed again)
        self._backlogged: set[int] = set()  # chats whose last send was deferred (an outage, flood control)
        self.unreachable: tuple[datetime, str] | None = None  # since when sends fail for the network, and why
        self._maybe_sent: set[int] = set()  # rows whose answer was lost once (counted once)
        self.token_rejected = False  # Telegram refused the token: rows wait, the operator must act
        self._unrecorded: dict[int, int | None] = {}  # row -> message id: sent, the store could not record it
        self._store_said = 0.0

    def wake(self) -> None:
        """New rows were queued."""
        self._dirty = True
        self._wake.set()

    def stop(self) -> None:
        """Send nothing new; `run` returns once the messages in flight are settled."""
        self._stopping = True
        self._wake.set()

    async def drain(self, timeout: float | None = None) -> DeliveryStats:
        """Send everything due now and return when the outbox has nothing left that is due."""
        await self.run(until_idle=True, timeout=timeout)
        return self.stats

    async def run(self, *, until_idle: bool = False, timeout: float | None = None) -> None:
        """The delivery loop. With `until_idle`, stop once nothing is due or in flight. However it ends (also
        cancelled: a stop that could not wait for a hanging send), what was sent but not recorded gets a last
        try to be recorded, and is logged if it cannot: it would go out again at the next start."""
        try:
            await self._run(until_idle, timeout)
        finally:
            if self._unrecorded:  # a last try (the store's own wait on the loop, 2 s)
                self._record_unrecorded()
                if self._unrecorded:
                    logger.error("%d messages were sent but the state store could not record them; they may be "
                                 "sent again at the next start", len(self._unrecorded))

    async def _run(self, until_idle: bool, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stopping:
            if deadline is not None and time.monotonic() > deadline:
                break
            now = self.now()
            if self._unrecorded and self.pacer.global_wait() <= 0:
                self._record_unrecorded()
            try:
                if self.router is not None and time.monotonic() >= self._next_release:
                    self._next_release = time.monotonic() + 1.0
                    if self.router.release(now):
                        self._dirty = True
                rows = self._due(now)
            except Exception as exc:  # the store cannot be read or written (a full disk): wait, never die
                self._store_failed(exc)
                if until_idle:
                    break
                await self._sleep(STORE_RETRY)
                continue
            started = 0
            soonest = 1.0
            leaving: set[int] = set()
            considered: set[int] = set()  # only a chat's first due row can leave in this pass
            for row in rows:
                if row.chat_id in considered:
                    continue
                considered.add(row.chat_id)
                if row.chat_id in self._in_flight:
                    continue
                if len(self._in_flight) >= self.max_in_flight:
                    break
                overall = self.pacer.global_wait()
                if overall > 0:  # nothing may leave for any chat yet: don't scan the rest
                    soonest = min(soonest, overall)
                    break
                wait = self.pacer.wait_time(row.chat_id)
                if wait > 0:
                    soonest = min(soonest, wait)
                    continue
                self.pacer.record(row.chat_id)
                task = asyncio.create_task(self._deliver(row))
                self._in_flight[row.chat_id] = task
                self._in_flight_rows.add(row.id)
                task.add_done_callback(self._forget(row.chat_id, row.id))
                leaving.add(row.id)
                started += 1
            if leaving:
                self._cache = [r for r in self._cache if r.id not in leaving]
            if not rows and not self._in_flight:
                nxt = self.store.next_due()
                if until_idle:
                    # a row deferred by a short retry_after is waited for (never sent before it passes)
                    ahead = None if nxt is None else (nxt - self.now()).total_seconds()
                    if ahead is None or ahead > 60:
                        break
                    await self._sleep(max(0.01, ahead))
                    continue
                delay = 5.0 if nxt is None else max(0.05, min(5.0, (nxt - self.now()).total_seconds()))
                await self._sleep(delay)
                continue
            if started == 0:
                if self._in_flight:
                    await asyncio.wait(list(self._in_flight.values()), timeout=max(0.005, soonest),
                                       return_when=asyncio.FIRST_COMPLETED)
                else:
                    if until_idle and all(self.pacer.wait_time(r.chat_id) > 60 for r in rows):
                        break  # only long-blocked chats left: poll --once leaves them for next time
                    await self._sleep(max(0.005, soonest))
            else:
                await asyncio.sleep(0)
        if self._in_flight:
            await asyncio.gather(*self._in_flight.values(), return_exceptions=True)

    def _due(self, now: datetime) -> list[OutboxRow]:
        """Due rows, routed. The query and the routing run when something changed or every 0.5 s,
        not once per message: at 30 messages/s a fan-out to 1,000 chats would re-read 1,000 rows
        30 times a second."""
        mono = time.monotonic()
        if self._dirty or not self._cache or mono >= self._cache_until:
            self._dirty = False
            self._cache_until = mono + 0.5
            rows = self.store.due(now, limit=2000)
            if self.router is not None:
                # A chat whose sends were deferred (Telegram down, flood control) piles up alerts in retry: while
                # it does, its whole pile, not only what is due, is weighed against the digest threshold. Each
                # row was routed when it was queued, a few per cycle, and after an outage the chat got a flood.
                backlogged = {r.chat_id for r in rows if r.chat_id in self._backlogged}
                if [c for c in backlogged if self.router.merge_backlog(c, now, self._in_flight_rows)]:
                    rows = self.store.due(now, limit=2000)
                fresh = {r.chat_id for r in rows if r.id not in self._routed}
                if fresh:
                    # A chat's rows routed before may still wait (Telegram down, the chat paced): its backlog is
                    # all of them. Routing only the new ones, an outage that queued a few per cycle never
                    # reached the digest threshold, and the chat got a flood once Telegram was back.
                    batch = [r for r in rows if r.chat_id in fresh and r.id not in self._in_flight_rows]
                    self._routed.difference_update(r.id for r in batch)
                    self._routed.update(r.id for r in self.router.route(batch, now))
                    rows = [r for r in rows if r.id in self._routed]
            # a row in flight is still pending in the store; it must never be picked up twice, nor one sent
            # whose record the store could not write
            self._cache = [r for r in rows if r.id not in self._in_flight_rows and r.id not in self._unrecorded]
        return self._cache

    def _forget(self, chat_id: int, row_id: int) -> Callable[[asyncio.Task[None]], None]:
        def done(_task: asyncio.Task[None]) -> None:
            self._in_flight.pop(chat_id, None)
            self._in_flight_rows.discard(row_id)

        return done

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    async def _deliver(self, row: OutboxRow) -> None:
        """Send one row and record the outcome. Telegram may accept a message the store then cannot record
        (a full disk): the row is remembered as sent in memory, so it is never sent again by this process,
        and nothing more leaves until the store records again (each message sent meanwhile would be sent
        a second time after a restart)."""
        try:
            await self._send_row(row)
        except _Unrecorded as exc:
            self._unrecorded[row.id] = exc.message_id
            self._store_failed(exc.__cause__ or exc)
        except StoreError as exc:  # the store failed while recording a retry or a failure: try again later
            self._dirty = True
            self._store_failed(exc)
        except Exception:  # a bug in the bookkeeping: the row stays as the store has it; its chat waits a minute
            self._dirty = True
            self.pacer.block(row.chat_id, 60.0)
            logger.exception("delivery bookkeeping crashed chat=%s row=%s", row.chat_id, row.id)

    def _store_failed(self, exc: BaseException) -> None:
        self.pacer.hold_all(STORE_RETRY)
        now = time.monotonic()
        if now - self._store_said >= 60:
            self._store_said = now
            logger.error("state store cannot record deliveries, sending paused (%s: %s); %d sent messages are "
                         "kept in memory until it can", type(exc).__name__, exc, len(self._unrecorded))

    def _record_unrecorded(self) -> None:
        """Write down what was sent while the store could not record it."""
        for row_id, message_id in list(self._unrecorded.items()):
            try:
                self.store.mark_sent(row_id, message_id, self.now())
            except Exception as exc:
                self._store_failed(exc)
                return
            del self._unrecorded[row_id]
        logger.info("state store records again; %s", "what was sent is recorded" if self._stopping else
                    "sending resumes")
        self._store_said = 0.0

    def _chat_gone(self, chat_id: int, reason: str, migrated_to: int | None) -> None:
        if self.on_chat_gone is not None:
            try:
                self.on_chat_gone(chat_id, reason, migrated_to)
            except Exception:
                logger.exception("on_chat_gone hook failed chat=%s", chat_id)

    async def _send_row(self, row: OutboxRow) -> None:
        self._routed.discard(row.id)  # a row deferred below is routed again when due again
        try:
            message = self.render(row)
            if message is None:
                self.store.mark_sent(row.id, None, self.now())
                return
            if row.kind == "edit" and row.message_id:
                await self.sender.edit(row.chat_id, row.message_id, message)
                message_id: int | None = row.message_id
            else:
                message_id = await self.sender.send(row.chat_id, message)
        except RetryLaterError as exc:
            self._dirty = True  # the outbox changed in a way the cached due rows don't show
            delay = exc.retry_after
            if delay <= 0:  # network trouble: back off exponentially
                delay = min(300.0, 2.0 ** min(row.attempts + 1, 8))
                if self.unreachable is None:
                    self.unreachable = (self.now(), str(exc))
            else:
                self.stats.rate_limited += 1
            self.pacer.block(row.chat_id, delay)
            self.store.mark_retry(row.id, self.now() + timedelta(seconds=delay), str(exc))
            self.stats.retried += 1
            self._backlogged.add(row.chat_id)
            if exc.maybe_sent and row.kind != "edit":  # an edit made twice changes nothing
                # There is no asking Telegram whether it took the message: sending it again may repeat it,
                # not sending it may lose it. A repeat is the lesser harm; it is counted (once a message) and said.
                if row.id not in self._maybe_sent:
                    self._maybe_sent.add(row.id)
                    self.stats.maybe_repeated += 1
                logger.warning("send deferred, answer lost: the message may have gone out and may arrive twice "
                               "chat=%s row=%s retry_in_s=%.1f reason=%s", row.chat_id, row.id, delay, exc)
                return
            logger.warning("send deferred chat=%s row=%s retry_in_s=%.1f reason=%s", row.chat_id, row.id, delay, exc)
            return
        except MessageGoneError as exc:
            # Someone deleted the alert, or it is past Telegram's edit window: nothing failed, and later
            # copies of the story must not try again (one edit per copy would each be "rejected")
            self._dirty = True
            logger.info("alert message gone, no more 'also' edits chat=%s message=%s reason=%s",
                        row.chat_id, row.message_id, exc)
            if row.message_id:
                self.store.forget_message(row.chat_id, row.message_id)
            self.store.mark_sent(row.id, None, self.now())
            return
        except TokenRejectedError as exc:
            # Not the row's fault: keep it (and every other) pending, try again in a while, say so once
            self._dirty = True
            self.pacer.hold_all(TOKEN_RETRY)
            self.store.mark_retry(row.id, self.now() + timedelta(seconds=TOKEN_RETRY), str(exc))
            self.stats.retried += 1
            if not self.token_rejected:
                logger.error("%s; alerts stay queued", exc)
            self.token_rejected = True
            return
        except ChatUnavailableError as exc:
            self._dirty = True  # the outbox changed in a way the cached due rows don't show
            if exc.migrated_to is not None:
                logger.warning("chat migrated chat=%s new_chat=%s", row.chat_id, exc.migrated_to)
                self.store.migrate_chat(row.chat_id, exc.migrated_to)
                self._chat_gone(row.chat_id, str(exc), exc.migrated_to)
                return
            self.stats.chats_gone += 1
            if "initiate conversation" in str(exc):  # a bot cannot write first; a bot admin's notices are lost too
                logger.error("chat %s has never started the bot (a bot cannot write first): nothing reaches it "
                             "until that user sends /start to the bot", row.chat_id)
            else:
                logger.warning("chat unavailable, its alerts stop until it is back chat=%s reason=%s",
                               row.chat_id, exc)
            self.store.deactivate_chat(row.chat_id)
            self._chat_gone(row.chat_id, str(exc), None)
            return
        except DeliveryError as exc:
            self._dirty = True  # the outbox changed in a way the cached due rows don't show
            if row.attempts >= 4 or isinstance(exc, MessageRejectedError):
                self.stats.failed += 1
                logger.error("send failed chat=%s row=%s error=%s", row.chat_id, row.id, exc)
                self.store.mark_failed(row.id, str(exc))
            else:
                delay = min(300.0, 2.0 ** (row.attempts + 1))
                self.store.mark_retry(row.id, self.now() + timedelta(seconds=delay), str(exc))
                self.stats.retried += 1
            return
        except Exception:
            self._dirty = True  # the outbox changed in a way the cached due rows don't show
            logger.exception("send crashed chat=%s row=%s", row.chat_id, row.id)
            self.store.mark_retry(row.id, self.now() + timedelta(seconds=60), "internal error")
            return
        self.token_rejected = False
        self.unreachable = None
        self._maybe_sent.discard(row.id)
        self._backlogged.discard(row.chat_id)
        try:
            self.store.mark_sent(row.id, message_id, self.now())
        except Exception as exc:
            raise _Unrecorded(message_id) from exc
        self.stats.sent += 1
        logger.debug("sent chat=%s row=%s kind=%s", row.chat_id, row.id, row.kind)
        if row.kind in ("alert", "edit") and row.story_id is not None and message_id:
            self._catch_up(row, message, message_id)
        if self.on_sent:
            try:
                self.on_sent(row)
            except Exception:  # a metrics hook must not look like a failed delivery
                logger.exception("on_sent hook failed row=%s", row.id)

    def _catch_up(self, row: OutboxRow, sent: Rendered, message_id: int) -> None:
        """A copy of the story recorded while this alert (or its last edit) was on its way: the pipeline
        queued no edit for it (the row was not sent yet, or an edit was already waiting), so the message
        would never name that outlet. Rendered again now, a difference means an edit is due."""
        assert row.story_id is not None
        now_shown = self.render(row)
        if now_shown is None or now_shown.html == sent.html:
            return
        if row.chat_id in self.store.pending_edit_chats(row.story_id):
            return
        self.store.queue_row(row.chat_id, "edit", payload_of(row), self.now(), watchlist=row.watchlist,
                             story_id=row.story_id, message_id=message_id)
        self._dirty = True
        logger.debug("catch-up edit queued chat=%s story=%s", row.chat_id, row.story_id)


_LOOK_AGAIN = timedelta(minutes=1)


class HoldRouter:
    """Applies each chat's mute, quiet hours and digest setting to due alerts (decisions in
    `bot.subscribers`), and turns a backlog over `threshold` into one digest instead of a flood."""

    def __init__(self, store: HoldStore, tz: tzinfo, threshold: int = 10, language: str = "de",
                 names: Callable[[], Mapping[str, str]] | None = None) -> None:
        self.store = store
        self.tz = tz
        self.language = language  # for a chat with none of its own (a `chats:` channel)
        self.threshold = threshold
        self.names = names or dict  # watchlist id -> name, as the digest will show it (for paging)
        # chat -> when its held alerts next need a look. `release` runs every second; without this it
        # read every holding chat's settings and rows each time (a newsroom's quiet night: all of them).
        # A minute at most, so a hold shortened without a `release_chat` call (a second, shorter /mute)
        # still ends within a minute.
        self._next_look: dict[int, datetime] = {}

    def _until(self, row: OutboxRow, prefs: ChatPrefs, mutes: dict[str, datetime], now: datetime) -> datetime | None:
        muted = lists_muted_until(mutes, payload_of(row).get("lists") or [row.watchlist], now) if mutes else None
        return held_until(prefs, row.created or row.not_before, now, self.tz, muted)

    def route(self, rows: list[OutboxRow], now: datetime) -> list[OutboxRow]:
        """Hold what must wait; merge a chat's backlog into a digest; return what may go now."""
        out: list[OutboxRow] = []
        by_chat: dict[int, list[OutboxRow]] = {}
        for row in rows:
            if row.kind == "alert":
                by_chat.setdefault(row.chat_id, []).append(row)
            else:
                out.append(row)
        for chat_id, alerts in by_chat.items():
            free = self._hold(chat_id, alerts, now)
            if over_backlog(len(free), self.threshold):
                digest_id = self._queue_digest(chat_id, free, now)
                logger.info("backlog merged into a digest chat=%s alerts=%d row=%s", chat_id, len(free), digest_id)
                continue
            out.extend(free)
        out.sort(key=lambda r: (r.kind == "edit", r.not_before, r.id))  # as the store's due()
        return out

    def _hold(self, chat_id: int, alerts: Sequence[OutboxRow], now: datetime) -> list[OutboxRow]:
        """Hold the chat's alerts its mute or quiet hours hold (state 'held'); returns the others."""
        prefs = ChatPrefs.from_row(self.store.chat(chat_id))
        mutes = self.store.mute_map(chat_id)
        held: list[int] = []
        free: list[OutboxRow] = []
        for r in alerts:  # one pass: a set of held ids rebuilt per row was quadratic in the backlog
            if self._until(r, prefs, mutes, now) is None:
                free.append(r)
            else:
                held.append(r.id)
        if held:
            self.store.set_state(held, "held")
            self._next_look.pop(chat_id, None)
            logger.debug("alerts held chat=%s count=%d", chat_id, len(held))
        return free

    def merge_backlog(self, chat_id: int, now: datetime, busy: Container[int]) -> bool:
        """A chat whose sends are deferred (an outage): hold what its mute or quiet hours hold, and merge the
        rest of its waiting alerts (due or in retry; not `busy`: in flight) into a digest when there are more
        than the threshold, or into the digest already waiting for it (alerts queued behind it came singly, or
        each as a digest of one). Returns whether the outbox changed."""
        rows = self.store.outbox_rows("pending", chat_id)
        alerts = [r for r in rows if r.kind == "alert" and r.id not in busy]
        waiting_digests = [r for r in rows if r.kind == "digest" and r.id not in busy]
        if not alerts:
            return False
        free = self._hold(chat_id, alerts, now)
        if not free or not (waiting_digests or over_backlog(len(free), self.threshold)):
            return len(free) < len(alerts)
        digest_id = self._queue_digest(chat_id, free, now, join=waiting_digests)
        logger.info("backlog after deferred sends merged into a digest chat=%s alerts=%d row=%s", chat_id,
                    len(free), digest_id)
        return True

    def release(self, now: datetime) -> int:
        """Send held alerts whose hold has ended: one as it was, several as ONE digest. Returns rows freed."""
        freed = 0
        holding = self.store.held_chats()
        for chat_id in holding:
            look = self._next_look.get(chat_id)
            if look is None or look <= now:
                freed += self.release_chat(chat_id, now)
        if len(self._next_look) > len(holding):
            for chat_id in set(self._next_look) - set(holding):
                del self._next_look[chat_id]
        return freed

    def release_chat(self, chat_id: int, now: datetime) -> int:
        """Release one chat's held alerts that may go now (after /unmute, at the digest time, ...)."""
        prefs = ChatPrefs.from_row(self.store.chat(chat_id))
        mutes = self.store.mute_map(chat_id)
        rows = self.store.outbox_rows("held", chat_id)
        untils = [(r.id, self._until(r, prefs, mutes, now)) for r in rows]
        plan = plan_release(untils)
        waits = [u for _, u in untils if u is not None]
        self._next_look[chat_id] = min([*waits, now + _LOOK_AGAIN])
        if not plan.row_ids:
            return 0
        if plan.as_digest:
            self._queue_digest(chat_id, [r for r in rows if r.id in plan.row_ids], now)
        else:
            self.store.set_state(plan.row_ids, "pending", now)
        logger.info("held alerts released chat=%s count=%d", chat_id, len(plan.row_ids))
        return len(plan.row_ids)

    def _queue_digest(self, chat_id: int, rows: Sequence[OutboxRow], now: datetime,
                      join: Sequence[OutboxRow] = ()) -> int:
        """One digest row per message the alerts need ("Digest (2/3)"), with the stories of the digest rows
        in `join` (which it replaces); returns the first row's id."""
        chat = self.store.chat(chat_id)
        words = labels(str(chat["language"]) if chat else self.language)
        held = [dict(payload_of(r), watchlist=r.watchlist, story_id=r.story_id) for r in rows]
        row_of = {id(e): r.id for e, r in zip(held, rows, strict=True)}
        for digest in join:
            for entry in payload_of(digest).get("entries") or []:
                if isinstance(entry, dict):
                    held.append(entry)
                    row_of[id(entry)] = digest.id
        entries = digest_order(held)
        dated = digest_dated(entries, self.tz)
        pages = digest_pages(entries, self.names(), dated)
        first = 0
        for n, page in enumerate(pages, 1):
            heading = words["digest"] if len(pages) == 1 else f"{words['digest']} ({n}/{len(pages)})"
            body = {"heading": heading, "entries": page, "total": len(entries), "dated": dated}
            row_id = self.store.queue_row(chat_id, "digest", body, now, replaces=[row_of[id(e)] for e in page])
            first = first or row_id
        return first


def payload_of(row: OutboxRow) -> dict[str, Any]:
    """The JSON payload of a row."""
    data = json.loads(row.payload)
    return data if isinstance(data, dict) else {}
