"""The daemon at start and under an operator's signals, with real subprocesses: Telegram down or
refusing the token at boot, the health port taken, SIGHUP."""

from __future__ import annotations

import signal
import socket
import sqlite3
import time
from pathlib import Path

from tests.conftest import run_cli
from tests.servers import FeedServer, Route, TelegramStub, rss
from tests.test_e2e import MATCHING, UNRELATED
from tests.test_lifecycle import _env, _feed, _start, _wait

CHANNEL = -1001234567890


def _with_channel(workdir: Path) -> None:
    """dprk-troops goes to a fixed channel, so an alert is queued without any subscriber."""
    wl = workdir / "watchlists" / "dprk-troops.yaml"
    wl.write_text(wl.read_text(encoding="utf-8") + f"\nchats: [{CHANNEL}]\n", encoding="utf-8")


def _outbox(workdir: Path) -> list[tuple[int, str]]:
    con = sqlite3.connect(workdir / "state" / "mediabot.db")
    try:
        return [(int(c), str(s)) for c, s in con.execute("SELECT chat_id, state FROM outbox WHERE kind='alert'")]
    finally:
        con.close()


def _exited(daemon, timeout: float = 15) -> str:  # type: ignore[no-untyped-def]
    """Wait for the daemon to exit by itself (killed if it does not); its stderr."""
    try:
        _out, err = daemon.communicate(timeout=timeout)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
    return str(err)


def _stop(daemon) -> str:  # type: ignore[no-untyped-def]
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
    return _exited(daemon, timeout=12)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once the socket is closed


def test_telegram_unreachable_at_start_keeps_polling_and_queues_alerts(workdir, feed_server: FeedServer):
    _with_channel(workdir)
    _feed(workdir, feed_server, [MATCHING, UNRELATED])
    env = _env(workdir, TELEGRAM_BOT_TOKEN=TelegramStub.TOKEN,
               TELEGRAM_API_BASE_URL=f"http://127.0.0.1:{_closed_port()}/bot")
    daemon = _start(["run"], env)
    try:
        assert _wait(lambda: feed_server.hits("/news.xml") >= 1, timeout=10), "no feed polled while Telegram is down"
        assert _wait(lambda: (workdir / "state" / "mediabot.db").exists() and (CHANNEL, "pending") in _outbox(workdir),
                     timeout=10), "the alert was not queued"
        time.sleep(1.5)  # a retry of the start has happened by now
        assert daemon.poll() is None, "the daemon exited because Telegram was down at start"
    finally:
        err = _stop(daemon)
    assert daemon.returncode == 0, err
    assert "telegram not reachable at start" in err
    assert "uncaught" not in err and "Traceback" not in err
    assert TelegramStub.TOKEN not in err and TelegramStub.TOKEN.split(":")[1] not in err


def test_telegram_outage_at_start_then_recovery_delivers_the_queued_alert(workdir, feed_server, telegram):
    _with_channel(workdir)
    _feed(workdir, feed_server, [MATCHING, UNRELATED])
    telegram.unavailable = 3  # getMe fails, and so may the first send: 502 Bad Gateway
    env = _env(workdir, TELEGRAM_BOT_TOKEN=telegram.TOKEN, TELEGRAM_API_BASE_URL=telegram.base_url)
    daemon = _start(["run"], env)
    try:
        assert _wait(lambda: len(telegram.sent_to(CHANNEL)) == 1, timeout=15), "the alert never arrived"
        # commands work once Telegram is back: the updater is polling
        assert _wait(lambda: any(m == "getUpdates" for m, _p, _t in telegram.calls), timeout=10)
    finally:
        err = _stop(daemon)
    assert daemon.returncode == 0, err
    assert "telegram not reachable at start" in err and "telegram connected" in err
    assert len(telegram.sent_to(CHANNEL)) == 1


def test_rejected_token_at_start_is_one_line_and_exit_2(workdir, feed_server, telegram):
    _feed(workdir, feed_server, [UNRELATED])
    telegram.reject_token = True
    env = _env(workdir, TELEGRAM_BOT_TOKEN=telegram.TOKEN, TELEGRAM_API_BASE_URL=telegram.base_url)
    daemon = _start(["run"], env)
    err = _exited(daemon)
    assert daemon.returncode == 2, err
    assert "rejected the bot token" in err and "TELEGRAM_BOT_TOKEN" in err
    assert "uncaught" not in err and "Traceback" not in err
    assert telegram.TOKEN.split(":")[1] not in err


