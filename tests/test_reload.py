"""The daemon picks up edited YAML within seconds; a broken edit keeps the last good config and the
bot admins are told in Telegram."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

from tests.conftest import ROOT, stop_daemon, write_feeds_yaml
from tests.servers import Route, rss

ADMIN = 777


def test_broken_edit_is_rejected_with_file_and_line_and_a_good_edit_is_swapped_in(workdir, feed_server, telegram):
    wdir = workdir / "watchlists"
    write_feeds_yaml(wdir, [{"id": "n", "url": feed_server.url("/n.xml"), "name": "N", "lang": "de"}])
    feed_server.routes["/n.xml"] = Route(rss([]))
    env = {**os.environ, "TELEGRAM_BOT_TOKEN": telegram.TOKEN, "TELEGRAM_API_BASE_URL": telegram.base_url,
           "MEDIABOT_WATCHLISTS_DIR": str(wdir), "MEDIABOT_STATE_DIR": str(workdir / "state"),
           "MEDIABOT_ADMINS": str(ADMIN), "MEDIABOT_LOG_LEVEL": "INFO"}
    log = workdir / "daemon.log"  # read while it runs: a pipe is only read at the end (and may fill up)
    with log.open("w") as log_file:
        daemon = subprocess.Popen([sys.executable, "-m", "bot", "run"], cwd=ROOT, env=env,
                                  stdout=subprocess.DEVNULL, stderr=log_file, text=True)
    try:
        assert telegram.wait_for(lambda: feed_server.hits("/n.xml") >= 1, timeout=15)
        time.sleep(1.5)  # let the daemon take its first look at the files
        broken = wdir / "extra.yaml"
        broken.write_text("description: x\ngroups:\n  a: [Kursk]\nrules:\n  - all: [a, b]\n", encoding="utf-8")
        assert telegram.wait_for(lambda: bool(telegram.sent_to(ADMIN)), timeout=15)
        notice = telegram.sent_to(ADMIN)[0].text
        assert "rejected" in notice and f"{broken}:5:" in notice
        assert daemon.poll() is None  # still running on the last good config
        broken.write_text("description: x\ngroups:\n  a: [Kursk]\n", encoding="utf-8")
        assert telegram.wait_for(lambda: "watchlists=4" in log.read_text(), timeout=20)  # the good edit is in
        # ... and the admins, whose last word from the bot was the rejection, hear so
        assert telegram.wait_for(lambda: len(telegram.sent_to(ADMIN)) == 2, timeout=10)
        assert "accepted" in telegram.sent_to(ADMIN)[1].text and "4 watchlists" in telegram.sent_to(ADMIN)[1].text
        assert daemon.poll() is None
    finally:
        stop_daemon(daemon, timeout=15)
    assert "config reloaded" in log.read_text()
    assert daemon.returncode == 0



def test_a_restart_with_a_broken_edit_serves_the_last_good_config(workdir, feed_server, telegram):
    """A container restarted (a deploy, a crash) while a watchlist had a typo stopped at once with exit 2,
    and stayed down in a restart loop: no alerts until someone read the log."""
    wdir = workdir / "watchlists"
    write_feeds_yaml(wdir, [{"id": "n", "url": feed_server.url("/n.xml"), "name": "N", "lang": "de"}])
    feed_server.routes["/n.xml"] = Route(rss([]))
    env = {**os.environ, "TELEGRAM_BOT_TOKEN": telegram.TOKEN, "TELEGRAM_API_BASE_URL": telegram.base_url,
           "MEDIABOT_WATCHLISTS_DIR": str(wdir), "MEDIABOT_STATE_DIR": str(workdir / "state"),
           "MEDIABOT_ADMINS": str(ADMIN), "MEDIABOT_LOG_LEVEL": "INFO"}
    assert subprocess.run([sys.executable, "-m", "bot", "poll", "--once"], cwd=ROOT, env=env,
                          capture_output=True, timeout=60).returncode == 0  # a run that kept the good config
    kursk = wdir / "kursk-front.yaml"
    kursk.write_text(kursk.read_text(encoding="utf-8") + "colour: red\n", encoding="utf-8")
    log = workdir / "daemon.log"
    with log.open("w") as log_file:
        daemon = subprocess.Popen([sys.executable, "-m", "bot", "run"], cwd=ROOT, env=env,
                                  stdout=subprocess.DEVNULL, stderr=log_file, text=True)
    try:
        assert telegram.wait_for(lambda: bool(telegram.sent_to(ADMIN)), timeout=15)
        assert "Config rejected" in telegram.sent_to(ADMIN)[0].text and "colour" in telegram.sent_to(ADMIN)[0].text
        assert daemon.poll() is None  # up, on the last good config
        kursk.write_text(kursk.read_text(encoding="utf-8").replace("colour: red\n", ""), encoding="utf-8")
        assert telegram.wait_for(lambda: len(telegram.sent_to(ADMIN)) == 2, timeout=20)
        assert "accepted" in telegram.sent_to(ADMIN)[1].text
    finally:
        stop_daemon(daemon, timeout=15)
    assert "serving the last good config" in log.read_text()


async def test_a_failing_feed_taken_out_of_feeds_yaml_no_longer_counts_as_failing(workdir):
    """mediabot_feeds_failing kept a removed or paused feed until a restart (and a paused one after it):
    an alert on the gauge never cleared once the admin had dealt with the dead feed."""
    from bot.metrics import Metrics
    from bot.pipeline import FeedOutcome
    from bot.scheduler import _instrument, reload_config

    rt, settings = _runtime(workdir)
    try:
        metrics = Metrics()
        _instrument(rt, metrics)
        metrics.on_feed(FeedOutcome("n", "error", error="HTTP 500"))
        assert "mediabot_feeds_failing 1.0" in metrics.render().decode()
        write_feeds_yaml(workdir / "watchlists", [{"id": "other", "url": "https://o.example/feed.xml"}])
        assert await reload_config(rt, settings) == []
        assert "mediabot_feeds_failing 0.0" in metrics.render().decode()
    finally:
        await rt.aclose()


async def test_alerts_still_waiting_for_a_list_the_admins_paused_or_a_chat_they_removed_are_dropped(workdir):
    """A held alert of a list paused since went out on /unmute; a channel taken out of chats: still got its
    pending alerts once Telegram was back. An alert that also came through a list the chat keeps stays."""
    from datetime import UTC, datetime

    from bot.models import Item
    from bot.scheduler import reload_config
    from bot.store import NewItem

    channel = -1001234567890
    wdir = workdir / "watchlists"
    troops = wdir / "dprk-troops.yaml"
    troops.write_text(troops.read_text(encoding="utf-8") + f"\nchats: [{channel}]\n", encoding="utf-8")
    rt, settings = _runtime(workdir)
    try:
        now = datetime.now(UTC)
        rt.store.ensure_chat(1001)
        for w in ("kursk-front", "russia-dprk-treaty"):
            rt.store.subscribe(1001, w, now)
        alerts = [("a", 1001, "kursk-front", None), ("b", 1001, "kursk-front", ["kursk-front", "russia-dprk-treaty"]),
                  ("c", channel, "dprk-troops", None), ("d", 1001, "russia-dprk-treaty", None)]
        for key, chat, watchlist, lists in alerts:
            item = Item(key=key, feed_id="n", title=f"Meldung {key}", summary="", link=f"https://n.example/{key}",
                        canonical_link=f"https://n.example/{key}", guid=key, published=now, lang="de", source="N")
            rt.store.record_items([NewItem(item, [key], [], [(chat, watchlist)],
                                           chat_lists={chat: lists} if lists else {})], None, now)
        kursk = wdir / "kursk-front.yaml"
        kursk.write_text(kursk.read_text(encoding="utf-8") + "enabled: false\n", encoding="utf-8")
        troops.write_text(troops.read_text(encoding="utf-8").replace(f"chats: [{channel}]", ""), encoding="utf-8")
        assert await reload_config(rt, settings) == []
        waiting = {r.payload.split('"title": "')[1].split('"')[0] for r in rt.store.outbox_rows("pending")}
        assert waiting == {"Meldung b", "Meldung d"}  # b also came through the treaty list, which stays
        assert len(rt.store.outbox_rows("merged")) == 2
    finally:
        await rt.aclose()


async def test_a_feed_matched_before_a_reload_writes_no_alert_of_a_list_paused_since(workdir):
    """A poll cycle already running when the admins paused a list wrote that list's alerts after the reload
    had dropped the waiting ones."""
    from dataclasses import replace
    from datetime import UTC, datetime

    from bot.models import Item
    from bot.pipeline import _write
    from bot.store import NewItem

    rt, _settings = _runtime(workdir)
    try:
        now = datetime.now(UTC)
        item = Item(key="k", feed_id="n", title="Nordkoreanische Soldaten bei Kursk", summary="", link="https://n.example/k",
                    canonical_link="https://n.example/k", guid="k", published=now, lang="de", source="N")
        matched = NewItem(item, ["k"], [], [(1001, "kursk-front"), (1002, "dprk-troops")])  # matched before the reload
        config = rt.config
        rt.swap_config(replace(config, watchlists=tuple(replace(w, enabled=w.id != "kursk-front")
                                                          for w in config.watchlists)))  # the reload: paused
        assert await rt.ctx.in_store(_write, rt.ctx, [matched], rt.store.feed_state("n", "https://n.example/feed.xml"),
                                     now, []) == 1
        assert [r.chat_id for r in rt.store.outbox_rows("pending")] == [1002]
    finally:
        await rt.aclose()


def _runtime(workdir, **settings):  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from bot.app import build_runtime
    from bot.config import config_signature, load_config, load_settings

    write_feeds_yaml(workdir / "watchlists", [{"id": "n", "url": "https://n.example/feed.xml"}])
    s = replace(load_settings({}), watchlists_dir=workdir / "watchlists", state_dir=workdir / "state", token=None,
                **settings)
    rt = build_runtime(s, load_config(s.watchlists_dir), force_console=True)
    rt.extras["config_files"] = config_signature(s.watchlists_dir)  # as the daemon does at start
    return rt, s


async def test_a_watchlist_still_being_written_goes_live_only_once_it_holds_still(workdir):
    """An upload in chunks: the first half was valid YAML (one group of two) and went live; the second
    write kept the mtime (a coarse-timestamp filesystem), so the finished file was never read."""
    from bot.scheduler import _reload_if_changed

    rt, settings = _runtime(workdir)
    try:
        path = workdir / "watchlists" / "ort.yaml"
        path.write_text("description: d\ngroups:\n  ort: [Kursk]\n", encoding="utf-8")
        stamp = path.stat().st_mtime_ns
        await _reload_if_changed(rt, settings)
        path.write_text("description: d\ngroups:\n  ort: [Kursk]\n  krieg: [Krieg]\n", encoding="utf-8")
        os.utime(path, ns=(stamp, stamp))
        await _reload_if_changed(rt, settings)
        assert "ort" not in rt.config.watchlist_names()  # the half file never went live
        await _reload_if_changed(rt, settings)
        [ort] = [w for w in rt.config.watchlists if w.id == "ort"]
        assert set(ort.groups) == {"ort", "krieg"}
    finally:
        await rt.aclose()


async def test_a_renamed_watchlist_that_chats_follow_is_reported_to_the_admins_and_its_subscribers(workdir):
    """Its subscribers would otherwise take the silence for a quiet news day: each is told, in its language,
    that the list is gone, and again when it is back (the subscription holds again)."""
    from datetime import UTC, datetime

    from bot.scheduler import reload_config

    rt, settings = _runtime(workdir, admins=frozenset({ADMIN}))
    try:
        rt.store.ensure_chat(1001)
        rt.store.ensure_chat(1002, language="en")
        rt.store.ensure_chat(1003)
        for chat in (1001, 1002):
            rt.store.subscribe(chat, "kursk-front", datetime.now(UTC))
        rt.store.subscribe(1003, "dprk-troops", datetime.now(UTC))
        wdir = workdir / "watchlists"
        (wdir / "kursk-front.yaml").rename(wdir / "kursk.yaml")
        assert await reload_config(rt, settings) == []
        notices = {r.chat_id: r.payload for r in rt.store.outbox_rows() if r.kind == "notice"}
        assert set(notices) == {ADMIN, 1001, 1002}  # not the chat that follows another list
        assert "kursk-front" in notices[ADMIN] and "2 chats" in notices[ADMIN]
        assert "nicht mehr an" in notices[1001] and "/unsubscribe kursk-front" in notices[1001]
        assert "no longer offer" in notices[1002]
        (wdir / "kursk.yaml").rename(wdir / "kursk-front.yaml")
        assert await reload_config(rt, settings) == []
        back = [r for r in rt.store.outbox_rows()
                if r.kind == "notice" and ("ist wieder da;" in r.payload or "is back;" in r.payload)]
        assert sorted(r.chat_id for r in back) == [1001, 1002]
    finally:
        await rt.aclose()


async def test_an_edit_that_loads_with_a_new_warning_is_reported_to_the_admins(workdir):
    """A list written without commas loads (one phrase that never matches), and the daemon took it in
    silence: the admins now hear of the warnings an edit brought, once, and of none it did not bring."""
    from bot.scheduler import reload_config

    rt, settings = _runtime(workdir, admins=frozenset({ADMIN}))
    try:
        wdir = workdir / "watchlists"
        text = "description: x\ngroups:\n  place: [Kursk]\n  actor: [Nordkorea, Pjöngjang]\n"
        (wdir / "extra.yaml").write_text(text, encoding="utf-8")
        assert await reload_config(rt, settings) == []
        assert not [r for r in rt.store.outbox_rows() if r.kind == "notice"]  # a clean edit: nothing to say
        (wdir / "extra.yaml").write_text(text.replace("Nordkorea, Pjöngjang", "Nordkorea Пхеньян"), encoding="utf-8")
        assert await reload_config(rt, settings) == []
        notices = [r for r in rt.store.outbox_rows() if r.kind == "notice"]
        assert [r.chat_id for r in notices] == [ADMIN]
        assert "with warnings" in notices[0].payload and f"{wdir / 'extra.yaml'}:4: warning:" in notices[0].payload
        # an edit that moves the warned line down brings no new warning (hunt12a: it was sent again)
        moved = text.replace("description: x\n", "description: >\n  x\n").replace("Nordkorea, Pjöngjang",
                                                                                 "Nordkorea Пхеньян")
        (wdir / "extra.yaml").write_text(moved, encoding="utf-8")
        assert await reload_config(rt, settings) == []
        assert len([r for r in rt.store.outbox_rows() if r.kind == "notice"]) == 1
        (wdir / "extra.yaml").write_text(text.replace("Kursk", "Kursk, Sudscha"), encoding="utf-8")
        assert await reload_config(rt, settings) == []
        assert len([r for r in rt.store.outbox_rows() if r.kind == "notice"]) == 1  # no warning brought
    finally:
        await rt.aclose()


def test_check_rejects_a_dangling_symlink_and_names_the_line_of_a_bad_byte(workdir):
    from tests.conftest import run_cli

    wdir = workdir / "watchlists"
    write_feeds_yaml(wdir, [{"id": "n", "url": "https://n.example/feed.xml"}])
    (wdir / "extra.yaml").symlink_to(workdir / "nowhere.yaml")
    (wdir / "latin.yaml").write_bytes(b"description: d\ngroups:\n  ort: [K\xfcrsk]\n")
    result = run_cli(["check"], {"MEDIABOT_WATCHLISTS_DIR": str(wdir)})
    assert result.returncode == 2
    assert f"{wdir / 'extra.yaml'}:1: a symlink to" in result.stdout
    assert f"{wdir / 'latin.yaml'}:3: not UTF-8 text" in result.stdout


async def _longest_pause(work) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(the event loop's longest pause while `work()` runs, how long it ran)."""
    loop = asyncio.get_running_loop()
    pauses: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = loop.time()
        while not done.is_set():
            await asyncio.sleep(0.005)
            pauses.append(loop.time() - last)
            last = loop.time()

    ticking = asyncio.ensure_future(ticker())
    await asyncio.sleep(0.02)
    started = loop.time()
    await work()
    took = loop.time() - started
    done.set()
    await ticking
    return max(pauses), took


