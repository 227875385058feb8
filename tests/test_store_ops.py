"""Store operations over time, on a real SQLite file: retention, schema guard, reopening after close."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.errors import StoreError
from bot.models import Item, Match, TermHit
from bot.store import SCHEMA_VERSION, NewItem, SqliteStore

T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)


def _new(key: str, chat: int | None = None) -> NewItem:
    item = Item(key=key, feed_id="news", title=f"Nordkorea Kursk {key}", summary="", link=f"https://n.example/{key}",
                canonical_link=f"https://n.example/{key}", guid=key, published=T0, lang="de", source="News")
    match = Match("kursk-front", 100.0, (TermHit("Kursk", "Kursk", "title", 1, 100.0),))
    return NewItem(item, [f"guid:{key}"], [match], [(chat, "kursk-front")] if chat is not None else [])


def _fresh(store: SqliteStore, keys: list[str]) -> list[bool]:
    """Which of these keys the store has not seen (what the pipeline asks of each polled item)."""
    seen = store.seen_keys(keys)
    return [k not in seen for k in keys]


@pytest.fixture
def store(tmp_path: Path):
    s = SqliteStore(tmp_path / "state" / "mediabot.db")
    yield s
    s.close()


def test_prune_removes_old_items_matches_and_sent_alerts_but_keeps_seen_keys_longer(store):
    store.record_items([_new("old-sent", chat=1)], None, T0)
    store.record_items([_new("old-pending", chat=2)], None, T0)
    store.record_items([_new("recent", chat=3)], None, T0 + timedelta(days=25))
    sent = [r for r in store.outbox_rows() if r.chat_id == 1]
    store.mark_sent(sent[0].id, 77, T0)

    counts = store.prune(T0 + timedelta(days=31), keep_days=30)

    assert counts["items"] == 2 and counts["matches"] == 2 and counts["outbox"] == 1
    assert store.count("items") == 1 and store.count("matches") == 1
    left = {r.chat_id: r.state for r in store.outbox_rows()}
    assert left == {2: "pending", 3: "pending"}  # never prune an alert that has not been delivered
    # the old items' seen keys survive the first prune: still in the feed, they must not alert again
    assert _fresh(store, ["guid:old-sent", "guid:old-pending", "guid:recent", "guid:fresh"]) == [
        False, False, False, True]

    store.prune(T0 + timedelta(days=61), keep_days=30)  # seen keys go after twice the retention
    assert _fresh(store, ["guid:old-sent", "guid:recent"]) == [True, False]


def test_prune_is_bounded_by_keep_seen_days_when_given(store):
    store.record_items([_new("a")], None, T0)
    store.prune(T0 + timedelta(days=40), keep_days=30, keep_seen_days=90)
    assert _fresh(store, ["guid:a"]) == [False]
    store.record_items([_new("b")], None, T0 + timedelta(days=91))  # a store in use has recent keys too
    store.prune(T0 + timedelta(days=91), keep_days=30, keep_seen_days=90)
    assert _fresh(store, ["guid:a", "guid:b"]) == [True, False]


def test_reopen_keeps_everything_and_the_schema_version(tmp_path):
    path = tmp_path / "mediabot.db"
    s = SqliteStore(path)
    s.record_items([_new("a", chat=1)], None, T0)
    s.close()
    s = SqliteStore(path)
    try:
        assert s.schema_version() == SCHEMA_VERSION
        assert s.count("items") == 1 and len(s.due(T0 + timedelta(seconds=1))) == 1
        assert s.check_writable()
    finally:
        s.close()
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


def test_newer_schema_is_refused_and_the_lock_released(tmp_path):
    path = tmp_path / "mediabot.db"
    SqliteStore(path).close()
    con = sqlite3.connect(path)
    con.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="newer mediabot"):
        SqliteStore(path)
    with pytest.raises(StoreError, match="newer mediabot"):
        SqliteStore(path)  # not StoreLockedError: the failed open let go of the instance lock


def test_poll_once_prunes_old_rows_in_cron_mode(workdir, feed_server):
    from tests.conftest import run_cli, write_feeds_yaml
    from tests.servers import Route, rss

    old = datetime.now(UTC) - timedelta(days=45)
    s = SqliteStore(workdir / "state" / "mediabot.db")
    s.record_items([_new("ancient")], None, old)
    s.close()
    write_feeds_yaml(workdir / "watchlists", [{"id": "news", "url": feed_server.url("/news.xml"), "lang": "de"}])
    feed_server.routes["/news.xml"] = Route(rss([]))
    env = {"MEDIABOT_WATCHLISTS_DIR": str(workdir / "watchlists"), "MEDIABOT_STATE_DIR": str(workdir / "state")}
    result = run_cli(["poll", "--once"], env)
    assert result.returncode == 0, result.stderr
    s = SqliteStore(workdir / "state" / "mediabot.db")
    try:
        assert s.count("items") == 0 and s.count("matches") == 0
        assert _fresh(s, ["guid:ancient"]) == [False]  # seen keys outlive the items
    finally:
        s.close()


def test_an_edited_item_learns_its_new_keys_but_only_a_bounded_number(store):
    store.record_items([_new("a")], None, T0)
    # The headline as stored: the item was not edited, so its new key (a per-fetch guid) is not learned.
    assert store.learn_keys([(["guid:a", "guid:a?t=1"], "Nordkorea Kursk a")], T0) == 0
    assert _fresh(store, ["guid:a?t=1"]) == [True]
    # Edited: the new key is remembered as the same item.
    assert store.learn_keys([(["guid:a", "link:new-slug"], "Kursk: neue Schlagzeile")], T0) == 1
    assert _fresh(store, ["link:new-slug"]) == [False]
    # A headline edited on every fetch, with a guid that changes on every fetch: capped per item.
    for n in range(20):
        store.learn_keys([(["guid:a", f"guid:a?t={n}"], f"Kursk: Fassung {n}")], T0)
    assert store.count("seen") == 8
    # An item that matched nothing has no stored identity to extend.
    store.record_items([NewItem(_new("plain").item, ["guid:plain"], [], [])], None, T0)
    assert store.learn_keys([(["guid:plain", "link:p2"], "anders")], T0) == 0


def test_a_store_of_schema_1_is_migrated_and_keeps_its_rows(tmp_path):
    from bot.store import _MIGRATIONS

    path = tmp_path / "mediabot.db"
    con = sqlite3.connect(path)  # what the first release left behind
    con.executescript(_MIGRATIONS[0] + "INSERT INTO meta VALUES('schema_version', '1');")
    con.execute("INSERT INTO items(id, key, feed_id, title, summary, link, canonical_link, guid, published, "
                "first_seen, lang, source) VALUES(7, 'a', 'news', 'Kursk', '', 'l', 'l', 'a', 'p', 'f', 'de', 'N')")
    con.execute("INSERT INTO seen VALUES('guid:a', 7, '2026-01-01')")
    con.execute("INSERT INTO feeds(id, url) VALUES('news', 'https://moved.example/feed')")
    con.execute("INSERT INTO chats(id, type, created) VALUES(-100, 'supergroup', '2026-01-01')")
    con.commit()
    con.close()
    looked = SqliteStore(path, lock=False)  # `mediabot health` of a newer image beside the old daemon
    try:
        assert looked.schema_version() == 1 and looked.check_writable()  # looks, does not upgrade
    finally:
        looked.close()
    s = SqliteStore(path)
    try:
        assert s.schema_version() == SCHEMA_VERSION == 5
        assert s.chat(-100)["thread"] is None  # a group's alerts stay in the General topic
        assert s.count("items") == 1 and _fresh(s, ["guid:a"]) == [False]
        assert s.learn_keys([(["guid:a", "link:b"], "Kursk: neu")], T0) == 1
        # a feed's stored URL (perhaps a 301's target) counts as the one its feeds.yaml entry had
        assert s.feed_state("news", "https://moved.example/feed").configured == "https://moved.example/feed"
        # its identity and interval are not known yet: adopted at its next poll, not taken for an edit
        assert s.feed_state("news", "https://moved.example/feed").identity is None
    finally:
        s.close()
    con = sqlite3.connect(path)
    assert con.execute("SELECT 1 FROM sqlite_master WHERE name='seen_item'").fetchone()
    con.close()


def test_also_edits_wait_behind_new_messages_that_are_due(store):
    """A story carried by many outlets queues an "also: …" edit per copy and chat; sent in queue order,
    1,000 chats' edits held the next new story back by half a minute."""
    t0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    edits = [store.queue_row(chat, "edit", {"text": "also"}, t0, message_id=7) for chat in (1, 2, 3)]
    notice = store.queue_row(1, "notice", {"text": "n"}, t0 + timedelta(seconds=5))
    alert = store.queue_row(2, "alert", {"title": "t"}, t0 + timedelta(seconds=10))
    due = [r.id for r in store.due(t0 + timedelta(minutes=1))]
    assert due == [notice, alert, *edits]
    from bot.deliver import HoldRouter

    routed = HoldRouter(store, UTC).route(store.due(t0 + timedelta(minutes=1)), t0 + timedelta(minutes=1))
    assert [r.id for r in routed] == [notice, alert, *edits]  # the router keeps that order