def test_poll_once_with_a_rejected_token_keeps_the_alert_and_exits_2(workdir, feed_server, telegram):
    _with_channel(workdir)
    _feed(workdir, feed_server, [MATCHING, UNRELATED])
    telegram.reject_token = True
    env = _env(workdir, TELEGRAM_BOT_TOKEN=telegram.TOKEN, TELEGRAM_API_BASE_URL=telegram.base_url)
    result = run_cli(["poll", "--once"], env, timeout=30)
    assert result.returncode == 2, result.stderr
    assert "rejected the bot token" in result.stderr and "stay queued" in result.stderr
    assert (CHANNEL, "pending") in _outbox(workdir)  # not failed: it goes out once the token is fixed
    telegram.reject_token = False
    again = run_cli(["poll", "--once"], env, timeout=30)
    # the row waits TOKEN_RETRY after the refusal; `poll --once` leaves a long wait for a later run
    assert again.returncode == 0, again.stderr
    assert (CHANNEL, "pending") in _outbox(workdir)


def test_health_port_in_use_is_one_line_and_exit_2_before_any_poll(workdir, feed_server):
    _feed(workdir, feed_server, [MATCHING])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        daemon = _start(["run"], _env(workdir, MEDIABOT_HTTP_ADDR=f"127.0.0.1:{port}"))
        err = _exited(daemon)
    assert daemon.returncode == 2, err
    assert f"cannot listen on MEDIABOT_HTTP_ADDR=127.0.0.1:{port}" in err
    assert "uncaught" not in err and "Traceback" not in err
    assert feed_server.hits("/news.xml") == 0


def test_sighup_reloads_the_yaml_and_keeps_running(workdir, feed_server):
    _feed(workdir, feed_server, [UNRELATED])
    daemon = _start(["run"], _env(workdir, MEDIABOT_LOG_LEVEL="INFO"))
    try:
        assert _wait(lambda: feed_server.hits("/news.xml") >= 1), "daemon never polled"
        daemon.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert daemon.poll() is None, "SIGHUP killed the daemon"
    finally:
        err = _stop(daemon)
    assert daemon.returncode == 0, err
    assert "SIGHUP: reloading the config" in err and "config reloaded" in err


def test_removing_the_lock_file_does_not_let_a_second_daemon_in(workdir, feed_server):
    _feed(workdir, feed_server, [UNRELATED])
    daemon = _start(["run"], _env(workdir))
    try:
        assert _wait(lambda: feed_server.hits("/news.xml") >= 1), "daemon never polled"
        (workdir / "state" / "mediabot.lock").unlink()  # a tidy-up of state/ while it runs
        second = _start(["run"], _env(workdir))
        err2 = _exited(second, timeout=10)
        assert second.returncode == 3, err2
        assert "another mediabot is using the state directory" in err2
    finally:
        err = _stop(daemon)
    assert daemon.returncode == 0, err


def test_a_state_directory_deleted_under_the_daemon_stops_it_so_no_second_instance_sends_alongside(
        workdir, feed_server, telegram):
    """`rm -rf state/` while the daemon runs (a reset, a clean-up job): its lock went with the directory, so
    a cron run or a restarted container on the same path was let in while the old daemon went on polling and
    sending from its deleted file: every new story reached the chats twice. The daemon now stops (exit 4)."""
    import shutil

    _feed(workdir, feed_server, [UNRELATED])
    _with_channel(workdir)
    env = _env(workdir, TELEGRAM_BOT_TOKEN=telegram.TOKEN, TELEGRAM_API_BASE_URL=telegram.base_url,
               MEDIABOT_POLL_INTERVAL="2", MEDIABOT_POLL_MIN_INTERVAL="2")
    daemon = _start(["run"], env)
    try:
        assert _wait(lambda: feed_server.hits("/news.xml") >= 1, timeout=10), "daemon never polled"
        time.sleep(0.5)
        shutil.rmtree(workdir / "state")
        err = _exited(daemon, timeout=20)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
    assert daemon.returncode == 4, err
    assert "was deleted while mediabot ran" in err and "stopping (exit 4)" in err
    assert "uncaught" not in err
    # the next run owns the (new) state directory alone: the story goes out once
    feed_server.routes["/news.xml"] = Route(rss([MATCHING, UNRELATED]))
    again = run_cli(["poll", "--once"], env, timeout=30)
    assert again.returncode == 0, again.stderr
    assert len(telegram.sent_to(CHANNEL)) == 1


