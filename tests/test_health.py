"""/healthz, /metrics and `mediabot health`: unit cases on a loopback server, then the real daemon."""

from __future__ import annotations

import json
import signal
import socket
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest

from bot.deliver import DeliveryStats
from bot.health import LOOP_STALE_AFTER, HealthServer, HealthState, split_addr
from bot.metrics import Metrics
from bot.models import OutboxRow
from bot.pipeline import FeedOutcome
from tests.conftest import run_cli, write_feeds_yaml
from tests.servers import Route, rss
from tests.test_e2e import MATCHING, UNRELATED
from tests.test_lifecycle import _start, _wait


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthy_state() -> HealthState:
    now = time.monotonic()
    return HealthState(loop_beat=now, scheduler_alive=True, scheduler_detail="ok", store_ok=True,
                       store_checked=now, store_detail="writable")


def test_health_state_fails_on_a_stale_loop_a_dead_scheduler_or_an_unwritable_store():
    state = _healthy_state()
    assert state.report()[0] is True
    assert state.report(now=state.loop_beat + LOOP_STALE_AFTER + 1)[0] is False
    state.scheduler_alive = False
    healthy, body = state.report()
    assert not healthy and body["checks"]["scheduler"]["ok"] is False
    state = _healthy_state()
    state.store_ok = False
    healthy, body = state.report()
    assert not healthy and body["status"] == "fail" and body["checks"]["store"]["ok"] is False


@pytest.mark.parametrize(("addr", "expected"), [("127.0.0.1:9108", ("127.0.0.1", 9108)),
                                                (":9108", ("0.0.0.0", 9108)),
                                                ("[::1]:9108", ("::1", 9108))])
def test_split_addr(addr, expected):
    assert split_addr(addr) == expected


def test_metrics_hooks_count_feeds_matches_alerts_and_lag():
    m = Metrics()
    m.on_feed(FeedOutcome("a", "ok", new=3, matched=2, queued=4, by_watchlist={"kursk-front": 2, "dprk-troops": 1}))
    m.on_feed(FeedOutcome("b", "error", error="timeout"))
    m.on_cycle(1.5, ok=True)
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    row = OutboxRow(id=1, chat_id=5, kind="alert", watchlist="kursk-front", story_id=None, payload="{}",
                    state="pending", attempts=0, not_before=now, created=now - timedelta(seconds=7))
    m.on_sent(row, now=now)
    m.watch_delivery(DeliveryStats(sent=1, failed=2, rate_limited=3))
    text = m.render().decode()
    for line in ('mediabot_feeds_polled_total{status="ok"} 1.0', 'mediabot_feeds_polled_total{status="error"} 1.0',
                 "mediabot_feeds_failed_total 1.0", "mediabot_items_seen_total 3.0",
                 'mediabot_matches_total{watchlist="kursk-front"} 2.0', "mediabot_alerts_queued_total 4.0",
                 'mediabot_alerts_sent_total{kind="alert"} 1.0', "mediabot_alerts_failed_total 2.0",
                 "mediabot_telegram_429_total 3.0", "mediabot_cycle_duration_seconds_count 1.0",
                 'mediabot_delivery_lag_seconds_bucket{le="10.0"} 1.0',
                 'mediabot_delivery_lag_seconds_bucket{le="5.0"} 0.0', "mediabot_outbox_depth 0.0"):
        assert line in text, line
    assert "python_gc" not in text  # a private registry, not the global default one


def test_server_answers_healthz_metrics_and_404_on_loopback():
    state, metrics = _healthy_state(), Metrics()
    server = HealthServer("127.0.0.1:0", state, metrics)
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        status, ctype, body = _get(base + "/healthz")
        assert status == 200 and ctype == "application/json" and json.loads(body)["status"] == "ok"
        state.store_ok = False
        status, _, body = _get(base + "/healthz")
        assert status == 503 and json.loads(body)["checks"]["store"]["ok"] is False
        status, ctype, body = _get(base + "/metrics")
        assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
        assert "# TYPE mediabot_cycle_duration_seconds histogram" in body
        assert _get(base + "/nope")[0] == 404
    finally:
        server.stop()


def test_health_command_without_http_checks_the_store(tmp_path):
    result = run_cli(["health"], {"MEDIABOT_STATE_DIR": str(tmp_path / "state")}, timeout=10)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "store ok" in result.stdout and "writable" in result.stdout


def test_health_command_with_http_and_nothing_listening_is_unhealthy(tmp_path):
    env = {"MEDIABOT_STATE_DIR": str(tmp_path / "state"), "MEDIABOT_HTTP_ADDR": f"127.0.0.1:{_free_port()}"}
    result = run_cli(["health"], env, timeout=10)
    assert result.returncode == 1
    assert "/healthz" in result.stdout