def test_a_store_that_cannot_write_fails_with_store_error_whatever_the_call(store):
    """Callers (the pipeline, the deliverer, commands, housekeeping) handle StoreError: a full disk or a
    read-only file must never surface as the database's own exception type (a SQLite error took the
    generic "bug" path, and a store on another database would raise yet other types)."""
    store.ensure_chat(1)
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count={pages}")  # the file cannot grow: a full disk
    calls = {
        "record_items": lambda: store.record_items([_new(f"a{i}", chat=1) for i in range(50)], None, T0),
        "queue_notice": lambda: store.queue_notice([1], "text " * 2000, T0),
    }
    for name, call in calls.items():
        with pytest.raises(StoreError, match="full") as info:  # the reason, not a failed rollback
            call()
        assert isinstance(info.value.__cause__, sqlite3.Error), name
    store._db.execute("PRAGMA max_page_count=1073741823")
    store.record_items([_new("a", chat=1)], None, T0)  # and it works again once it can write
    assert store.count("items") == 1 and store.pending_count() == 1


def _polled_once(workdir: Path, feed_server, telegram, channel: int) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """A deployment whose troop list goes to `channel`, one feed, polled once by `poll --once`: its environment."""
    from tests.conftest import run_cli, write_feeds_yaml
    from tests.servers import Route, rss
    from tests.test_e2e import UNRELATED

    wl = workdir / "watchlists" / "dprk-troops.yaml"
    wl.write_text(wl.read_text(encoding="utf-8") + f"\nchats: [{channel}]\n", encoding="utf-8")
    write_feeds_yaml(workdir / "watchlists", [{"id": "news", "url": feed_server.url("/news.xml"), "lang": "de"}])
    env = {"MEDIABOT_WATCHLISTS_DIR": str(workdir / "watchlists"), "MEDIABOT_STATE_DIR": str(workdir / "state"),
           "TELEGRAM_BOT_TOKEN": telegram.TOKEN, "TELEGRAM_API_BASE_URL": telegram.base_url}
    feed_server.routes["/news.xml"] = Route(rss([UNRELATED]))
    assert run_cli(["poll", "--once"], env).returncode == 0
    return env


