"""Wiring shared by `run`, `poll --once` and `demo`: builds the adapters and connects them."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import IO, Any, Protocol

from bot.alerts import Rendered, render_alert, render_digest, render_notice
from bot.config import Config, Settings
from bot.dedup import StoryIndex
from bot.deliver import (
    ConsoleSender,
    Deliverer,
    HoldRouter,
    HoldStore,
    OutboxStore,
    Pacer,
    Sender,
    TelegramSender,
    payload_of,
)
from bot.fetch import Fetcher
from bot.match import Matcher
from bot.models import FeedState, Item, OutboxRow
from bot.pipeline import CONSOLE_CHAT, CycleContext, StorePort
from bot.store import SqliteStore, StoredMatch

logger = logging.getLogger(__name__)


class Store(StorePort, OutboxStore, HoldStore, Protocol):
    """Everything the rest of mediabot asks of its state store: the pipeline's, the deliverer's and the
    router's ports, plus what commands, health, backtests and housekeeping use. SqliteStore is the one
    implementation; another (PostgreSQL) is a class with these methods, raising StoreError for any failure
    of its own. Two assumptions it must keep: one instance writes a database at a time (the dedup index
    lives in that process's memory, and `record_items` relies on writes not interleaving), and `chat()`
    gives a chat's settings as SQLite stores them (timestamps as ISO text, which ChatPrefs.from_row reads)."""

    def update_chat(self, chat_id: int, **fields: Any) -> None: ...
    def subscriptions(self, chat_id: int) -> set[str]: ...
    def subscribe(self, chat_id: int, watchlist: str, now: datetime) -> bool: ...
    def unsubscribe(self, chat_id: int, watchlist: str | None) -> int: ...
    def set_watchlist_mute(self, chat_id: int, watchlist: str, until: datetime | None,
                           now: datetime | None = None) -> bool: ...
    def ensure_chat(self, chat_id: int, type_: str = "private", title: str = "", language: str = "de",
                    now: datetime | None = None) -> None: ...
    def is_allowed(self, chat_id: int) -> bool: ...
    def revoke(self, chat_id: int) -> int | None: ...
    def waiting_alerts(self, watchlists: Iterable[str]) -> list[OutboxRow]: ...
    def drop_alerts(self, row_ids: Sequence[int], reason: str) -> None: ...
    def waiting_digests(self) -> list[OutboxRow]: ...
    def rewrite_payload(self, row_id: int, payload: dict[str, Any]) -> None: ...
    def is_locked_out(self, chat_id: int) -> bool: ...
    def story_sources(self, story_id: int) -> list[tuple[str, str]]: ...
    def story_items_since(self, since: datetime) -> Iterator[tuple[Item, int]]: ...
    def items_since(self, since: datetime) -> Iterator[Item]: ...
    def matched_since(self, watchlist: str, since: datetime) -> set[str]: ...
    def recent_matches(self, watchlist: str, limit: int = 10) -> list[StoredMatch]: ...
    def feed_states(self) -> list[FeedState]: ...
    def pending_count(self, chat_id: int | None = None) -> int: ...
    def prune(self, now: datetime, keep_days: int, keep_seen_days: int | None = None) -> dict[str, int]: ...
    def schema_version(self) -> int: ...
    def file_problem(self) -> str | None: ...
    def file_gone(self) -> str | None: ...
    def check_writable(self) -> bool: ...
    def close(self) -> None: ...


@dataclass
class Runtime:
    """The live parts of one process. `config` and `matcher` are swapped together on reload."""

    settings: Settings
    config: Config
    store: Store
    fetcher: Fetcher
    matcher: Matcher
    sender: Sender
    deliverer: Deliverer
    ctx: CycleContext
    bot: Any = None  # telegram.Bot when a token is set
    extras: dict[str, Any] = field(default_factory=dict)

    def swap_config(self, config: Config, matcher: Matcher | None = None) -> None:
        """Install a validated config (atomically: the next cycle sees all of it or none), with its matcher
        when it was built already (off the event loop)."""
        matcher = matcher or Matcher(config.watchlists)
        self.config = config
        self.matcher = matcher
        self.ctx.config = config
        self.ctx.matcher = matcher

    async def aclose(self) -> None:
        """Close the HTTP pool, the Telegram client, the store writer thread and the store."""
        await self.fetcher.aclose()
        self.ctx.close()
        if self.bot is not None:
            try:
                await self.bot.shutdown()
                # A Bot that only sent (poll --once) was never initialised, and its shutdown() returns
                # without closing anything: close its connection pool too (idempotent).
                await self.bot.request.shutdown()
            except Exception:
                logger.warning("telegram client did not shut down cleanly", exc_info=True)
        self.store.close()


def make_renderer(rt: Runtime) -> Any:
    """Outbox row -> Rendered, in the chat's language, with "also: ..." for folded stories."""

    def render(row: OutboxRow) -> Rendered | None:
        chat = rt.store.chat(row.chat_id) if row.chat_id != CONSOLE_CHAT else None
        message = _render(row, chat)
        thread = chat.get("thread") if chat else None  # a forum's topic where the chat subscribed
        return replace(message, thread=int(thread)) if message is not None and thread else message

    def _render(row: OutboxRow, chat: dict[str, Any] | None) -> Rendered | None:
        data = payload_of(row)
        lang = str(chat["language"]) if chat else rt.settings.language  # a `chats:` channel, the terminal
        names = rt.config.watchlist_names()
        if row.kind in ("alert", "edit"):
            also = rt.store.story_sources(row.story_id) if row.story_id is not None else []
            # the mute button sets the chat's subscription: a chat fed by `chats:` alone (a channel, whose
            # readers must not change anything) has none, and the button would only pretend to work
            mutable = row.chat_id != CONSOLE_CHAT and row.watchlist in rt.store.subscriptions(row.chat_id)
            return render_alert(data, watchlist_name=names.get(row.watchlist, row.watchlist),
                                tz=rt.settings.tz, lang=lang, also=also, mutable=mutable)
        if row.kind == "digest":
            entries = data.get("entries", [])
            stories = {e["story_id"] for e in entries if isinstance(e.get("story_id"), int)}
            # the copies folded into each story by the time the digest goes out: what an alert shows as "also"
            copies = {sid: rt.store.story_sources(sid) for sid in stories}
            return render_digest(entries, heading=str(data.get("heading", "Digest")), tz=rt.settings.tz, lang=lang,
                                 names=names, total=data.get("total"), dated=bool(data.get("dated")), also=copies)
        return render_notice(str(data.get("text", "")))

    return render


def _tell_admins_of_unreachable_chats(rt: Runtime) -> Any:
    """A chat a watchlist's `chats:` names that the bot cannot post to (not added to the channel, removed
    from the group): its alerts were dropped with a log line only, and /feeds looked all green. The admins
    are told once per chat and process; a private user who blocked the bot is no news."""
    told: set[int] = set()

    def chat_gone(chat_id: int, reason: str, migrated_to: int | None) -> None:
        lists = [w.id for w in rt.config.watchlists if chat_id in w.chats]
        if not lists or chat_id in told or not rt.settings.admins:
            return
        told.add(chat_id)
        if migrated_to is not None:  # its alerts reach the supergroup, each after a refused try at the old id
            text = (f"Chat {chat_id}, which {', '.join(lists)} sends alerts to through chats:, became the supergroup "
                    f"{migrated_to}. Its alerts are sent there; replace {chat_id} with {migrated_to} in chats:.")
        else:
            text = (f"Cannot post to chat {chat_id} ({reason[:200]}), which {', '.join(lists)} sends alerts to "
                    "through chats:. Its alerts are dropped until the bot may post there: add the bot to the "
                    "group, or as an admin to the channel.")
        rt.store.queue_notice(sorted(rt.settings.admins), text, datetime.now(UTC))
        rt.deliverer.wake()

    return chat_gone


def build_runtime(settings: Settings, config: Config, *, console_stream: IO[str] | None = None,
                  force_console: bool = False, now: Any = None) -> Runtime:
    """Open the store (taking the instance lock), the HTTP pool and the sender."""
    store = SqliteStore(settings.db_path)
    try:
        fetcher = Fetcher.from_settings(settings)
        matcher = Matcher(config.watchlists)
        console = force_console or not settings.token
        bot = None
        sender: Sender
        if console:
            sender = ConsoleSender(console_stream)
        else:
            from telegram import Bot
            from telegram.request import HTTPXRequest

            bot = Bot(
                token=settings.token or "",
                base_url=settings.api_base_url,
                request=HTTPXRequest(connection_pool_size=64, read_timeout=20, connect_timeout=10),
            )
            sender = telegram = TelegramSender(bot)
            telegram.on_topic_gone = lambda chat_id: store.update_chat(chat_id, thread=None)  # General from now on
        clock = now or (lambda: datetime.now(UTC))
        stories = StoryIndex(window=settings.dedup_window)
        since = datetime.now(UTC) - timedelta(seconds=settings.dedup_window)
        indexed: set[int] = set()
        for item, story_id in store.story_items_since(since):  # dedup survives restarts
            if story_id not in indexed:  # each story's first item, as the running bot indexes them
                indexed.add(story_id)
                stories.add_item(item, story_id)
        ctx = CycleContext(config=config, settings=settings, store=store, fetcher=fetcher, matcher=matcher,
                           console=console, stories=stories, now=clock, restored_at=store.went_back())
        # mute, quiet hours, digests and backlogs concern Telegram chats only
        # digests are paged with the names they will show (ctx.config is swapped on reload)
        router = None if console else HoldRouter(store, settings.tz, settings.digest_threshold, settings.language,
                                                 names=lambda: ctx.config.watchlist_names())
        rt = Runtime(settings, config, store, fetcher, matcher, sender,
                     Deliverer(store, sender, lambda r: None, now=clock,
                               # the terminal has no rate limits; Telegram's are enforced by Pacer()
                               pacer=Pacer(per_second=10_000, chat_interval=0.0) if console else Pacer(),
                               router=router), ctx, bot)
        rt.deliverer.render = make_renderer(rt)
        rt.deliverer.on_chat_gone = _tell_admins_of_unreachable_chats(rt)
        return rt
    except BaseException:
        store.close()
        raise