def test_daemon_serves_healthz_and_metrics_and_health_command_agrees(workdir, feed_server):
    port = _free_port()
    write_feeds_yaml(workdir / "watchlists", [{"id": "news", "url": feed_server.url("/news.xml"),
                                               "name": "Example News", "lang": "de"}])
    feed_server.routes["/news.xml"] = Route(rss([MATCHING, UNRELATED]))
    env = {"MEDIABOT_WATCHLISTS_DIR": str(workdir / "watchlists"), "MEDIABOT_STATE_DIR": str(workdir / "state"),
           "MEDIABOT_HTTP_ADDR": f"127.0.0.1:{port}"}
    daemon = _start(["run"], env)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return _get(base + "/healthz")[0] == 200
        except OSError:
            return False

    try:
        assert _wait(up, timeout=8), "no healthy /healthz"
        assert _wait(lambda: 'mediabot_alerts_sent_total{kind="alert"} 1.0' in _get(base + "/metrics")[2])
        text = _get(base + "/metrics")[2]
        assert 'mediabot_feeds_polled_total{status="ok"} 1.0' in text
        assert "mediabot_items_seen_total 2.0" in text
        assert 'mediabot_matches_total{watchlist="dprk-troops"} 1.0' in text
        assert "mediabot_cycle_duration_seconds_count 1.0" in text
        body = json.loads(_get(base + "/healthz")[2])
        assert body["checks"]["store"]["detail"] == "writable"
        probe = run_cli(["health"], env, timeout=10)
        assert probe.returncode == 0, probe.stdout
        daemon.send_signal(signal.SIGTERM)
        _out, err = daemon.communicate(timeout=10)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
    assert daemon.returncode == 0, err
    with pytest.raises(OSError):
        _get(base + "/healthz")  # the port is closed again


def test_a_rejected_token_makes_the_daemon_unhealthy_and_says_why():
    state = _healthy_state()
    assert state.report()[0]
    state.telegram_ok, state.telegram_detail = False, "the bot token was rejected; alerts stay queued"
    healthy, body = state.report()
    assert not healthy and body["status"] == "fail"
    assert body["checks"]["telegram"] == {"ok": False, "detail": "the bot token was rejected; alerts stay queued"}


def test_metrics_count_the_feeds_failing_now_not_only_failures_ever():
    m = Metrics()
    m.on_feed(FeedOutcome("a", "error", error="HTTP 500"))
    m.on_feed(FeedOutcome("b", "error", error="HTTP 500"))
    m.on_feed(FeedOutcome("a", "error", error="HTTP 500"))
    assert "mediabot_feeds_failing 2.0" in m.render().decode()
    m.on_feed(FeedOutcome("b", "ok"))
    text = m.render().decode()
    assert "mediabot_feeds_failing 1.0" in text and "mediabot_feeds_failed_total 3.0" in text
    restarted = Metrics()
    restarted.failing_at_start(["a", "c"])  # still in backoff from before the restart
    assert "mediabot_feeds_failing 2.0" in restarted.render().decode()
    restarted.on_feed(FeedOutcome("c", "ok"))
    assert "mediabot_feeds_failing 1.0" in restarted.render().decode()


async def test_a_store_locked_by_another_process_is_blamed_on_the_store_and_the_loop_goes_on(tmp_path, caplog):
    """An operator's sqlite3 session holding the write lock: the health probe ran on the event loop and
    waited there for up to 30 s, so /healthz blamed the loop, commands and sends stopped, and nothing
    was logged."""
    import asyncio
    import sqlite3

    from bot.health import heartbeat
    from bot.store import SqliteStore

    store = SqliteStore(tmp_path / "state" / "mediabot.db")
    other = sqlite3.connect(tmp_path / "state" / "mediabot.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # the other process's write transaction
    state = HealthState()
    beat = asyncio.ensure_future(heartbeat(state, scheduler_check=lambda: (True, "ok"),
                                           store_check=store.check_writable, outbox_depth=lambda: 0, interval=0.05))
    try:
        longest = 0.0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while loop.time() < deadline and not state.store_checked:
            before = loop.time()
            await asyncio.sleep(0.05)
            longest = max(longest, loop.time() - before)
        healthy, body = state.report()
        assert not healthy and body["checks"]["loop"]["ok"] and not body["checks"]["store"]["ok"]
        assert "locked" in body["checks"]["store"]["detail"]
        assert longest < 1.0  # the loop went on while the probe waited (5 s)
        assert any("state store not writable" in r.getMessage() for r in caplog.records)
    finally:
        beat.cancel()
        other.execute("ROLLBACK")
        other.close()
        store.close()


def test_closing_the_store_does_not_wait_for_a_reader_in_another_process(tmp_path):
    """An online backup reading the store made the stop take 30 s (the checkpoint waited for the reader),
    past Docker's 10 s."""
    import sqlite3

    from bot.store import SqliteStore

    store = SqliteStore(tmp_path / "state" / "mediabot.db")
    store.ensure_chat(1)
    reader = sqlite3.connect(tmp_path / "state" / "mediabot.db", isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM chats").fetchone()  # a read snapshot, as a backup holds
    try:
        started = time.monotonic()
        store.close()
        assert time.monotonic() - started < 5
    finally:
        reader.execute("ROLLBACK")
        reader.close()