def test_another_process_polling_with_the_token_is_one_clear_error_not_a_traceback_per_try(workdir, feed_server,
                                                                                          telegram):
    _feed(workdir, feed_server, [UNRELATED])
    telegram.conflict = True
    env = _env(workdir, TELEGRAM_BOT_TOKEN=telegram.TOKEN, TELEGRAM_API_BASE_URL=telegram.base_url)
    daemon = _start(["run"], env)
    try:
        assert _wait(lambda: [m for m, _p, _t in telegram.calls].count("getUpdates") >= 3, timeout=15)
    finally:
        err = _stop(daemon)
    assert daemon.returncode == 0, err
    assert err.count("another process is polling Telegram with this bot token") == 1
    assert "Traceback" not in err and "Exception happened while polling" not in err


def test_ticks_go_on_during_a_long_cycle_so_health_stays_green(workdir, feed_server):
    """A slow host makes a cycle last minutes: the tick job waited inside it, so "last poll tick" grew
    until /healthz said 503 and a liveness probe restarted a healthy bot (cancelling the cycle)."""
    import json
    import urllib.request

    def trickle():  # a feed that takes ~6 s to arrive
        yield b'<?xml version="1.0"?><rss version="2.0"><channel><title>slow</title>'
        for _ in range(12):
            yield b" "
        yield b"</channel></rss>"

    _feed(workdir, feed_server, [UNRELATED])
    feed_server.stream("/news.xml", trickle, delay=0.5)
    port = _closed_port()
    daemon = _start(["run"], _env(workdir, MEDIABOT_HTTP_ADDR=f"127.0.0.1:{port}", MEDIABOT_POLL_INTERVAL="2",
                                  MEDIABOT_POLL_MIN_INTERVAL="2"))
    try:
        def scheduler() -> str:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                    return str(json.loads(resp.read())["checks"]["scheduler"]["detail"])
            except OSError:
                return ""

        assert _wait(lambda: "cycle running for 4 s" in scheduler(), timeout=15), scheduler()
        detail = scheduler()
        age = int(detail.split("last poll tick ")[1].split(" s ago")[0])
        assert age <= 2, detail  # ticks keep coming while the cycle runs
    finally:
        err = _stop(daemon)
    assert "maximum number of running instances" not in err


def test_flood_control_at_start_is_waited_out_not_an_exit(workdir, feed_server, telegram):
    """A 429 to getMe at boot stopped the daemon with exit 2, "a configuration to fix": with a restart
    policy, a crash loop that asked getMe again at each start."""
    _feed(workdir, feed_server, [UNRELATED])
    telegram.flood_getme = 1
    env = _env(workdir, TELEGRAM_BOT_TOKEN=telegram.TOKEN, TELEGRAM_API_BASE_URL=telegram.base_url)
    daemon = _start(["run"], env)
    try:
        assert _wait(lambda: any(m == "getUpdates" for m, _p, _t in telegram.calls), timeout=15), "never connected"
        assert daemon.poll() is None
    finally:
        err = _stop(daemon)
    assert daemon.returncode == 0, err
    assert "flood control" in err and "telegram connected" in err


def test_a_token_revoked_while_running_is_said_and_a_sigterm_still_stops_cleanly(workdir, feed_server, telegram):
    """The token is revoked in BotFather while the daemon runs: python-telegram-bot's polling loop gives up
    with a traceback of its own; the ops engineer then stops the container to put the new token in. That
    stop crashed ("uncaught exception", exit 1, the store not closed)."""
    import json
    import urllib.error
    import urllib.request

    _feed(workdir, feed_server, [UNRELATED])
    port = _closed_port()
    env = _env(workdir, TELEGRAM_BOT_TOKEN=telegram.TOKEN, TELEGRAM_API_BASE_URL=telegram.base_url,
               MEDIABOT_HTTP_ADDR=f"127.0.0.1:{port}")

    def telegram_health() -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                body = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read())
        except OSError:
            return ""
        return str(body["checks"]["telegram"]["detail"])

    daemon = _start(["run"], env)
    try:
        assert _wait(lambda: telegram_health() == "connected", timeout=15), telegram_health()
        telegram.reject_token = True
        assert _wait(lambda: "token was rejected" in telegram_health(), timeout=20), telegram_health()
        started = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        _out, err = daemon.communicate(timeout=15)
        elapsed = time.monotonic() - started
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
    assert daemon.returncode == 0, err
    assert elapsed < 10
    assert err.count("telegram rejected the bot token while running") == 1
    assert "uncaught" not in err
    wal = workdir / "state" / "mediabot.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0  # the store was closed (checkpointed)


