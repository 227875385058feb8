"""SQLite state: schema and migrations, feed state, seen items, matches, stories, chats, outbox.

All SQL lives here, behind the methods of `SqliteStore`, which `bot.app.Store` lists (mypy checks this
class against it). A PostgreSQL store would be another class with those methods; it still serves one
instance at a time (the dedup index is in the process's memory), so several instances need that index
in the database first. Every failure leaves as StoreError. WAL mode: a crash (even kill -9) leaves a store that
opens cleanly, and every method that changes state commits its own transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bot.errors import StoreError, StoreLockedError, StoreUnavailableError
from bot.models import FeedState, Item, Match, OutboxRow
from bot.text import squash

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 5

# Each entry moves the schema from version i to i+1. Never edit a released entry; append one.
_MIGRATIONS: list[str] = [
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE feeds (
        id TEXT PRIMARY KEY, url TEXT NOT NULL, etag TEXT, last_modified TEXT, body_hash TEXT,
        last_success TEXT, last_attempt TEXT, last_error TEXT, failures INTEGER NOT NULL DEFAULT 0,
        next_poll TEXT, polls INTEGER NOT NULL DEFAULT 0, disabled INTEGER NOT NULL DEFAULT 0,
        last_full_fetch TEXT, interval REAL, ttl REAL
    );
    CREATE TABLE stories (
        id INTEGER PRIMARY KEY, first_item INTEGER, lang TEXT, created TEXT NOT NULL,
        sources TEXT NOT NULL DEFAULT '[]'
    );
    CREATE TABLE items (
        id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, feed_id TEXT NOT NULL, title TEXT NOT NULL,
        summary TEXT NOT NULL, link TEXT NOT NULL, canonical_link TEXT NOT NULL, guid TEXT NOT NULL,
        published TEXT NOT NULL, first_seen TEXT NOT NULL, lang TEXT NOT NULL, source TEXT NOT NULL,
        story_id INTEGER
    );
    CREATE INDEX items_first_seen ON items(first_seen);
    CREATE INDEX items_story ON items(story_id);
    CREATE TABLE seen (key TEXT PRIMARY KEY, item_id INTEGER, first_seen TEXT NOT NULL);
    CREATE INDEX seen_first_seen ON seen(first_seen);
    CREATE TABLE matches (
        item_id INTEGER NOT NULL, watchlist TEXT NOT NULL, score REAL NOT NULL, terms TEXT NOT NULL,
        hits TEXT NOT NULL, created TEXT NOT NULL, PRIMARY KEY (item_id, watchlist)
    );
    CREATE INDEX matches_watchlist ON matches(watchlist, created);
    CREATE TABLE chats (
        id INTEGER PRIMARY KEY, type TEXT NOT NULL DEFAULT 'private', title TEXT NOT NULL DEFAULT '',
        language TEXT NOT NULL DEFAULT 'de', active INTEGER NOT NULL DEFAULT 1, muted_until TEXT,
        quiet TEXT, digest TEXT NOT NULL DEFAULT 'off', allowed INTEGER NOT NULL DEFAULT 0,
        created TEXT NOT NULL
    );
    CREATE TABLE subscriptions (
        chat_id INTEGER NOT NULL, watchlist TEXT NOT NULL, created TEXT NOT NULL,
        muted_until TEXT, PRIMARY KEY (chat_id, watchlist)
    );
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY, chat_id INTEGER NOT NULL, kind TEXT NOT NULL, watchlist TEXT NOT NULL,
        story_id INTEGER, payload TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0, not_before TEXT NOT NULL, message_id INTEGER,
        error TEXT, created TEXT NOT NULL, sent_at TEXT
    );
    CREATE INDEX outbox_due ON outbox(state, not_before);
    CREATE INDEX outbox_story ON outbox(story_id, chat_id);
    CREATE UNIQUE INDEX outbox_once ON outbox(chat_id, story_id, watchlist) WHERE kind = 'alert';
    """,
    # 2: the keys of a stored item, so `learn_keys` can bound how many an edited item collects
    """
    CREATE INDEX seen_item ON seen(item_id) WHERE item_id IS NOT NULL;
    """,
    # 3: the feeds.yaml URL each feed state follows, so an edited URL is taken up (a 301's target is not)
    """
    ALTER TABLE feeds ADD COLUMN config_url TEXT;
    UPDATE feeds SET config_url = url;
    """,
    # 4: a forum supergroup's topic that its alerts go to (where it subscribed; NULL: the General topic)
    """
    ALTER TABLE chats ADD COLUMN thread INTEGER;
    """,
    # 5: the feeds.yaml identity and interval each feed state follows, so an edit of either is taken up
    """
    ALTER TABLE feeds ADD COLUMN config_identity TEXT;
    ALTER TABLE feeds ADD COLUMN config_interval REAL;
    """,
]

# An edited item learns its new keys (learn_keys) up to this many in all: a headline edited on every fetch
# of a feed whose guids also change on every fetch must not add a key per poll for ever.
_KEYS_PER_ITEM = 8


def _in_chunks(keys: Iterable[str], size: int = 500) -> Iterator[tuple[list[str], str]]:
    """Distinct keys in sorted chunks with their "?,?,…" placeholders (SQLite caps the parameters per
    statement)."""
    flat = sorted(set(keys))
    for i in range(0, len(flat), size):
        chunk = flat[i : i + size]
        yield chunk, ",".join("?" * len(chunk))


