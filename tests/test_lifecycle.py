"""Lifecycle with real subprocesses: SIGTERM, a second instance, kill -9 mid-fan-out, newer schema."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from tests.conftest import ROOT, run_cli, stop_daemon, write_feeds_yaml
from tests.servers import FeedServer, Route, TelegramStub, rss
from tests.test_e2e import MATCHING, UNRELATED


def _env(workdir: Path, **extra: str) -> dict[str, str]:
    return {"MEDIABOT_WATCHLISTS_DIR": str(workdir / "watchlists"), "MEDIABOT_STATE_DIR": str(workdir / "state"),
            **extra}


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("MEDIABOT_", "TELEGRAM_"))}
    full.update(env)
    return subprocess.Popen([sys.executable, "-m", "bot", *args], cwd=ROOT, env=full, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait(predicate, timeout: float = 8.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


def _integrity(db: Path) -> str:
    con = sqlite3.connect(db)
    try:
        return str(con.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        con.close()


def _feed(workdir: Path, feed_server: FeedServer, items: list[dict[str, object]]) -> None:
    write_feeds_yaml(workdir / "watchlists", [{"id": "news", "url": feed_server.url("/news.xml"),
                                               "name": "Example News", "lang": "de"}])
    feed_server.routes["/news.xml"] = Route(rss(items))


def test_sigterm_stops_the_daemon_within_10_s_and_leaves_a_consistent_store(workdir, feed_server):
    _feed(workdir, feed_server, [MATCHING, UNRELATED])
    daemon = _start(["run"], _env(workdir))
    try:
        assert _wait(lambda: feed_server.hits("/news.xml") >= 1), "daemon never polled"
        time.sleep(0.3)  # let the first cycle record its items
        started = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        _out, err = daemon.communicate(timeout=10)
        elapsed = time.monotonic() - started
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
    assert daemon.returncode == 0, err
    assert elapsed < 10
    assert '"stopped"' in err or "stopped" in err
    db = workdir / "state" / "mediabot.db"
    assert _integrity(db) == "ok"
    assert not (workdir / "state" / "mediabot.db-wal").exists() or (workdir / "state" / "mediabot.db-wal").stat(
    ).st_size == 0  # checkpointed on close
    # the lock is released: a cron-style run works right away and finds nothing new
    again = run_cli(["poll", "--once"], _env(workdir))
    assert again.returncode == 0, again.stderr
    assert "0 new items" in again.stderr


def test_second_run_on_the_same_state_dir_refuses_with_a_clear_message(workdir, feed_server):
    _feed(workdir, feed_server, [UNRELATED])
    daemon = _start(["run"], _env(workdir))
    try:
        assert _wait(lambda: feed_server.hits("/news.xml") >= 1), "daemon never polled"
        second = _start(["run"], _env(workdir))
        _out, err2 = second.communicate(timeout=10)
        assert second.returncode == 3
        assert "another mediabot" in err2 and f"pid {daemon.pid}" in err2
        assert "twice" in err2
    finally:
        err = stop_daemon(daemon, timeout=10)
    assert daemon.returncode == 0, err


def test_kill_9_mid_fan_out_then_restart_loses_no_alert(workdir, feed_server, telegram: TelegramStub):
    """kill -9 while alerts go out to many chats; a restart sends the rest. A chat gets its alert at
    most twice, and only the sends that were in flight at the kill are repeated."""
    chats = list(range(5001, 5046))
    wl = workdir / "watchlists" / "dprk-troops.yaml"
    wl.write_text(wl.read_text(encoding="utf-8") + f"\nchats: {chats}\n", encoding="utf-8")
    _feed(workdir, feed_server, [MATCHING, UNRELATED])
    env = _env(workdir, TELEGRAM_BOT_TOKEN=telegram.TOKEN, TELEGRAM_API_BASE_URL=telegram.base_url)
    daemon = _start(["run"], env)
    try:
        assert _wait(lambda: len(telegram.messages) >= 8, timeout=8), "fan-out never started"
        telegram.delay = 0.3  # responses now lag: some sends are in flight when the kill lands
        time.sleep(0.2)
        killed_at = time.monotonic()
        daemon.send_signal(signal.SIGKILL)
        daemon.communicate(timeout=5)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
    time.sleep(0.4)  # sends that were in flight at the kill are accepted by the stub now
    sent_before = {m.chat_id for m in telegram.messages}
    assert len(sent_before) < len(chats), "the fan-out finished before the kill; slow it down"
    telegram.delay = 0.0
    db = workdir / "state" / "mediabot.db"
    assert _integrity(db) == "ok"  # opens cleanly after kill -9 (WAL)

    restarted_at = time.monotonic()
    again = run_cli(["poll", "--once"], env, timeout=20)
    assert again.returncode == 0, again.stderr
    per_chat = Counter(m.chat_id for m in telegram.messages if m.chat_id in chats)
    assert set(per_chat) == set(chats), f"lost: {sorted(set(chats) - set(per_chat))}"
    repeated = [c for c, n in per_chat.items() if n > 1]
    assert all(n <= 2 for n in per_chat.values())
    # A repeat is only possible for a send in flight at the kill: the request reached the stub (`at` is
    # when the stub handled it: shortly before the kill, or just after for a request already written to
    # the socket) and the reply (0.3 s late) never came back. Everything the stub handled before the
    # restart was sent by the killed process.
    in_flight = {m.chat_id for m in telegram.messages if killed_at - 1.0 <= m.at < restarted_at}
    assert set(repeated) <= in_flight
    assert len(repeated) <= 30  # Deliverer.max_in_flight
    assert _integrity(db) == "ok"


def test_store_with_a_newer_schema_is_refused_with_a_clear_message(workdir, feed_server):
    _feed(workdir, feed_server, [UNRELATED])
    first = run_cli(["poll", "--once"], _env(workdir))
    assert first.returncode == 0, first.stderr
    con = sqlite3.connect(workdir / "state" / "mediabot.db")
    con.execute("UPDATE meta SET value='999' WHERE key='schema_version'")
    con.commit()
    con.close()
    for args in (["poll", "--once"], ["run"]):
        result = run_cli(args, _env(workdir), timeout=10)
        assert result.returncode == 4, (args, result.stderr)
        assert "newer mediabot (schema 999" in result.stderr
        assert "upgrade mediabot or restore a backup" in result.stderr
    health = run_cli(["health"], _env(workdir), timeout=10)
    assert health.returncode == 1
    assert "newer mediabot" in health.stdout


def test_sigterm_mid_fan_out_settles_in_flight_sends_and_a_restart_sends_the_rest(workdir, feed_server, telegram):
    chats = list(range(6001, 6046))
    wl = workdir / "watchlists" / "dprk-troops.yaml"
    wl.write_text(wl.read_text(encoding="utf-8") + f"\nchats: {chats}\n", encoding="utf-8")
    _feed(workdir, feed_server, [MATCHING])
    env = _env(workdir, TELEGRAM_BOT_TOKEN=telegram.TOKEN, TELEGRAM_API_BASE_URL=telegram.base_url)
    daemon = _start(["run"], env)
    try:
        assert _wait(lambda: len(telegram.messages) >= 8, timeout=8), "fan-out never started"
        telegram.delay = 0.3
        started = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        _out, err = daemon.communicate(timeout=10)
        elapsed = time.monotonic() - started
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
    assert daemon.returncode == 0, err
    assert elapsed < 10
    first = Counter(m.chat_id for m in telegram.messages)
    assert len(first) < len(chats)
    telegram.delay = 0.0
    again = run_cli(["poll", "--once"], env, timeout=20)
    assert again.returncode == 0, again.stderr
    per_chat = Counter(m.chat_id for m in telegram.messages if m.chat_id in chats)
    assert set(per_chat) == set(chats)
    assert all(n == 1 for n in per_chat.values()), "a clean stop waits for its in-flight sends: no repeats"


def test_sigterm_during_a_hanging_feed_fetch_still_exits_0_within_10_s(workdir, feed_server):
    """A cycle stuck on a slow feed gets a short grace, then is cancelled; nothing half-recorded."""
    write_feeds_yaml(workdir / "watchlists", [
        {"id": "slow", "url": feed_server.url("/slow.xml"), "name": "Slow", "lang": "de"},
    ])
    feed_server.stream("/slow.xml", lambda: iter([b"<?xml version='1.0'?><rss><channel>"] + [b" "] * 400),
                       delay=0.1)
    daemon = _start(["run"], _env(workdir))
    try:
        assert _wait(lambda: feed_server.hits("/slow.xml") >= 1), "daemon never polled"
        time.sleep(0.3)
        started = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        _out, err = daemon.communicate(timeout=10)
        elapsed = time.monotonic() - started
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
    assert daemon.returncode == 0, err
    assert elapsed < 10
    assert elapsed > 1.5  # the cycle had its grace before it was cancelled
    assert "poll cycle cancelled by shutdown" in err
    assert _integrity(workdir / "state" / "mediabot.db") == "ok"


def test_a_state_directory_that_cannot_be_used_is_one_line_and_exit_4(workdir, feed_server):
    """A state path that is a file (or a directory owned by another uid, read-only): exit 4 with the
    reason, not exit 1 with an "uncaught exception" traceback."""
    write_feeds_yaml(workdir / "watchlists", [{"id": "n", "url": feed_server.url("/n.xml"), "lang": "de"}])
    blocker = workdir / "not-a-dir"
    blocker.write_text("x")
    env = {"MEDIABOT_WATCHLISTS_DIR": str(workdir / "watchlists"), "MEDIABOT_STATE_DIR": str(blocker / "state")}
    for args in (["poll", "--once"], ["run"]):
        result = run_cli(args, env, timeout=30)
        assert result.returncode == 4, (args, result.stderr)
        assert "cannot use the state directory" in result.stderr and "Traceback" not in result.stderr


def test_poll_once_stops_cleanly_on_sigterm_and_the_next_run_finishes_the_work(workdir, feed_server):
    """`poll --once` had no signal handling: killed at once outside a container (the sends in flight went
    out twice), ignored as PID 1 in one (the CronJob's deadline waited for SIGKILL)."""

    write_feeds_yaml(workdir / "watchlists", [{"id": "slow", "url": feed_server.url("/slow.xml"), "lang": "de"}])
    body = rss([{"title": "Nordkoreanische Soldaten kämpfen im Gebiet Kursk", "link": "https://n.example/1",
                 "guid": "1", "ago": 5}])
    feed_server.stream("/slow.xml", lambda: iter([body[:40], body[40:]]), delay=30)  # hangs mid-body
    env = _env(workdir, MEDIABOT_FETCH_TIMEOUT="120")
    poll = _start(["poll", "--once"], env)
    try:
        assert _wait(lambda: feed_server.hits("/slow.xml") >= 1, timeout=15)
        started = time.monotonic()
        poll.send_signal(signal.SIGTERM)
        _out, err = poll.communicate(timeout=15)
    finally:
        if poll.poll() is None:
            poll.kill()
            poll.communicate()
    assert poll.returncode == 128 + signal.SIGTERM and time.monotonic() - started < 10
    assert "stopped by SIGTERM" in err and "Traceback" not in err
    feed_server.routes.pop("/slow.xml", None)
    feed_server.routes["/slow.xml"] = Route(body)
    again = run_cli(["poll", "--once"], env)
    assert again.returncode == 0 and "1 new items, 1 matched" in again.stderr


async def test_a_stop_that_came_during_start_up_stops_the_daemon_at_once(workdir, caplog):
    """As PID 1 a SIGTERM without a handler is dropped: one in the first second (config, store, index)
    was lost, and the container was killed after its timeout. The command line now catches it early and
    the daemon stops as soon as it is up."""
    import logging

    from bot.config import load_config, load_settings
    from bot.scheduler import run_daemon

    write_feeds_yaml(workdir / "watchlists", [{"id": "n", "url": "https://n.example/feed.xml"}])
    settings = load_settings(_env(workdir))
    started = time.monotonic()
    with caplog.at_level(logging.INFO):
        code = await run_daemon(settings, load_config(settings.watchlists_dir), [signal.SIGTERM])
    assert code == 0 and time.monotonic() - started < 10
    assert "stop requested during start-up" in caplog.text and "stopped" in caplog.text


def test_signals_before_the_daemon_is_up_are_caught_not_fatal():
    """SIGTERM is remembered and SIGHUP ignored while the command loads (a SIGHUP then killed the daemon)."""
    code = ("import os, signal; from bot.cli import EARLY_SIGNALS, _catch_early_signals; _catch_early_signals(); "
            "os.kill(os.getpid(), signal.SIGHUP); os.kill(os.getpid(), signal.SIGTERM); print(EARLY_SIGNALS)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and result.stdout.strip() == f"[{int(signal.SIGTERM)}]"