def test_a_restored_backup_alerts_only_recent_items_again_not_the_whole_dedup_window(workdir, feed_server,
                                                                                      telegram):
    """README, Backup and restore: items seen after the backup count as new again, "but only those inside
    the recent window can alert". A restored store knew the feed, so everything of the last 48 h that the
    feed still listed went out a second time (hunt13b: a story of 12 hours ago)."""
    import shutil

    from tests.conftest import run_cli
    from tests.servers import Route, rss
    from tests.test_e2e import MATCHING, UNRELATED

    channel = -1001234567890
    env = _polled_once(workdir, feed_server, telegram, channel)
    db = workdir / "state" / "mediabot.db"
    backup = workdir / "backup.db"
    with sqlite3.connect(db) as src, sqlite3.connect(backup) as dst:
        src.backup(dst)  # the README's online backup
    story = dict(MATCHING, ago=12 * 60)  # published 12 hours ago, seen (and alerted) after the backup
    feed_server.routes["/news.xml"] = Route(rss([story, UNRELATED]))
    first = run_cli(["poll", "--once"], env)
    assert first.returncode == 0, first.stderr
    assert len(telegram.sent_to(channel)) == 1
    for name in ("mediabot.db-wal", "mediabot.db-shm"):  # the README's restore
        (workdir / "state" / name).unlink(missing_ok=True)
    shutil.copy(backup, db)
    feed_server.routes["/news.xml"] = Route(status=503)  # the first run after it: the feed host is down
    failed = run_cli(["poll", "--once"], env)
    assert "older than the last poll of this state directory" in failed.stderr
    with sqlite3.connect(db) as con:
        con.execute("UPDATE feeds SET next_poll=NULL")  # its backoff is over
    feed_server.routes["/news.xml"] = Route(rss([story, UNRELATED]))
    again = run_cli(["poll", "--once"], env)  # a later run still knows the store went back
    assert again.returncode == 0, again.stderr
    assert len(telegram.sent_to(channel)) == 1  # not again
    fresh = dict(MATCHING, title="Nordkorea schickt weitere Soldaten nach Kursk", link="https://n.example/new",
                 guid="new", ago=5)
    feed_server.routes["/news.xml"] = Route(rss([fresh, story, UNRELATED]))
    later = run_cli(["poll", "--once"], env)
    assert later.returncode == 0, later.stderr
    assert "older than the last poll" not in later.stderr  # said once: the restored store polls on normally
    assert len(telegram.sent_to(channel)) == 2