def _ts(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat(timespec="microseconds") if value else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass(frozen=True, slots=True)
class NewItem:
    """One new item and what it caused, written together by `record_items`."""

    item: Item
    keys: Sequence[str]
    matches: Sequence[Match]
    alert_chats: Sequence[tuple[int, str]]  # (chat id, watchlist) pairs to queue an alert for
    story_id: int | None = None  # an existing story this item joins (near duplicate)
    # a known item stored without a match that matches since the outlet rewrote it ("Eilmeldung" filled in):
    # it never alerted, so its unmatched record and seen keys give way to this one
    rewritten: bool = False
    chat_lists: Mapping[int, Sequence[str]] = field(default_factory=dict)  # chat -> every list of it matched


@dataclass(frozen=True, slots=True)
class StoredMatch:
    """A stored match for /recent and backtests."""

    item_id: int
    watchlist: str
    score: float
    terms: list[str]
    title: str
    link: str
    source: str
    published: datetime


_BUSY_MS = 30_000  # how long a statement waits for another process's lock before it fails
_LOOP_WAIT = 2.0  # s: how long a write on the event loop waits for it (see SqliteStore._tx)
_RETRY_PAUSE = 0.05  # s: one try's wait for the write lock, and the pause between tries


def _on_event_loop() -> bool:
    """Is this thread running an asyncio event loop (the daemon's loop, not a worker thread)?"""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class SqliteStore:
    """The default store: one SQLite file in the state directory."""

    def __init__(self, path: Path, *, lock: bool = True) -> None:
        self.path = path
        self._lock_fd: int | None = None
        self._dir_fd: int | None = None
        self._identity: tuple[int, int] | None = None  # (device, inode) of the file opened
        self._marker = path.with_name(path.name + ".last-poll")  # the latest poll, beside the file (went_back)
        self._noted: str | None = None  # what it holds, as this process last read or wrote it
        # One connection, used from the event loop and from the pipeline's worker thread (the big
        # per-feed write runs there so the loop stays free): a transaction holds this lock throughout.
        self._lock = threading.RLock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if lock:
                self._acquire_lock(path.parent / "mediabot.lock")
        except OSError as exc:  # not ours (made by another uid), read-only, not a directory
            raise StoreError(f"{path.parent}: cannot use the state directory: {exc.strerror or exc} (it must be "
                             "writable by the user mediabot runs as; in the container uid 10001)") from exc
        try:
            connection = sqlite3.connect(str(path), timeout=_BUSY_MS / 1000, isolation_level=None,
                                         check_same_thread=False)
            connection.row_factory = sqlite3.Row
            self._db = _LockedConnection(connection, self._lock)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate(upgrade=lock)
            st = os.stat(path)
            self._identity = (st.st_dev, st.st_ino)
            # The instance that writes finds out now, not at the first poll's write.
            if lock and not self.check_writable():
                raise StoreError(f"{path}: the state store is not writable (it must be writable by the user "
                                 "mediabot runs as; in the container uid 10001)")
        except (sqlite3.DatabaseError, OSError) as exc:
            self._release_lock()
            raise StoreError(f"{path}: cannot open the state store: {exc}") from exc
        except StoreError as exc:
            self._release_lock()
            if isinstance(exc.__cause__, sqlite3.Error):
                raise StoreError(f"{path}: cannot open the state store: {exc.__cause__}") from exc.__cause__
            raise

    # -- lifecycle -------------------------------------------------------------------------

    def _acquire_lock(self, lock_path: Path) -> None:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            finally:
                os.close(fd)
            raise StoreLockedError(
                f"another mediabot (pid {holder}) is using the state directory {lock_path.parent}; "
                "two instances would send every alert twice. Stop it first, or use another MEDIABOT_STATE_DIR."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd
        # The directory is locked too: the lock file can be deleted under a running instance (a tidy-up of
        # state/), and a second one would then lock a new file. A filesystem without directory locks (NFS)
        # leaves the file lock alone.
        try:
            dir_fd = os.open(lock_path.parent, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return
        try:
            fcntl.flock(dir_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(dir_fd)
            self._release_lock()
            raise StoreLockedError(
                f"another mediabot is using the state directory {lock_path.parent} (its lock file {lock_path.name} "
                "was removed while it ran); two instances would send every alert twice. Stop it first."
            ) from None
        except OSError:
            os.close(dir_fd)
            return
        self._dir_fd = dir_fd

    def _release_lock(self) -> None:
        if self._dir_fd is not None:
            try:
                fcntl.flock(self._dir_fd, fcntl.LOCK_UN)
            finally:
                os.close(self._dir_fd)
                self._dir_fd = None
        if self._lock_fd is not None:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            finally:
                os.close(self._lock_fd)
                self._lock_fd = None

    def close(self) -> None:
        """Checkpoint and close; safe to call twice. The checkpoint waits at most a second for readers in
        other processes (an online backup): a stop must fit in Docker's 10 s, and the WAL is checkpointed
        at the next start anyway."""
        try:
            if getattr(self, "_db", None) is not None:
                with contextlib.suppress(StoreError):
                    self._db.execute("PRAGMA busy_timeout=1000")
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                self._db.close()
                self._db = None  # type: ignore[assignment]
        finally:
            self._release_lock()

    def _migrate(self, upgrade: bool = True) -> None:
        """Create or upgrade the schema. `upgrade` False (health, backtest: no instance lock) leaves an
        existing older store as it is: a newer image's health check must not migrate the store under a
        running older daemon."""
        has_meta = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
        ).fetchone()
        version = 0
        if has_meta:
            row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was written by a newer mediabot (schema {version}, this one knows "
                f"{SCHEMA_VERSION}); upgrade mediabot or restore a backup made with this version"
            )
        if version and not upgrade:
            return
        for target in range(version, SCHEMA_VERSION):
            # executescript commits before it runs, so the script carries its own transaction:
            # a migration and its version bump land together or not at all.
            try:
                self._db.executescript(
                    "BEGIN IMMEDIATE;" + _MIGRATIONS[target]
                    + "INSERT INTO meta(key, value) VALUES('schema_version', '" + str(target + 1) + "') "
                    "ON CONFLICT(key) DO UPDATE SET value=excluded.value; COMMIT;"
                )
            except StoreError:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    @contextmanager
    def _tx(self, wait: float | None = None) -> Iterator[_LockedConnection]:
        """A write transaction. While another process holds SQLite's write lock (an admin's `sqlite3` session,
        a backup tool, a health check's checkpoint) it waits up to `wait` seconds: by default 30 s in a worker
        thread and 2 s on the event loop, which must go on answering commands (a write there then fails with
        StoreUnavailableError, and its caller keeps the work for later). The store's own lock is let go
        between tries, so the event loop never waits for SQLite's lock behind a worker thread (it still
        waits for a transaction of this process that is running)."""
        if wait is None:
            wait = _LOOP_WAIT if _on_event_loop() else _BUSY_MS / 1000
        deadline: float | None = None  # from the first try on: waiting for this process's own lock is not it
        while True:
            self._lock.acquire()
            if deadline is None:
                deadline = time.monotonic() + wait
            try:
                if self._begin():
                    break
            except BaseException:
                self._lock.release()
                raise
            self._lock.release()
            if time.monotonic() >= deadline:
                raise StoreUnavailableError(f"store busy: the database is locked by another process (waited "
                                            f"{wait:g} s)")
            time.sleep(_RETRY_PAUSE)
        try:
            yield self._db
        except BaseException:
            # SQLite has already rolled back after some errors (a full disk): a second ROLLBACK would
            # fail and hide the reason ("cannot rollback - no transaction is active")
            if self._db.in_transaction:
                with contextlib.suppress(StoreError):
                    self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")
        finally:
            self._lock.release()

    def _begin(self) -> bool:
        """BEGIN IMMEDIATE, waiting a moment for another process's write lock: False when it is still held."""
        self._db.execute(f"PRAGMA busy_timeout={int(_RETRY_PAUSE * 1000)}")
        try:
            self._db.execute("BEGIN IMMEDIATE")
            return True
        except StoreError as exc:
            cause = exc.__cause__
            if isinstance(cause, sqlite3.OperationalError) and cause.sqlite_errorname in ("SQLITE_BUSY",
                                                                                          "SQLITE_LOCKED"):
                return False
            raise type(exc)(f"store busy or unwritable: {cause}") from cause
        finally:
            self._db.execute(f"PRAGMA busy_timeout={_BUSY_MS}")

    def schema_version(self) -> int:
        """The schema version of the open store."""
        row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return int(row[0])

    def file_problem(self) -> str | None:
        """Why the file at `path` is no longer the one this store writes to (deleted or replaced under
        the running bot: every later write goes to a file nobody will open again), or cannot be looked at
        (a network filesystem's hiccup), or None."""
        return self._file_check()[0]

    def file_gone(self) -> str | None:
        """Why the file at `path` is certainly not this store's any more: deleted, or another file in its
        place. None otherwise, also when it cannot be looked at just now (NFS's stale handle, a reconnect)."""
        problem, certain = self._file_check()
        return problem if certain else None

    def _file_check(self) -> tuple[str | None, bool]:
        """(what is wrong with the file at `path`, or None; whether it is certainly not this store's file)."""
        if self._identity is None:
            return None, False
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return f"{self.path} was deleted while mediabot ran; what it records now is lost at exit", True
        except OSError as exc:
            return f"{self.path}: {exc.strerror or exc}", False
        if (st.st_dev, st.st_ino) != self._identity:
            return f"{self.path} was replaced while mediabot ran; it still writes to the old file", True
        return None, False

    def check_writable(self) -> bool:
        """True when a write transaction can be opened (for /healthz). Raises StoreError when the file
        was deleted or replaced under the running store (see `file_problem`)."""
        problem = self.file_problem()
        if problem is not None:
            raise StoreError(problem)
        try:  # a probe waits 5 s for another process's lock, not the 30 s writes wait
            with self._tx(wait=5.0) as db:
                db.execute(
                    "INSERT INTO meta(key, value) VALUES('health', ?) "
                    "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    (_ts(datetime.now(UTC)),),
                )
            return True
        except StoreError:
            return False

    # -- feeds -----------------------------------------------------------------------------

    def feed_state(self, feed_id: str, url: str) -> FeedState:
        """The stored state of a feed, or a fresh one."""
        row = self._db.execute("SELECT * FROM feeds WHERE id=?", (feed_id,)).fetchone()
        if row is None:
            return FeedState(feed_id=feed_id, url=url, configured=url)  # identity: adopted at its first poll
        return FeedState(
            feed_id=row["id"], url=row["url"], etag=row["etag"], last_modified=row["last_modified"],
            body_hash=row["body_hash"], last_success=_dt(row["last_success"]),
            last_attempt=_dt(row["last_attempt"]), last_error=row["last_error"], failures=row["failures"],
            next_poll=_dt(row["next_poll"]), polls=row["polls"], disabled=bool(row["disabled"]),
            last_full_fetch=_dt(row["last_full_fetch"]), interval=row["interval"], ttl=row["ttl"],
            configured=row["config_url"], identity=row["config_identity"], configured_interval=row["config_interval"],
        )

    def note_polled(self) -> None:
        """Copy the latest successful poll the database holds to a file beside it (`mediabot.db.last-poll`),
        so a start on an older copy of the database (a restored backup) can tell (see `went_back`). From what
        was committed, not from memory (a poll whose write failed is not in the database), and whatever its
        direction (a clock that was ahead and was put right)."""
        latest = self._db.execute("SELECT MAX(last_success) FROM feeds").fetchone()[0]
        if latest is None or latest == self._noted:
            return
        tmp = self._marker.with_name(self._marker.name + ".tmp")
        try:
            tmp.write_text(latest + "\n", encoding="ascii")
            os.replace(tmp, self._marker)
            self._noted = latest
        except OSError as exc:  # only a restore goes unnoticed; polls and alerts go on
            logger.debug("cannot write %s: %s", self._marker, exc)

    def went_back(self) -> datetime | None:
        """When the file is older than the polls this state directory saw (a backup put back in place): the
        latest poll the file recorded; the items its feeds listed since then look new to it. Kept in the
        database once found, so a feed that is polled only in a later run (the first one failed, cron) is
        still treated as restored; a feed polled since then is past it."""
        latest = self._db.execute("SELECT MAX(last_success) FROM feeds").fetchone()[0]
        row = self._db.execute("SELECT value FROM meta WHERE key='restored_at'").fetchone()
        known = row[0] if row else None
        try:
            noted = self._noted = self._marker.read_text(encoding="ascii").strip()
        except (OSError, UnicodeError):
            noted = ""
        if latest is not None and noted > latest and latest != known:
            with self._tx() as db:
                db.execute("INSERT INTO meta(key, value) VALUES('restored_at', ?) "
                           "ON CONFLICT(key) DO UPDATE SET value=excluded.value", (latest,))
            known = latest
            logger.warning("the store is older than the last poll of this state directory (it ends %s UTC: a "
                           "restored backup?): each feed alerts only on recent items at its next poll",
                           latest[:16].replace("T", " "))
        return _dt(known)

    def feed_states(self) -> list[FeedState]:
        """Every stored feed state."""
        ids = [(r["id"], r["url"]) for r in self._db.execute("SELECT id, url FROM feeds ORDER BY id")]
        return [self.feed_state(i, u) for i, u in ids]

    def save_feed_state(self, s: FeedState) -> None:
        """Insert or replace a feed's state."""
        with self._tx() as db:
            self._save_feed_state(db, s)

    @staticmethod
    def _save_feed_state(db: _LockedConnection, s: FeedState) -> None:
        db.execute(
            """INSERT INTO feeds(id, url, etag, last_modified, body_hash, last_success, last_attempt,
                   last_error, failures, next_poll, polls, disabled, last_full_fetch, interval, ttl, config_url,
                   config_identity, config_interval)
               VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
               ON CONFLICT(id) DO UPDATE SET url=excluded.url, etag=excluded.etag,
                   last_modified=excluded.last_modified, body_hash=excluded.body_hash,
                   last_success=excluded.last_success, last_attempt=excluded.last_attempt,
                   last_error=excluded.last_error, failures=excluded.failures, next_poll=excluded.next_poll,
                   polls=excluded.polls, disabled=excluded.disabled, last_full_fetch=excluded.last_full_fetch,
                   interval=excluded.interval, ttl=excluded.ttl, config_url=excluded.config_url,
                   config_identity=excluded.config_identity, config_interval=excluded.config_interval""",
            (s.feed_id, s.url, s.etag, s.last_modified, s.body_hash, _ts(s.last_success), _ts(s.last_attempt),
             s.last_error, s.failures, _ts(s.next_poll), s.polls, int(s.disabled), _ts(s.last_full_fetch),
             s.interval, s.ttl, s.configured, s.identity, s.configured_interval),
        )

    # -- items -----------------------------------------------------------------------------

    def seen_keys(self, keys: Iterable[str]) -> set[str]:
        """The identity keys among `keys` that were seen before."""
        seen: set[str] = set()
        for chunk, marks in _in_chunks(keys):
            seen.update(r[0] for r in self._db.execute(f"SELECT key FROM seen WHERE key IN ({marks})", chunk))
        return seen

    def unmatched_texts(self, keys: Sequence[str], since: datetime) -> dict[str, tuple[str, str]]:
        """Item key -> (title, summary) as stored, for the items among `keys` that matched nothing and were
        first seen after `since`."""
        out: dict[str, tuple[str, str]] = {}
        after = _ts(since)
        for chunk, marks in _in_chunks(keys):
            for r in self._db.execute(
                    # "+story_id": look rows up by key; SQLite would pick the story_id index and scan every
                    # unmatched item (a cycle of 1,000 changed feeds went from 5 s to 17 s)
                    f"SELECT key, title, summary, first_seen FROM items WHERE key IN ({marks}) AND +story_id IS NULL",
                    chunk):
                if r[3] > after:
                    out[r[0]] = (r[1], r[2])
        return out

    def learn_keys(self, known: Sequence[tuple[Sequence[str], str]], now: datetime) -> int:
        """Remember the unseen keys of items recognised by another key (keys, current headline) when the
        item was edited: an outlet that rewrites headline and slug keeps the guid, and its second feed may
        carry the article under the new link only. Only stored (matched) items whose headline changed
        learn keys, so a feed whose guids or links change on every fetch adds nothing, and an item learns
        at most `_KEYS_PER_ITEM` in all. Returns the keys added."""
        stamp = _ts(now)
        added = 0
        with self._tx() as db:
            for keys, title in known:
                marks = ",".join("?" * len(keys))
                row = db.execute(
                    f"SELECT i.id, i.title FROM seen s JOIN items i ON i.id = s.item_id WHERE s.key IN ({marks}) "
                    "LIMIT 1", list(keys)).fetchone()
                if row is None or squash(row[1]) == squash(title):
                    continue
                if db.execute("SELECT COUNT(*) FROM seen WHERE item_id=?", (row[0],)).fetchone()[0] >= _KEYS_PER_ITEM:
                    continue
                added += db.executemany(
                    "INSERT OR IGNORE INTO seen(key, item_id, first_seen) VALUES(?,?,?)",
                    [(k, row[0], stamp) for k in keys]).rowcount
        return added

    def record_items(self, new: Sequence[NewItem], state: FeedState | None, now: datetime,
                     notices: Iterable[tuple[int, str]] = (), still_listed: Sequence[str] = (),
                     touch_before: datetime | None = None) -> tuple[list[int], set[int]]:
        """Write new items, their matches, stories and outbox rows, the seen keys and the feed state
        in ONE transaction: after a crash either all of it is there or none (and the items are new
        again on the next poll). Returns the story id of each item (0 for items that matched nothing:
        they get no story, and are written in bulk), and the stories whose outlets or headlines a copy
        added to (what an "also" edit shows). `still_listed`: keys of known items the feed still
        lists; those marked seen before `touch_before` count as seen now, so an item a feed keeps for
        months is never pruned and alerted again (the pipeline reads an unchanged document once a day for
        this)."""
        stamp = _ts(now)
        story_ids: list[int] = []
        grown: set[int] = set()
        muted_of: dict[int, set[str]] = {}  # chat -> its muted lists, read once a batch
        with self._tx() as db:
            plain = [n for n in new if _plain(n)]
            db.executemany(_INSERT_ITEM, [_item_values(n.item, stamp) for n in plain])
            db.executemany(
                "INSERT OR IGNORE INTO seen(key, item_id, first_seen) VALUES(?, NULL, ?)",
                [(k, stamp) for n in plain for k in n.keys],
            )
            for n in new:
                if _plain(n):
                    story_ids.append(0)
                    continue
                marks = ",".join("?" * len(n.keys))
                if n.rewritten:
                    db.execute(f"DELETE FROM seen WHERE key IN ({marks}) AND item_id IS NULL", list(n.keys))
                    db.execute("DELETE FROM items WHERE key=? AND +story_id IS NULL", (n.item.key,))
                # Checked again inside the transaction: two feeds polled at once may carry the same
                # article, and only the first to commit may alert.
                if n.keys and db.execute(f"SELECT 1 FROM seen WHERE key IN ({marks}) LIMIT 1", list(n.keys)).fetchone():
                    story_ids.append(0)
                    continue
                it = n.item
                cur = db.execute(_INSERT_ITEM, _item_values(it, stamp))
                if cur.rowcount == 0:  # same key recorded earlier in this batch
                    story_ids.append(0)
                    continue
                item_id = int(cur.lastrowid or 0)
                story_id = n.story_id
                if story_id is None:
                    story_id = int(db.execute(
                        "INSERT INTO stories(first_item, lang, created, sources) VALUES(?,?,?,?)",
                        (item_id, it.lang, stamp, json.dumps([it.source])),
                    ).lastrowid or 0)
                else:
                    if self._add_copy(db, story_id, item_id, it):
                        grown.add(story_id)
                db.execute("UPDATE items SET story_id=? WHERE id=?", (story_id, item_id))
                story_ids.append(story_id)
                db.executemany(
                    "INSERT OR IGNORE INTO seen(key, item_id, first_seen) VALUES(?,?,?)",
                    [(k, item_id, stamp) for k in n.keys],
                )
                for m in n.matches:
                    db.execute(
                        "INSERT OR REPLACE INTO matches(item_id, watchlist, score, terms, hits, created) "
                        "VALUES(?,?,?,?,?,?)",
                        (item_id, m.watchlist, m.score, json.dumps(m.terms, ensure_ascii=False),
                         json.dumps([[h.term, h.text, h.field, h.position, h.score] for h in m.hits],
                                    ensure_ascii=False), stamp),
                    )
                if n.alert_chats:
                    payload = _alert_payload(it)
                    words = {m.watchlist: m.words for m in n.matches}  # once an item, not once a chat
                    for chat_id, watchlist in n.alert_chats:
                        if len(lists := n.chat_lists.get(chat_id, ())) > 1:
                            # Named after the best list the chat has not muted: it comes through that one (named
                            # after the muted list, the alert looked like a mute that failed). Decided here, once:
                            # its edits and a digest keep the name and the words.
                            if chat_id not in muted_of:
                                muted_of[chat_id] = _muted_lists(db, chat_id, stamp)
                            watchlist = _first_unmuted(lists, muted_of[chat_id]) or watchlist
                        body = dict(payload, watchlist=watchlist, terms=words.get(watchlist, []))
                        if len(lists) > 1:
                            body["lists"] = list(lists)  # every list of this chat it matched (button mutes)
                            body["list_terms"] = {w: words[w] for w in lists if w in words}
                        db.execute(
                            """INSERT INTO outbox(chat_id, kind, watchlist, story_id, payload, not_before, created)
                               VALUES(?, 'alert', ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING""",
                            (chat_id, watchlist, story_id, json.dumps(body, ensure_ascii=False), stamp, stamp),
                        )
            _insert_notices(db, notices, stamp)
            if still_listed and touch_before is not None:
                for chunk, marks in _in_chunks(still_listed):
                    db.execute(f"UPDATE seen SET first_seen=? WHERE key IN ({marks}) AND +first_seen < ?",
                               [stamp, *chunk, _ts(touch_before)])
            if state is not None:
                self._save_feed_state(db, state)
        return story_ids, grown

    @staticmethod
    def _add_copy(db: _LockedConnection, story_id: int, item_id: int, it: Item) -> bool:
        """A later-written copy of a story: list its outlet (with its headline) under the story. When
        it was published before the story's first item and no alert for the story has gone out yet
        (copies that arrive in one cycle are written in the order their feeds answered), it takes the
        lead: the waiting alerts show its headline, and the other copy moves to "also". Returns whether
        the story's sources changed (an outlet listed with the same headline, re-published, adds nothing)."""
        row = db.execute(
            "SELECT s.sources, i.published, i.source, i.title FROM stories s LEFT JOIN items i ON i.id = s.first_item "
            "WHERE s.id=?", (story_id,)).fetchone()
        if row is None:
            return False
        sources: list[Any] = json.loads(row[0])
        lead_published, lead_source, lead_title = row[1], row[2], row[3]
        earlier = lead_published is not None and (_ts(it.published) or "") < lead_published
        if earlier and it.source != lead_source and not db.execute(
                "SELECT 1 FROM outbox WHERE story_id=? AND kind='alert' AND state NOT IN ('pending', 'held') LIMIT 1",
                (story_id,)).fetchone():
            rest = [s for s in sources[1:] if _source_name(s) != it.source]
            sources = [it.source, [lead_source, lead_title], *rest]
            db.execute("UPDATE stories SET first_item=? WHERE id=?", (item_id, story_id))
            lead = _alert_payload(it)
            for oid, payload in db.execute(
                    "SELECT id, payload FROM outbox WHERE story_id=? AND kind='alert' AND state IN ('pending', 'held')",
                    (story_id,)).fetchall():
                db.execute("UPDATE outbox SET payload=? WHERE id=?",
                           (json.dumps({**json.loads(payload), **lead}, ensure_ascii=False), oid))
        elif it.source not in {_source_name(s) for s in sources}:
            sources.append([it.source, it.title])  # later copies keep their headline
        elif it.title not in {lead_title, *(s[1] for s in sources if not isinstance(s, str))} and len(sources) < 100:
            # An outlet already listed, with another headline: its second report, or its own article
            # updated under a new link. The headline is kept, so the update is shown, not swallowed.
            sources.append([it.source, it.title])
        text = json.dumps(sources, ensure_ascii=False)
        if text == row[0]:
            return False
        db.execute("UPDATE stories SET sources=? WHERE id=?", (text, story_id))
        return True

    def queue_notice(self, chat_ids: Iterable[int], text: str, now: datetime) -> None:
        """Queue a plain notice (e.g. to the bot admins)."""
        stamp = _ts(now)
        with self._tx() as db:
            _insert_notices(db, [(c, text) for c in chat_ids], stamp)

    def count(self, table: str) -> int:
        """Row count of a table (for tests)."""
        if table not in ("items", "seen", "matches", "stories", "outbox", "chats", "subscriptions", "feeds"):
            raise ValueError(table)
        return int(self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    def recent_matches(self, watchlist: str, limit: int = 10) -> list[StoredMatch]:
        """The newest matches of a watchlist."""
        rows = self._db.execute(
            """SELECT m.item_id, m.watchlist, m.score, m.terms, i.title, i.link, i.source, i.published
               FROM matches m JOIN items i ON i.id = m.item_id
               WHERE m.watchlist=? ORDER BY i.published DESC, m.item_id DESC LIMIT ?""",
            (watchlist, limit),
        )
        return [
            StoredMatch(r["item_id"], r["watchlist"], r["score"], json.loads(r["terms"]), r["title"],
                        r["link"], r["source"], _dt(r["published"]) or datetime.now(UTC))
            for r in rows
        ]

    def items_since(self, since: datetime) -> Iterator[Item]:
        """Stored items first seen after `since` (for backtests)."""
        for r in self._db.execute("SELECT * FROM items WHERE first_seen >= ? ORDER BY id", (_ts(since),)):
            yield _item(r, since)

    def matched_since(self, watchlist: str, since: datetime) -> set[str]:
        """Keys of the items first seen after `since` that matched `watchlist` when they arrived."""
        rows = self._db.execute(
            "SELECT i.key FROM matches m JOIN items i ON i.id = m.item_id WHERE m.watchlist = ? AND i.first_seen >= ?",
            (watchlist, _ts(since)),
        )
        return {r[0] for r in rows}

    def story_items_since(self, since: datetime) -> Iterator[tuple[Item, int]]:
        """Stored items that matched a watchlist, published after `since`, with their story id, oldest
        first (rebuilds the dedup index, which holds only matched items)."""
        for r in self._db.execute(
            "SELECT * FROM items WHERE published >= ? AND story_id IS NOT NULL "
            "AND id IN (SELECT item_id FROM matches) ORDER BY published, id", (_ts(since),)
        ):
            yield _item(r, since), int(r["story_id"])

    # -- chats and subscriptions -----------------------------------------------------------

    def subscribers(self, watchlist: str, *, let_in: Container[int] | None = None) -> list[int]:
        """Active chats subscribed to a watchlist. `let_in` (a bot restricted to some users): private chats
        only when their user is in it or an admin let them in with /allow; groups and channels unless an
        admin locked them out with /disallow."""
        rows = self._db.execute(
            """SELECT s.chat_id, c.allowed FROM subscriptions s JOIN chats c ON c.id = s.chat_id
               WHERE s.watchlist=? AND c.active=1 ORDER BY s.chat_id""",
            (watchlist,),
        )
        # allowed: 1 let in with /allow, -1 locked out with /disallow, 0 neither
        return [r[0] for r in rows if let_in is None or r[0] in let_in or r[1] == 1 or (r[0] < 0 and r[1] == 0)]

    def ensure_chat(self, chat_id: int, type_: str = "private", title: str = "", language: str = "de",
                    now: datetime | None = None) -> None:
        """Create the chat row if missing; reactivate it and refresh its title otherwise."""
        stamp = _ts(now or datetime.now(UTC))
        with self._tx() as db:
            db.execute(
                """INSERT INTO chats(id, type, title, language, created) VALUES(?,?,?,?,?)
                   ON CONFLICT(id) DO UPDATE SET type=excluded.type, title=excluded.title, active=1""",
                (chat_id, type_, title, language, stamp),
            )

    def chat(self, chat_id: int) -> dict[str, Any] | None:
        """A chat's settings as a plain dict, or None."""
        row = self._db.execute("SELECT * FROM chats WHERE id=?", (chat_id,)).fetchone()
        return dict(row) if row else None

    def update_chat(self, chat_id: int, **fields: Any) -> None:
        """Change chat settings (language, muted_until, quiet, digest, allowed, active, thread)."""
        allowed = {"language", "muted_until", "quiet", "digest", "allowed", "active", "title", "type", "thread"}
        if not fields or not set(fields) <= allowed:
            raise ValueError(f"unknown chat fields: {set(fields) - allowed}")
        values = [(_ts(v) if isinstance(v, datetime) else v) for v in fields.values()]
        cols = ", ".join(f"{k}=?" for k in fields)
        with self._tx() as db:
            db.execute(f"UPDATE chats SET {cols} WHERE id=?", (*values, chat_id))

    def subscribe(self, chat_id: int, watchlist: str, now: datetime) -> bool:
        """Subscribe; False when it already was."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO subscriptions(chat_id, watchlist, created) VALUES(?,?,?)",
                (chat_id, watchlist, _ts(now)),
            )
            return cur.rowcount > 0

    def unsubscribe(self, chat_id: int, watchlist: str | None) -> int:
        """Remove one subscription, or all when `watchlist` is None, with the chat's alerts of it that are
        still waiting (held while muted, in quiet hours or for a digest); returns how many subscriptions."""
        which = "" if watchlist is None else " AND watchlist=?"
        args = (chat_id,) if watchlist is None else (chat_id, watchlist)
        with self._tx() as db:
            _drop_waiting(db, "unsubscribed", f"chat_id=? AND kind='alert'{which}", args)
            return db.execute(f"DELETE FROM subscriptions WHERE chat_id=?{which}", args).rowcount

    def subscriptions(self, chat_id: int) -> set[str]:
        """Watchlists a chat is subscribed to."""
        return {r[0] for r in self._db.execute("SELECT watchlist FROM subscriptions WHERE chat_id=?", (chat_id,))}

    def set_watchlist_mute(self, chat_id: int, watchlist: str, until: datetime | None,
                           now: datetime | None = None) -> bool:
        """Mute one watchlist for one chat (the alert's mute button); False when the chat has no
        subscription to it (it gets the list through `chats:` in the YAML). An alert still waiting (a chat
        mute, quiet hours, Telegram down) that is named after the list and also came through another the
        chat has not muted is named after that one now, with its words: it still comes, through that list."""
        with self._tx() as db:
            if db.execute("UPDATE subscriptions SET muted_until=? WHERE chat_id=? AND watchlist=?",
                          (_ts(until), chat_id, watchlist)).rowcount == 0:
                return False
            if until is not None:
                muted = _muted_lists(db, chat_id, _ts(now or datetime.now(UTC)))
                waiting = db.execute("SELECT id, payload FROM outbox WHERE chat_id=? AND kind='alert' AND "
                                     "state IN ('pending', 'held') AND watchlist=?", (chat_id, watchlist)).fetchall()
                for rid, payload in waiting:
                    body = json.loads(payload)
                    other = _first_unmuted(body.get("lists") or [], muted)
                    if other is not None:
                        body.update(watchlist=other, terms=(body.get("list_terms") or {}).get(other, body["terms"]))
                        db.execute("UPDATE outbox SET watchlist=?, payload=? WHERE id=?",
                                   (other, json.dumps(body, ensure_ascii=False), rid))
            return True

    def deactivate_chat(self, chat_id: int) -> None:
        """The chat is gone (403): stop sending; pending alerts to it fail."""
        with self._tx() as db:
            db.execute("UPDATE chats SET active=0 WHERE id=?", (chat_id,))
            db.execute(
                "UPDATE outbox SET state='failed', error='chat unavailable' "
                "WHERE chat_id=? AND state IN ('pending','held')",
                (chat_id,),
            )

    def migrate_chat(self, old: int, new: int) -> None:
        """A group became a supergroup: move the chat, its settings, subscriptions and pending alerts.

        The supergroup may already have a row (a member's command there came first, which made one with
        the defaults): the group's settings win, since someone chose them. An alert queued for both ids
        (subscribed again in the supergroup) is sent once: the old id's copy is merged away."""
        with self._tx() as db:
            db.execute(
                """INSERT INTO chats(id, type, title, language, active, muted_until, quiet, digest, allowed, created)
                   SELECT ?, 'supergroup', title, language, 1, muted_until, quiet, digest, allowed, created
                   FROM chats WHERE id=? AND active=1
                   ON CONFLICT(id) DO UPDATE SET type='supergroup', language=excluded.language, active=1,
                       muted_until=COALESCE(excluded.muted_until, chats.muted_until),
                       quiet=COALESCE(excluded.quiet, chats.quiet),
                       digest=CASE WHEN excluded.digest != 'off' THEN excluded.digest ELSE chats.digest END,
                       allowed=CASE WHEN excluded.allowed=-1 THEN -1 ELSE MAX(chats.allowed, excluded.allowed) END""",
                (new, old),
            )
            db.execute("UPDATE OR IGNORE subscriptions SET chat_id=? WHERE chat_id=?", (new, old))
            db.execute("DELETE FROM subscriptions WHERE chat_id=?", (old,))
            db.execute("UPDATE OR IGNORE outbox SET chat_id=? WHERE chat_id=? AND state IN ('pending','held')",
                       (new, old))
            db.execute(
                "UPDATE outbox SET state='merged', error=? WHERE chat_id=? AND state IN ('pending','held')",
                (f"group moved to {new}, which has this alert already", old),
            )
            db.execute("UPDATE chats SET active=0 WHERE id=?", (old,))

    # -- outbox ----------------------------------------------------------------------------

    def due(self, now: datetime, limit: int = 500) -> list[OutboxRow]:
        """Pending rows whose time has come: "also: …" edits after every new message, so a story carried by
        many outlets (an edit per copy and chat) cannot hold back the next story; alerts in the order their
        items were published (one cycle writes them in the order the feeds answered, and a chat saw the
        times jump back); then the oldest first."""
        rows = self._db.execute(
            "SELECT * FROM outbox WHERE state='pending' AND not_before <= ? "
            "ORDER BY kind = 'edit', json_extract(payload, '$.published'), not_before, id LIMIT ?",
            (_ts(now), limit),
        )
        return [_row(r) for r in rows]

    def next_due(self) -> datetime | None:
        """When the next pending row becomes due."""
        row = self._db.execute("SELECT MIN(not_before) FROM outbox WHERE state='pending'").fetchone()
        return _dt(row[0]) if row and row[0] else None

    def pending_count(self, chat_id: int | None = None) -> int:
        """Rows still to send (pending or held), overall or for one chat."""
        if chat_id is None:
            row = self._db.execute("SELECT COUNT(*) FROM outbox WHERE state IN ('pending','held')").fetchone()
        else:
            row = self._db.execute(
                "SELECT COUNT(*) FROM outbox WHERE state IN ('pending','held') AND chat_id=?", (chat_id,)
            ).fetchone()
        return int(row[0])

    def outbox_rows(self, state: str | None = None, chat_id: int | None = None) -> list[OutboxRow]:
        """Outbox rows for inspection and digests."""
        sql, args = "SELECT * FROM outbox WHERE 1=1", list[object]()
        if state:
            sql += " AND state=?"
            args.append(state)
        if chat_id is not None:
            sql += " AND chat_id=?"
            args.append(chat_id)
        return [_row(r) for r in self._db.execute(sql + " ORDER BY id", args)]

    def mark_sent(self, row_id: int, message_id: int | None, now: datetime) -> None:
        """Telegram accepted the message: commit at once, so a crash repeats at most this one."""
        with self._tx() as db:
            db.execute(
                "UPDATE outbox SET state='sent', message_id=?, sent_at=?, attempts=attempts+1 WHERE id=?",
                (message_id, _ts(now), row_id),
            )

    def mark_retry(self, row_id: int, not_before: datetime, error: str) -> None:
        """Try again later (429, 5xx, timeout)."""
        with self._tx() as db:
            db.execute(
                "UPDATE outbox SET not_before=?, error=?, attempts=attempts+1 WHERE id=?",
                (_ts(not_before), error, row_id),
            )

    def mark_failed(self, row_id: int, error: str) -> None:
        """Permanently undeliverable."""
        with self._tx() as db:
            db.execute("UPDATE outbox SET state='failed', error=?, attempts=attempts+1 WHERE id=?", (error, row_id))

    def waiting_digests(self) -> list[OutboxRow]:
        """Digests not sent yet."""
        rows = self._db.execute("SELECT * FROM outbox WHERE kind='digest' AND state IN ('pending','held') ORDER BY id")
        return [_row(r) for r in rows]

    def rewrite_payload(self, row_id: int, payload: dict[str, Any]) -> None:
        """A waiting row's message changed before it went (a digest lost a withdrawn list's stories)."""
        with self._tx() as db:
            db.execute("UPDATE outbox SET payload=? WHERE id=? AND state IN ('pending','held')",
                       (json.dumps(payload, ensure_ascii=False), row_id))

    def waiting_alerts(self, watchlists: Iterable[str]) -> list[OutboxRow]:
        """Alerts of these watchlists not sent yet (pending, or held while muted, in quiet hours, for a digest)."""
        ids = sorted(set(watchlists))
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = self._db.execute(f"SELECT * FROM outbox WHERE kind='alert' AND state IN ('pending','held') "
                                f"AND watchlist IN ({marks}) ORDER BY id", ids)
        return [_row(r) for r in rows]

    def drop_alerts(self, row_ids: Sequence[int], reason: str) -> None:
        """Alerts that must not go any more (their list was removed or paused): merged away, with why."""
        with self._tx() as db:
            for chunk, marks in _in_chunks(map(str, row_ids)):
                _drop_waiting(db, reason, f"id IN ({marks})", chunk)

    def set_state(self, row_ids: Sequence[int], state: str, not_before: datetime | None = None) -> None:
        """Move rows between pending/held/merged (mute, quiet hours, digests)."""
        with self._tx() as db:
            for rid in row_ids:
                if not_before is None:
                    db.execute("UPDATE outbox SET state=? WHERE id=?", (state, rid))
                else:
                    db.execute("UPDATE outbox SET state=?, not_before=? WHERE id=?", (state, _ts(not_before), rid))

    def queue_row(self, chat_id: int, kind: str, payload: dict[str, Any], now: datetime,
                  watchlist: str = "", story_id: int | None = None, message_id: int | None = None,
                  replaces: Sequence[int] = ()) -> int:
        """Queue a digest/edit/notice row; rows in `replaces` become 'merged' in the same transaction."""
        with self._tx() as db:
            rid = int(db.execute(
                """INSERT INTO outbox(chat_id, kind, watchlist, story_id, payload, not_before, message_id, created)
                   VALUES(?,?,?,?,?,?,?,?)""",
                (chat_id, kind, watchlist, story_id, json.dumps(payload, ensure_ascii=False), _ts(now),
                 message_id, _ts(now)),
            ).lastrowid or 0)
            for old in replaces:
                db.execute("UPDATE outbox SET state='merged' WHERE id=?", (old,))
            return rid

    def held_chats(self) -> list[int]:
        """Chats with held rows (mute, quiet hours, digest) waiting for release."""
        return [r[0] for r in self._db.execute("SELECT DISTINCT chat_id FROM outbox WHERE state='held' ORDER BY 1")]

    def mute_map(self, chat_id: int) -> dict[str, datetime]:
        """Watchlists this chat muted through an alert's button, with their end."""
        rows = self._db.execute(
            "SELECT watchlist, muted_until FROM subscriptions WHERE chat_id=? AND muted_until IS NOT NULL", (chat_id,)
        )
        return {r[0]: d for r in rows if (d := _dt(r[1])) is not None}

    def is_allowed(self, chat_id: int) -> bool:
        """True when an admin let this user or chat in (restricted mode)."""
        return self._allowed(chat_id) == 1

    def is_locked_out(self, chat_id: int) -> bool:
        """True when an admin locked this chat out with /disallow (restricted mode)."""
        return self._allowed(chat_id) == -1

    def _allowed(self, chat_id: int) -> int:
        """The chat's flag: 1 let in with /allow, -1 locked out with /disallow, 0 neither (or unknown)."""
        row = self._db.execute("SELECT allowed FROM chats WHERE id=?", (chat_id,)).fetchone()
        return int(row[0]) if row else 0

    def revoke(self, chat_id: int) -> int | None:
        """Lock a chat out of a restricted bot (/disallow): a user an admin let in, or a group or channel
        (which a let-in user may have subscribed). It gets no more alerts, and those waiting for it (pending,
        held while muted, in quiet hours or for a digest) are dropped. Its subscriptions stay, for a new
        /allow. Returns how many alerts were dropped; None when there was nothing to lock out."""
        with self._tx() as db:
            if not db.execute("UPDATE chats SET allowed=-1 WHERE id=? AND (allowed=1 OR (id<0 AND allowed=0))",
                              (chat_id,)).rowcount:
                return None
            return _drop_waiting(db, "not allowed", "chat_id=? AND kind IN ('alert','digest')", (chat_id,))

    def forget_message(self, chat_id: int, message_id: int) -> None:
        """The chat's alert message is gone (deleted, too old to edit): no "also" edits for it any more."""
        with self._tx() as db:
            db.execute("UPDATE outbox SET message_id=NULL WHERE chat_id=? AND message_id=? AND kind='alert'",
                       (chat_id, message_id))

    def sent_alerts_for_story(self, story_id: int) -> list[OutboxRow]:
        """Alerts already delivered for a story (to edit them with "also: ...")."""
        rows = self._db.execute(
            "SELECT * FROM outbox WHERE story_id=? AND kind='alert' AND state='sent' AND message_id IS NOT NULL",
            (story_id,),
        )
        return [_row(r) for r in rows]

    def pending_edit_chats(self, story_id: int) -> set[int]:
        """Chats with an "also: ..." edit for a story still waiting (it renders the latest sources)."""
        rows = self._db.execute(
            "SELECT DISTINCT chat_id FROM outbox WHERE story_id=? AND kind='edit' AND state='pending'", (story_id,)
        )
        return {r[0] for r in rows}

    def story_chats(self, story_id: int) -> set[int]:
        """Chats that already have an alert (queued or sent) for a story."""
        rows = self._db.execute("SELECT DISTINCT chat_id FROM outbox WHERE story_id=? AND kind='alert'", (story_id,))
        return {r[0] for r in rows}

    def story_sources(self, story_id: int) -> list[tuple[str, str]]:
        """Outlets that carried a story, first one first, each with its headline ("" for the first)."""
        row = self._db.execute("SELECT sources FROM stories WHERE id=?", (story_id,)).fetchone()
        return [(s, "") if isinstance(s, str) else (str(s[0]), str(s[1])) for s in json.loads(row[0])] if row else []

    # -- retention -------------------------------------------------------------------------

    def prune(self, now: datetime, keep_days: int, keep_seen_days: int | None = None) -> dict[str, int]:
        """Delete old items, matches, stories and finished outbox rows. Seen keys are kept longer
        (default: twice as long), so an old item still in a feed never comes back as new."""
        cutoff = _ts(now - timedelta(days=keep_days))
        seen_cutoff = _ts(now - timedelta(days=keep_seen_days or keep_days * 2))
        counts: dict[str, int] = {}
        with self._tx() as db:
            counts["outbox"] = db.execute(
                "DELETE FROM outbox WHERE state IN ('sent','failed','merged') AND created < ?", (cutoff,)
            ).rowcount
            counts["matches"] = db.execute("DELETE FROM matches WHERE created < ?", (cutoff,)).rowcount
            counts["items"] = db.execute("DELETE FROM items WHERE first_seen < ?", (cutoff,)).rowcount
            counts["stories"] = db.execute(
                "DELETE FROM stories WHERE created < ? AND id NOT IN (SELECT story_id FROM outbox "
                "WHERE story_id IS NOT NULL)", (cutoff,)
            ).rowcount
            newest = db.execute("SELECT MAX(first_seen) FROM seen").fetchone()[0]
            if newest is not None and newest < seen_cutoff:
                # Every key would go: the clock was set forward (a host that booted with a clock far behind)
                # or the bot was off for longer than keys are kept. The feeds may still list those items.
                logger.warning("prune: every seen key is older than %d days (the newest %s); kept, since the "
                               "clock may have jumped", keep_seen_days or keep_days * 2, newest)
                counts["seen"] = 0
            else:
                counts["seen"] = db.execute("DELETE FROM seen WHERE first_seen < ?", (seen_cutoff,)).rowcount
        return counts


@contextmanager
def _as_store_error() -> Iterator[None]:
    """SQLite's errors as StoreError: callers handle a store that fails (a full disk, a read-only or broken
    file) without knowing which database is behind it."""
    try:
        yield
    except sqlite3.Error as exc:
        if (getattr(exc, "sqlite_errorname", None) or "").startswith(_UNAVAILABLE):
            raise StoreUnavailableError(f"{type(exc).__name__}: {exc}") from exc
        raise StoreError(f"{type(exc).__name__}: {exc}") from exc


# SQLite's result codes (extended ones start with these) that say the store cannot write just now, not that
# the code is wrong ("no such table" and syntax errors are OperationalError too)
_UNAVAILABLE = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_FULL", "SQLITE_READONLY", "SQLITE_IOERR", "SQLITE_CANTOPEN",
                "SQLITE_PROTOCOL", "SQLITE_NOLFS")


class _LockedConnection:
    """sqlite3.Connection whose statements take the store's lock (re-entrant, so a transaction that
    holds it can run statements)."""

    def __init__(self, connection: sqlite3.Connection, lock: threading.RLock) -> None:
        self._connection = connection
        self._lock = lock

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> sqlite3.Cursor:
        with self._lock, _as_store_error():
            return self._connection.execute(sql, parameters)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> sqlite3.Cursor:
        with self._lock, _as_store_error():
            return self._connection.executemany(sql, rows)

    def executescript(self, script: str) -> sqlite3.Cursor:
        with self._lock, _as_store_error():
            return self._connection.executescript(script)

    @property
    def in_transaction(self) -> bool:
        return self._connection.in_transaction

    def close(self) -> None:
        with self._lock:
            self._connection.close()


def _muted_lists(db: _LockedConnection, chat_id: int, stamp: str | None) -> set[str]:
    """The lists a chat has muted with an alert's button, as of `stamp`."""
    return {r[0] for r in db.execute("SELECT watchlist FROM subscriptions WHERE chat_id=? AND muted_until > ?",
                                     (chat_id, stamp))}


def _first_unmuted(lists: Iterable[str], muted: set[str]) -> str | None:
    """The best of an alert's lists (best first) that the chat has not muted: the one it comes through."""
    return next((w for w in lists if w not in muted), None)


def _drop_waiting(db: _LockedConnection, reason: str, where: str, args: Sequence[object]) -> int:
    """Rows not sent yet (pending or held) that must not go any more, merged away with why; returns how many."""
    return int(db.execute(f"UPDATE outbox SET state='merged', error=? WHERE state IN ('pending','held') AND {where}",
                          [reason, *args]).rowcount)


def _insert_notices(db: _LockedConnection, notices: Iterable[tuple[int, str]], stamp: str | None) -> None:
    """Plain notices (chat id, text) into the outbox, inside the caller's transaction."""
    db.executemany("INSERT INTO outbox(chat_id, kind, watchlist, payload, not_before, created) "
                   "VALUES(?, 'notice', '', ?, ?, ?)",
                   [(c, json.dumps({"text": text}, ensure_ascii=False), stamp, stamp) for c, text in notices])


def _source_name(entry: str | list[str]) -> str:
    """A stories.sources entry: the first outlet's name, or [outlet, headline] for later copies."""
    return entry if isinstance(entry, str) else entry[0]


def _plain(n: NewItem) -> bool:
    """An item that matched nothing: no story, no alert; written in bulk."""
    return not n.matches and not n.alert_chats and n.story_id is None


def _item(r: sqlite3.Row, fallback: datetime) -> Item:
    return Item(
        key=r["key"], feed_id=r["feed_id"], title=r["title"], summary=r["summary"], link=r["link"],
        canonical_link=r["canonical_link"], guid=r["guid"], published=_dt(r["published"]) or fallback,
        lang=r["lang"], source=r["source"],
    )


def _row(r: sqlite3.Row) -> OutboxRow:
    return OutboxRow(
        id=r["id"], chat_id=r["chat_id"], kind=r["kind"], watchlist=r["watchlist"], story_id=r["story_id"],
        payload=r["payload"], state=r["state"], attempts=r["attempts"],
        not_before=_dt(r["not_before"]) or datetime.now(UTC), message_id=r["message_id"],
        created=_dt(r["created"]),
    )


_INSERT_ITEM = """INSERT INTO items(key, feed_id, title, summary, link, canonical_link, guid, published,
                      first_seen, lang, source) VALUES(?,?,?,?,?,?,?,?,?,?,?)
                  ON CONFLICT(key) DO NOTHING"""


def _item_values(it: Item, stamp: str | None) -> tuple[Any, ...]:
    return (it.key, it.feed_id, it.title, it.summary, it.link, it.canonical_link, it.guid, _ts(it.published),
            stamp, it.lang, it.source)


def _alert_payload(item: Item) -> dict[str, Any]:
    return {
        "title": item.title,
        "summary": item.summary,
        "link": item.link,
        "source": item.source,
        "published": _ts(item.published),
        "lang": item.lang,
        "feed": item.feed_id,
    }
