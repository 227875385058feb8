"""End to end: feed server -> `mediabot poll --once` (subprocess) -> Telegram stand-in."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_cli, stop_daemon, write_feeds_yaml
from tests.servers import FeedServer, Route, TelegramStub, rss

CHANNEL = -1001234567890

MATCHING = {"title": "Nordkoreanische Soldaten kämpfen im Gebiet Kursk",
            "description": "Kiew meldet erste Gefechte mit Truppen aus Nordkorea an der Seite Russlands.",
            "link": "https://news.example.org/nk-soldaten-kursk", "guid": "a1", "ago": 10}
UNRELATED = {"title": "Bundesliga: Leverkusen gewinnt Spitzenspiel", "description": "Ein spätes Tor entschied.",
             "link": "https://news.example.org/bundesliga", "guid": "a2", "ago": 20}
NEAR_MISS = {"title": "Nordkorea testet ballistische Rakete", "description": "Die Rakete fiel ins Japanische Meer.",
             "link": "https://news.example.org/raketentest", "guid": "a3", "ago": 30}


def _setup(workdir: Path, feed_server: FeedServer, telegram: TelegramStub) -> dict[str, str]:
    wl = workdir / "watchlists" / "dprk-troops.yaml"
    wl.write_text(wl.read_text(encoding="utf-8") + f"\nchats: [{CHANNEL}]\n", encoding="utf-8")
    write_feeds_yaml(workdir / "watchlists", [{"id": "news", "url": feed_server.url("/news.xml"),
                                               "name": "Example News", "lang": "de"}])
    return {
        "TELEGRAM_BOT_TOKEN": telegram.TOKEN,
        "TELEGRAM_API_BASE_URL": telegram.base_url,
        "MEDIABOT_WATCHLISTS_DIR": str(workdir / "watchlists"),
        "MEDIABOT_STATE_DIR": str(workdir / "state"),
    }


def test_poll_once_alerts_matching_item_once_and_new_item_once_more(workdir, feed_server, telegram):
    """A matching item alerts the channel once; a second poll sends nothing; a new item exactly one more."""
    env = _setup(workdir, feed_server, telegram)
    feed_server.routes["/news.xml"] = Route(rss([MATCHING, UNRELATED, NEAR_MISS]))

    first = run_cli(["poll", "--once"], env)
    assert first.returncode == 0, first.stderr
    sent = telegram.sent_to(CHANNEL)
    assert len(sent) == 1
    assert "Nordkoreanische Soldaten kämpfen im Gebiet Kursk" in sent[0].text
    assert sent[0].parse_mode == "HTML"
    assert 'href="https://news.example.org/nk-soldaten-kursk"' in sent[0].text
    assert len(telegram.messages) == 1  # nothing for the unrelated item or the missile test

    second = run_cli(["poll", "--once"], env)
    assert second.returncode == 0, second.stderr
    assert len(telegram.messages) == 1

    newer = {"title": "Ukraine: Nordkoreanische Truppen erleiden schwere Verluste bei Kursk",
             "description": "Hunderte Soldaten aus Nordkorea sollen im Kampf gegen die Ukraine gefallen sein.",
             "link": "https://news.example.org/nk-verluste", "guid": "a4", "ago": 1}
    feed_server.routes["/news.xml"] = Route(rss([newer, MATCHING, UNRELATED, NEAR_MISS]))
    third = run_cli(["poll", "--once"], env)
    assert third.returncode == 0, third.stderr
    assert len(telegram.messages) == 2
    assert "schwere Verluste" in telegram.messages[1].text
    assert TelegramStub.TOKEN not in first.stderr + second.stderr + third.stderr


def test_poll_once_reports_failed_feed_and_still_exits_zero(workdir, feed_server, telegram):
    env = _setup(workdir, feed_server, telegram)
    write_feeds_yaml(workdir / "watchlists", [
        {"id": "news", "url": feed_server.url("/news.xml"), "name": "Example News", "lang": "de"},
        {"id": "broken", "url": feed_server.url("/missing.xml"), "name": "Broken", "lang": "de"},
    ])
    feed_server.routes["/news.xml"] = Route(rss([MATCHING]))
    result = run_cli(["poll", "--once"], env)
    assert result.returncode == 0
    assert "broken: not found (404)" in result.stderr
    assert len(telegram.sent_to(CHANNEL)) == 1


def test_poll_once_without_token_prints_alerts(workdir, feed_server):
    env = {
        "MEDIABOT_WATCHLISTS_DIR": str(workdir / "watchlists"),
        "MEDIABOT_STATE_DIR": str(workdir / "state"),
    }
    write_feeds_yaml(workdir / "watchlists", [{"id": "news", "url": feed_server.url("/news.xml"),
                                               "name": "Example News", "lang": "de"}])
    feed_server.routes["/news.xml"] = Route(rss([MATCHING, UNRELATED]))
    result = run_cli(["poll", "--once"], env)
    assert result.returncode == 0, result.stderr
    assert "Nordkoreanische Soldaten kämpfen im Gebiet Kursk" in result.stdout
    assert "Bundesliga" not in result.stdout
    assert "— Treffer: " in result.stdout  # the default language
    again = run_cli(["poll", "--once"], {**env, "MEDIABOT_STATE_DIR": str(workdir / "state-en"),
                                         "MEDIABOT_LANGUAGE": "en"})
    assert again.returncode == 0 and "— matched: " in again.stdout and "Treffer" not in again.stdout


def test_first_poll_of_a_new_feed_does_not_flood(workdir, feed_server, telegram):
    """Old matching items on a feed's first poll are recorded, not alerted."""
    env = _setup(workdir, feed_server, telegram)
    old = dict(MATCHING, guid="old", link="https://news.example.org/old", ago=60 * 24 * 3)
    feed_server.routes["/news.xml"] = Route(rss([old]))
    assert run_cli(["poll", "--once"], env).returncode == 0
    assert telegram.messages == []