async def test_a_reload_leaves_the_event_loop_free(workdir):
    """/reload and SIGHUP read the YAML and built the matcher on the event loop: with a big watchlist,
    commands and deliveries stalled for the whole reload. The loop's longest pause while it runs must be
    a fraction of its time."""

    from bot.scheduler import reload_config

    rt, settings = _runtime(workdir)
    words = [f"wort{chr(97 + i % 26)}{chr(97 + i // 26 % 26)}{i}" for i in range(6000)]
    (workdir / "watchlists" / "gross.yaml").write_text(
        "description: d\ngroups:\n  a: [" + ", ".join(words[:3000]) + "]\n  b: [" + ", ".join(words[3000:]) + "]\n",
        encoding="utf-8")

    try:
        pause, took = await _longest_pause(lambda: reload_config(rt, settings))
        assert "gross" in rt.config.watchlist_names()
        assert took > 0.1 and pause < took / 2, (pause, took)
    finally:
        await rt.aclose()


async def test_the_daemons_prune_leaves_the_event_loop_free(workdir):
    """The first prune after a long stop deletes many rows (1.4 s for 300,000 seen keys); it ran on the
    event loop, where commands and deliveries waited for it."""
    from datetime import UTC, datetime, timedelta

    from bot.models import Item
    from bot.scheduler import prune_store
    from bot.store import NewItem

    rt, settings = _runtime(workdir)
    old = datetime.now(UTC) - timedelta(days=100)

    def item(n: int) -> NewItem:
        it = Item(key=f"k{n}", feed_id="n", title=f"Meldung {n}", summary="", link=f"https://n.example/{n}",
                  canonical_link=f"https://n.example/{n}", guid=f"g{n}", published=old, lang="de", source="N")
        return NewItem(it, [f"guid:n:{n}", f"link:n.example/{n}"], [], [])

    try:
        for start in range(0, 30_000, 5_000):
            rt.store.record_items([item(n) for n in range(start, start + 5_000)], None, old)
        rt.store.record_items([item(-1)], None, datetime.now(UTC))  # a store in use: its newest key is recent
        pause, took = await _longest_pause(lambda: prune_store(rt, settings, datetime.now(UTC)))
        assert rt.store.count("items") == 1
        assert took > 0.05 and pause < took / 2, (pause, took)
    finally:
        await rt.aclose()


async def test_the_last_reload_asked_for_wins_when_reloads_overlap(workdir):
    """SIGHUP, /reload and the file watch read in threads: a big list's read finished last and put the
    deleted list back in force, and the watch then saw nothing left to reload."""
    from bot.scheduler import reload_config

    rt, settings = _runtime(workdir)
    words = [f"wort{chr(97 + i % 26)}{chr(97 + i // 26 % 26)}{i}" for i in range(40000)]
    big = workdir / "watchlists" / "gross.yaml"
    big.write_text("description: d\ngroups:\n  a: [" + ", ".join(words[:20000]) + "]\n  b: [" + ", ".join(words[20000:])
                   + "]\n", encoding="utf-8")
    try:
        first = asyncio.ensure_future(reload_config(rt, settings))
        await asyncio.sleep(0.3)  # the first reload is reading the big list (about 2 s)
        big.unlink()  # the admin deletes it and reloads again
        second = asyncio.ensure_future(reload_config(rt, settings))
        assert await first == [] and await second == []
        assert "gross" not in rt.config.watchlist_names()
    finally:
        await rt.aclose()