def test_another_process_holding_the_store_locked_does_not_freeze_commands_or_health(workdir, feed_server,
                                                                                     telegram):
    """An admin leaves `sqlite3 state/mediabot.db` in a write transaction while news comes in: the cycle's
    write waits for the lock in its thread, and held the store's own lock meanwhile, so every store call on
    the event loop waited too: /help went unanswered for 30 s, /healthz blamed the loop. Now commands are
    answered, health names the store, and the story goes out once the lock is released."""
    import json
    import urllib.error
    import urllib.request

    _with_channel(workdir)
    port = _closed_port()
    _feed(workdir, feed_server, [UNRELATED])
    env = _env(workdir, TELEGRAM_BOT_TOKEN=telegram.TOKEN, TELEGRAM_API_BASE_URL=telegram.base_url,
               MEDIABOT_HTTP_ADDR=f"127.0.0.1:{port}", MEDIABOT_POLL_INTERVAL="2", MEDIABOT_POLL_MIN_INTERVAL="2")

    def checks() -> dict[str, dict[str, object]]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as resp:
                return dict(json.loads(resp.read())["checks"])
        except urllib.error.HTTPError as exc:
            return dict(json.loads(exc.read())["checks"])
        except OSError:
            return {}

    daemon = _start(["run"], env)
    other = None
    try:
        assert _wait(lambda: checks().get("telegram", {}).get("detail") == "connected", timeout=15), checks()
        other = sqlite3.connect(workdir / "state" / "mediabot.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # the admin's session
        polled = feed_server.hits("/news.xml")
        feed_server.routes["/news.xml"] = Route(rss([MATCHING, UNRELATED]))
        assert _wait(lambda: feed_server.hits("/news.xml") > polled, timeout=10)
        time.sleep(1.0)  # the cycle's write now waits for the lock
        asked = time.monotonic()
        telegram.user_message("/help", chat_id=4242)
        assert _wait(lambda: bool(telegram.sent_to(4242)), timeout=8), "/help not answered while the store is locked"
        assert time.monotonic() - asked < 8
        assert "/subscribe" in telegram.sent_to(4242)[0].text  # the help, not an apology
        telegram.user_message("/subscribe dprk-troops", chat_id=4242)  # a command that must write: it says so
        assert _wait(lambda: len(telegram.sent_to(4242)) == 2, timeout=8)
        assert "konnte es nicht speichern" in telegram.sent_to(4242)[1].text
        assert _wait(lambda: "locked" in str(checks().get("store", {}).get("detail")), timeout=20), checks()
        assert checks()["loop"]["ok"], checks()
        assert not telegram.sent_to(CHANNEL)  # the story is not recorded yet
        other.execute("ROLLBACK")
        assert _wait(lambda: bool(telegram.sent_to(CHANNEL)), timeout=40), "the story never went out"
    finally:
        if other is not None:
            other.close()
        err = _stop(daemon)
    assert daemon.returncode == 0, err
    assert len(telegram.sent_to(CHANNEL)) == 1


def test_an_alert_sent_while_another_process_holds_the_store_is_recorded_before_a_stop(workdir, feed_server,
                                                                                      telegram):
    """Telegram takes an alert while another process holds the store's write lock for a few seconds, and the
    daemon is stopped meanwhile (docker stop, a deploy): the send, which the store could not record at once,
    is recorded before the daemon exits, so the next start does not send it again."""
    import threading

    _with_channel(workdir)
    _feed(workdir, feed_server, [MATCHING, UNRELATED])
    env = _env(workdir, TELEGRAM_BOT_TOKEN=telegram.TOKEN, TELEGRAM_API_BASE_URL=telegram.base_url)
    db = workdir / "state" / "mediabot.db"
    holders: list[sqlite3.Connection] = []

    def lock_the_store(msg) -> None:  # type: ignore[no-untyped-def]
        if msg.method == "sendMessage" and msg.chat_id == CHANNEL and not holders:
            other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
            other.execute("BEGIN IMMEDIATE")
            holders.append(other)
            threading.Timer(3.5, lambda: other.execute("ROLLBACK")).start()

    telegram.on_accept = lock_the_store
    daemon = _start(["run"], env)
    try:
        assert _wait(lambda: len(telegram.sent_to(CHANNEL)) >= 1, timeout=20), "the alert never went out"
        time.sleep(1.0)
        err = _stop(daemon)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
        time.sleep(3.0)  # the other process is done
        for other in holders:
            other.close()
    assert daemon.returncode == 0, err
    telegram.on_accept = None
    again = run_cli(["poll", "--once"], env)
    assert again.returncode == 0, again.stderr
    assert len(telegram.sent_to(CHANNEL)) == 1, "the alert reached the channel twice"