def test_burst_of_new_items_is_capped_and_admins_are_told(workdir, feed_server, telegram):
    env = _setup(workdir, feed_server, telegram)
    env["MEDIABOT_BURST_CAP"] = "3"
    env["MEDIABOT_ADMINS"] = "777"
    feed_server.routes["/news.xml"] = Route(rss([UNRELATED]))
    assert run_cli(["poll", "--once"], env).returncode == 0
    burst = [dict(MATCHING, guid=f"b{i}", link=f"https://news.example.org/b{i}",
                  title=f"Nordkoreanische Soldaten bei Kursk, Meldung {i}", ago=i) for i in range(12)]
    feed_server.routes["/news.xml"] = Route(rss(burst))
    assert run_cli(["poll", "--once"], env).returncode == 0
    assert len(telegram.sent_to(CHANNEL)) == 3
    notices = telegram.sent_to(777)
    assert len(notices) == 1 and "news" in notices[0].text


def _distinct_story(i: int, ago: float) -> dict[str, object]:
    """A matching story of its own (the dedup index keeps them apart: its own place and figure)."""
    places = ["Sudscha", "Gluschkowo", "Korenewo", "Lgow", "Rylsk", "Tjotkino"]
    return {"title": f"Nordkoreanische Soldaten greifen bei {places[i]} an", "guid": f"m{i}", "ago": ago,
            "description": f"Gefechte um {places[i]} im Gebiet Kursk, {100 + i} Verletzte, meldet Kiew.",
            "link": f"https://news.example.org/m{i}"}


def test_the_burst_cap_goes_to_matching_items(workdir, feed_server, telegram):
    """The cap let the newest items through whatever they were: unrelated ones used it up, and the matching
    ones below them did not alert."""
    env = _setup(workdir, feed_server, telegram)
    env.update({"MEDIABOT_BURST_CAP": "3", "MEDIABOT_ADMINS": "777"})
    feed_server.routes["/news.xml"] = Route(rss([UNRELATED]))
    assert run_cli(["poll", "--once"], env).returncode == 0
    unrelated = [dict(UNRELATED, guid=f"u{i}", link=f"https://news.example.org/u{i}", ago=i) for i in range(8)]
    feed_server.routes["/news.xml"] = Route(rss(unrelated + [_distinct_story(i, 10 + i) for i in range(4)]))
    assert run_cli(["poll", "--once"], env).returncode == 0
    assert len(telegram.sent_to(CHANNEL)) == 3
    assert "1 matching items did not alert" in telegram.sent_to(777)[0].text


def test_a_busy_feed_after_hours_of_downtime_is_no_burst(workdir, feed_server, telegram):
    """After a restart, an upgrade or a full disk, a feed that published all along lists many new items: the
    cap took them for a migration, and 3 matching items among 25 did not alert (the admins were told the
    feed "suddenly" delivered them)."""
    from datetime import UTC, datetime, timedelta

    from bot.store import SqliteStore

    env = _setup(workdir, feed_server, telegram)
    env["MEDIABOT_ADMINS"] = "777"
    feed_server.routes["/news.xml"] = Route(rss([UNRELATED]))
    assert run_cli(["poll", "--once"], env).returncode == 0
    store = SqliteStore(workdir / "state" / "mediabot.db")  # three hours pass with the bot down
    try:
        state = store.feed_state("news", feed_server.url("/news.xml"))
        state.last_success = datetime.now(UTC) - timedelta(hours=3)
        store.save_feed_state(state)
    finally:
        store.close()
    unrelated = [dict(UNRELATED, guid=f"u{i}", link=f"https://news.example.org/u{i}", ago=5 + 8 * i) for i in range(22)]
    stories = [_distinct_story(i, 150 + 5 * i) for i in range(3)]
    feed_server.routes["/news.xml"] = Route(rss(unrelated + stories))
    assert run_cli(["poll", "--once"], env).returncode == 0
    assert len(telegram.sent_to(CHANNEL)) == 3 and telegram.sent_to(777) == []


def test_second_instance_on_same_state_dir_refuses(workdir, feed_server):
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT

    env = {"MEDIABOT_WATCHLISTS_DIR": str(workdir / "watchlists"), "MEDIABOT_STATE_DIR": str(workdir / "state")}
    write_feeds_yaml(workdir / "watchlists", [{"id": "news", "url": feed_server.url("/news.xml"),
                                               "name": "Example News", "lang": "de"}])
    feed_server.routes["/news.xml"] = Route(rss([UNRELATED]))
    import os

    daemon = subprocess.Popen([sys.executable, "-m", "bot", "run"], cwd=ROOT,
                              env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 15
        while feed_server.hits("/news.xml") == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert feed_server.hits("/news.xml") >= 1
        second = run_cli(["poll", "--once"], env)
        assert second.returncode == 3
        assert "another mediabot" in second.stderr
    finally:
        err = stop_daemon(daemon, timeout=10)
    assert daemon.returncode == 0, err