def test_a_clock_put_right_after_running_ahead_is_not_taken_for_a_restore(workdir, feed_server, telegram):
    """A run while the host clock was a day ahead (a VM resumed with a wrong clock) recorded its poll a day
    ahead; the clock put right, the next run records the real time. The note beside the database follows
    the database down: a later start is no "restore", and a new undated story alerts (review of the restore
    detection: every cron run until the clock caught up polled like a first poll, and such stories never
    alerted)."""
    from tests.conftest import run_cli
    from tests.servers import Route, rss
    from tests.test_e2e import MATCHING, UNRELATED

    channel = -1001234567890
    env = _polled_once(workdir, feed_server, telegram, channel)
    db = workdir / "state" / "mediabot.db"
    ahead = (datetime.now(UTC) + timedelta(days=1)).isoformat(timespec="microseconds")
    with sqlite3.connect(db) as con:  # what a run with the clock a day ahead writes
        con.execute("UPDATE feeds SET last_success=?, next_poll=NULL", (ahead,))
    db.with_name("mediabot.db.last-poll").write_text(ahead + "\n", encoding="ascii")
    assert run_cli(["poll", "--once"], env).returncode == 0  # the clock is right again
    undated = {k: v for k, v in MATCHING.items() if k != "ago"}
    feed_server.routes["/news.xml"] = Route(rss([undated, UNRELATED]))
    later = run_cli(["poll", "--once"], env)
    assert later.returncode == 0, later.stderr
    assert "older than the last poll" not in later.stderr
    assert len(telegram.sent_to(channel)) == 1
