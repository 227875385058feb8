"""Every command through the real python-telegram-bot Application (long polling) against TelegramStub,
with a real SQLite store: what a subscriber types, what they get back, what the store then holds."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.app import Runtime, build_runtime
from bot.commands import make_application, start_application, stop_application
from bot.config import Settings, load_config
from bot.match import Matcher
from bot.pipeline import run_cycle
from tests.conftest import stop_daemon, write_feeds_yaml
from tests.servers import FeedServer, Route, TelegramStub, rss

ADMIN = 900
USER = 1001
GROUP = -100777


@dataclass
class Bot:
    rt: Runtime
    app: Any
    stub: TelegramStub

    async def say(self, text: str, *, chat_id: int = USER, wait: bool = True, **kw: Any) -> str:
        """Send a message as a user and return the bot's reply."""
        before = len(self.stub.sent_to(chat_id))
        self.stub.user_message(text, chat_id=chat_id, **kw)
        if not wait:
            return ""
        assert await until(lambda: len(self.stub.sent_to(chat_id)) > before), f"no reply to {text!r}"
        return self.stub.sent_to(chat_id)[-1].text

    async def press(self, data: str, *, chat_id: int = USER, **kw: Any) -> str:
        before = len(self.stub.callback_answers)
        self.stub.button_press(data, chat_id=chat_id, **kw)
        assert await until(lambda: len(self.stub.callback_answers) > before), f"no answer to {data!r}"
        return self.stub.callback_answers[-1]


async def until(predicate: Callable[[], bool], timeout: float = 4.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return predicate()


@pytest.fixture
async def start_bot(workdir: Path, telegram: TelegramStub, feed_server: FeedServer) -> AsyncIterator[Any]:
    write_feeds_yaml(workdir / "watchlists", [{"id": "news", "url": feed_server.url("/news.xml"),
                                               "name": "Example News", "lang": "de"}])
    feed_server.routes["/news.xml"] = Route(rss([]))
    started: list[Bot] = []

    async def start(**overrides: Any) -> Bot:
        settings = Settings(token=TelegramStub.TOKEN, api_base_url=telegram.base_url,
                            watchlists_dir=workdir / "watchlists", state_dir=workdir / "state",
                            admins=frozenset({ADMIN}))
        settings = replace(settings, **overrides)
        rt = build_runtime(settings, load_config(settings.watchlists_dir))
        app = make_application(rt)
        assert await start_application(app, asyncio.Event())
        started.append(Bot(rt, app, telegram))
        return started[-1]

    yield start
    for b in started:
        await stop_application(b.app)
        await b.rt.aclose()


async def test_start_offers_subscribe_buttons_in_german_by_default(start_bot):
    bot = await start_bot()
    reply = await bot.say("/start")
    assert "Willkommen" in reply
    markup = bot.stub.sent_to(USER)[-1].reply_markup
    data = [row[0]["callback_data"] for row in markup["inline_keyboard"]]
    assert data == ["sub:dprk-troops", "sub:kursk-front", "sub:russia-dprk-treaty"]
    assert bot.rt.store.chat(USER)["language"] == "de"


async def test_start_speaks_english_to_english_users(start_bot):
    bot = await start_bot()
    assert "Welcome" in await bot.say("/start", lang="en-GB")
    assert bot.rt.store.chat(USER)["language"] == "en"


async def test_command_menu_is_set_in_german_and_english(start_bot):
    bot = await start_bot()
    assert {"de", "en", ""} <= set(bot.stub.commands)
    assert any(c["command"] == "subscribe" for c in bot.stub.commands["en"])


async def test_subscribe_button_then_list_shows_subscription(start_bot):
    bot = await start_bot()
    await bot.say("/start")
    answer = await bot.press("sub:kursk-front")
    assert "Kursk" in answer
    assert bot.rt.store.subscriptions(USER) == {"kursk-front"}
    listing = await bot.say("/list")
    assert "✅ <b>Kursk" in listing and "▫️" in listing


async def test_a_paused_watchlist_is_not_offered_and_says_so_where_it_shows(start_bot, workdir):
    """`enabled: false` stops a list from alerting: /start no longer offers it, /list and /subscribe say
    it is paused (a journalist would otherwise subscribe and wait for alerts that never come), and its
    subscribers can still leave it."""
    path = workdir / "watchlists" / "kursk-front.yaml"
    path.write_text("enabled: false\n" + path.read_text(encoding="utf-8"), encoding="utf-8")
    bot = await start_bot()
    await bot.say("/start")
    data = [row[0]["callback_data"] for row in bot.stub.sent_to(USER)[-1].reply_markup["inline_keyboard"]]
    assert data == ["sub:dprk-troops", "sub:russia-dprk-treaty"]
    reply = await bot.say("/subscribe kursk-front", lang="en")
    assert reply.startswith("Subscribed") and "paused by the admins" in reply
    assert "paused by the admins" not in await bot.say("/subscribe dprk-troops", lang="en")
    listing = (await bot.say("/list", lang="en")).splitlines()
    assert [line for line in listing if "paused" in line] == [line for line in listing if "kursk-front" in line]
    await bot.say("/start")
    data = [row[0]["callback_data"] for row in bot.stub.sent_to(USER)[-1].reply_markup["inline_keyboard"]]
    assert data == ["unsub:dprk-troops", "unsub:kursk-front", "sub:russia-dprk-treaty"]


async def test_a_command_the_store_cannot_save_tells_the_user_to_try_again_in_one_line(start_bot, caplog):
    """The store cannot write (a full disk, another process holding its lock) while a journalist subscribes:
    the user hears it did not work and to try again, the log has one line (no traceback: not a bug)."""
    bot = await start_bot()
    bot.rt.store._db.execute("PRAGMA query_only=ON")
    try:
        reply = await bot.say("/subscribe kursk-front", lang="en")
        answer = await bot.press("sub:dprk-troops", lang="en")
    finally:
        bot.rt.store._db.execute("PRAGMA query_only=OFF")
    assert "could not save it" in reply and "could not save it" in answer
    failed = [r for r in caplog.records if r.getMessage().startswith("command not done, the state store failed")]
    assert len(failed) == 2 and not any(r.exc_info for r in failed)
    assert bot.rt.store.subscriptions(USER) == set()
    assert "Subscribed" in await bot.say("/subscribe kursk-front", lang="en")  # and it works again


async def test_a_command_that_crashes_tells_the_user_and_logs_the_traceback(start_bot, caplog, monkeypatch):
    """A handler that crashed (a bug) left the user without any answer and the log without a traceback."""
    bot = await start_bot()

    def broken(*_args: object, **_kw: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(bot.rt.store, "subscribe", broken)
    reply = await bot.say("/subscribe kursk-front", lang="en")
    assert "a fault in the bot" in reply
    failed = [r for r in caplog.records if r.getMessage().startswith("command failed")]
    assert len(failed) == 1 and failed[0].exc_info


async def test_subscribe_and_unsubscribe_commands(start_bot):
    bot = await start_bot()
    assert "Abonniert" in await bot.say("/subscribe dprk-troops")
    assert "schon" in await bot.say("/subscribe dprk-troops")
    await bot.say("/subscribe kursk-front")
    assert bot.rt.store.subscriptions(USER) == {"dprk-troops", "kursk-front"}
    assert "Abbestellt" in await bot.say("/unsubscribe dprk-troops")
    assert "(1)" in await bot.say("/unsubscribe all")
    assert bot.rt.store.subscriptions(USER) == set()


async def test_unknown_watchlist_gets_the_valid_ids(start_bot):
    bot = await start_bot()
    reply = await bot.say("/subscribe nordkorea", lang="en")
    assert "Unknown watchlist" in reply and "dprk-troops" in reply and "kursk-front" in reply
    assert bot.rt.store.subscriptions(USER) == set()
    assert "dprk-troops" in await bot.say("/subscribe")


async def test_help_lists_commands_and_admin_extras_only_for_admins(start_bot):
    bot = await start_bot()
    text = await bot.say("/help")
    assert "/subscribe" in text and "/quiet" in text and "/feeds" not in text
    assert "/feeds" in await bot.say("/help", chat_id=ADMIN)


async def test_mute_and_unmute_summarises_held_alerts(start_bot):
    bot = await start_bot()
    await bot.say("/subscribe dprk-troops")
    reply = await bot.say("/mute 2h")
    assert "Stumm bis" in reply
    muted = datetime.fromisoformat(bot.rt.store.chat(USER)["muted_until"])
    assert timedelta(hours=1, minutes=59) < muted - datetime.now(UTC) <= timedelta(hours=2)
    assert "Dauer" in await bot.say("/mute bald")
    _queue_alerts(bot.rt, USER, 3)
    await bot.rt.deliverer.drain(timeout=5)
    assert len(bot.rt.store.outbox_rows("held", USER)) == 3
    before = len(bot.stub.sent_to(USER))
    assert "3" in await bot.say("/unmute")
    await bot.rt.deliverer.drain(timeout=5)
    digests = bot.stub.sent_to(USER)[before + 1:]
    assert len(digests) == 1 and "3 Meldungen" in digests[0].text
    assert "Alert 0" in digests[0].text and "Alert 2" in digests[0].text


async def test_alert_mute_button_holds_that_watchlist_only(start_bot):
    bot = await start_bot()
    await bot.say("/subscribe dprk-troops")
    await bot.say("/subscribe kursk-front")
    assert "24" in await bot.press("mute:dprk-troops")
    _queue_alerts(bot.rt, USER, 1, watchlist="dprk-troops")
    _queue_alerts(bot.rt, USER, 1, watchlist="kursk-front", start=10)
    await bot.rt.deliverer.drain(timeout=5)
    assert [r.watchlist for r in bot.rt.store.outbox_rows("held", USER)] == ["dprk-troops"]
    assert any("Alert 10" in t for t in bot.stub.texts(USER))


TWO_LISTS = ("Nordkoreanische Soldaten kämpfen im Gebiet Kursk",
             "Nordkoreas Truppen greifen an der Front bei Kursk an; schwere Kämpfe dauern an.")


async def _on_both_lists(start_bot: Callable[..., Any]) -> tuple[Any, Any, list[Any]]:
    """A bot whose chat follows dprk-troops and kursk-front; the config, and the matches of TWO_LISTS (a story
    on both), best first."""
    from tests.conftest import ROOT

    bot = await start_bot()
    await bot.say("/subscribe dprk-troops")
    await bot.say("/subscribe kursk-front")
    config = load_config(ROOT / "watchlists")
    return bot, config, Matcher(config.watchlists).match(*TWO_LISTS)[:2]


async def test_an_alert_that_comes_through_another_list_after_a_mute_names_that_list(start_bot, feed_server):
    """A story on both lists arrived after its best list was muted (rightly: it also came through the other)
    but named the muted list, so the mute looked broken (hunt11b). It names the other list with that list's
    words; and an alert named before a mute keeps its name when an "also" edit comes (hunt12a)."""
    bot, config, (best, other) = await _on_both_lists(start_bot)
    names = config.watchlist_names()
    assert "24" in await bot.press(f"mute:{best.watchlist}")
    feed_server.routes["/news.xml"] = Route(rss([{"title": TWO_LISTS[0], "description": TWO_LISTS[1],
                                                  "link": "https://n.example/nk", "guid": "nk", "ago": 3}]))
    await run_cycle(bot.rt.ctx, ignore_schedule=True)
    await bot.rt.deliverer.drain(timeout=5)
    alert = next(m for m in bot.stub.sent_to(USER) if "Nordkoreanische Soldaten kämpfen" in m.text)
    assert f"🔎 {names[other.watchlist]} — Treffer: {', '.join(other.words)}" in alert.text, alert.text
    assert names[best.watchlist] not in alert.text
    assert {"text": "Watchlist 24 h stumm", "callback_data": f"mute:{other.watchlist}"} in alert.buttons()
    # a second story, alerted before any mute of its list, then muted, then edited with "also": same name
    await bot.say(f"/unmute {best.watchlist}")
    story = {"title": "Ukraine: Drohnenangriff trifft nordkoreanische Artillerie bei Sudscha",
             "description": "Kiews Armee meldet zerstörte Geschütze aus Nordkorea im Gebiet Kursk; die Gefechte dort "
                            "dauern an.", "link": "https://n.example/nk2", "guid": "nk2", "ago": 2}
    assert len(Matcher(config.watchlists).match(story["title"], story["description"])) >= 2
    feed_server.routes["/news.xml"] = Route(rss([story]))
    await run_cycle(bot.rt.ctx, ignore_schedule=True)
    await bot.rt.deliverer.drain(timeout=5)
    second = next(m for m in bot.stub.sent_to(USER) if "Artillerie bei Sudscha" in m.text)
    assert f"🔎 {names[best.watchlist]}" in second.text
    assert "24" in await bot.press(f"mute:{best.watchlist}")
    feed_server.routes["/news.xml"] = Route(rss([story, dict(story, title="Ukraine-Krieg: " + story["title"],
                                                             link="https://n.example/nk3", guid="nk3")]))
    await run_cycle(bot.rt.ctx, ignore_schedule=True)
    await bot.rt.deliverer.drain(timeout=5)
    edits = [m for m in bot.stub.messages if m.method == "editMessageText" and "Artillerie bei Sudscha" in m.text]
    assert edits and f"🔎 {names[best.watchlist]}" in edits[-1].text
    assert {"text": "Watchlist 24 h stumm", "callback_data": f"mute:{best.watchlist}"} in edits[-1].buttons()


async def test_an_alert_waiting_when_its_list_is_muted_comes_named_after_the_other_list(start_bot, feed_server):
    """The list an alert names is chosen when it is queued; one still waiting (here a chat mute) when the
    journalist muted that list came named after it, with a button to mute it again (hunt12b)."""
    bot, config, (best, other) = await _on_both_lists(start_bot)
    names = config.watchlist_names()
    await bot.say("/mute 2h")
    feed_server.routes["/news.xml"] = Route(rss([{"title": TWO_LISTS[0], "description": TWO_LISTS[1],
                                                  "link": "https://n.example/nk", "guid": "nk", "ago": 3}]))
    await run_cycle(bot.rt.ctx, ignore_schedule=True)
    await bot.rt.deliverer.drain(timeout=5)
    assert "24" in await bot.press(f"mute:{best.watchlist}")
    bot.rt.store.update_chat(USER, muted_until=datetime.now(UTC) - timedelta(seconds=1))  # the chat mute ends
    bot.rt.deliverer.router.release(datetime.now(UTC))
    await bot.rt.deliverer.drain(timeout=5)
    alert = next(m for m in bot.stub.sent_to(USER) if "Nordkoreanische Soldaten kämpfen" in m.text)
    assert f"🔎 {names[other.watchlist]} — Treffer: {', '.join(other.words)}" in alert.text, alert.text
    assert {"text": "Watchlist 24 h stumm", "callback_data": f"mute:{other.watchlist}"} in alert.buttons()


async def test_recent_lists_newest_matches_first(start_bot, feed_server):
    bot = await start_bot()
    assert "Noch keine" in await bot.say("/recent kursk-front")
    feed_server.routes["/news.xml"] = Route(rss([
        {"title": "Kämpfe im Gebiet Kursk dauern an, Krieg", "link": "https://n.example/1", "guid": "1", "ago": 30},
        {"title": "Neue Offensive bei Kursk im Krieg", "link": "https://n.example/2", "guid": "2", "ago": 5},
    ]))
    await run_cycle(bot.rt.ctx, ignore_schedule=True)
    reply = await bot.say("/recent kursk-front")
    assert reply.index("Neue Offensive") < reply.index("Kämpfe im Gebiet")
    assert "Unbekannte" in await bot.say("/recent nope")


async def test_recent_lists_an_item_whose_link_telegram_would_refuse(start_bot, feed_server):
    """A link with '<' or a space made Telegram refuse the whole /recent reply ("ein Fehler im Bot") for as
    long as the item was among the list's last ten; alerts encoded it already."""
    bot = await start_bot()
    feed_server.routes["/news.xml"] = Route(rss([
        {"title": "Kämpfe im Gebiet Kursk dauern an, Krieg", "link": "https://n.example/a?x=1&y=<2>", "guid": "1",
         "ago": 30},
        {"title": "Neue Offensive bei Kursk im Krieg", "link": "https://n.example/b c", "guid": "2", "ago": 5},
    ]))
    await run_cycle(bot.rt.ctx, ignore_schedule=True)
    reply = await bot.say("/recent kursk-front")
    assert "Neue Offensive" in reply and "Kämpfe im Gebiet" in reply, reply
    sent = bot.stub.texts(USER)[-1]
    assert 'href="https://n.example/a?x=1&amp;y=%3C2%3E"' in sent and 'href="https://n.example/b%20c"' in sent


async def test_quiet_hours_are_stored_and_validated(start_bot):
    bot = await start_bot()
    assert "22:00-07:00" in await bot.say("/quiet 22:00-07:00")
    assert bot.rt.store.chat(USER)["quiet"] == "22:00-07:00"
    assert "/quiet 22:00-07:00" in await bot.say("/quiet 25:00-07:00")
    assert "Keine Ruhezeiten" in await bot.say("/quiet off")
    assert bot.rt.store.chat(USER)["quiet"] is None


async def test_quiet_hours_moved_off_now_release_what_they_held(start_bot):
    """Held by quiet hours around the current time; a new window that has ended lets the alerts go at once."""
    bot = await start_bot(timezone="UTC")
    now = datetime.now(UTC)
    await bot.say("/subscribe dprk-troops")
    around = f"{(now - timedelta(hours=1)):%H:00}-{(now + timedelta(hours=2)):%H:00}"
    await bot.say(f"/quiet {around}")
    _queue_alerts(bot.rt, USER, 2)
    await bot.rt.deliverer.drain(timeout=5)
    assert len(bot.rt.store.outbox_rows("held", USER)) == 2
    before = len(bot.stub.sent_to(USER))
    ended = f"{(now - timedelta(hours=4)):%H:00}-{(now - timedelta(hours=2)):%H:00}"
    await bot.say(f"/quiet {ended}")
    await bot.rt.deliverer.drain(timeout=5)
    assert bot.rt.store.outbox_rows("held", USER) == []
    assert any("2 Meldungen" in m.text for m in bot.stub.sent_to(USER)[before + 1:])


async def test_digest_setting(start_bot):
    bot = await start_bot()
    assert "daily 18:30" in await bot.say("/digest daily 18:30")
    assert bot.rt.store.chat(USER)["digest"] == "daily 18:30"
    assert "hourly" in await bot.say("/digest hourly")
    assert "/digest off" in await bot.say("/digest weekly")
    assert "off" in await bot.say("/digest off")
    assert bot.rt.store.chat(USER)["digest"] == "off"


async def test_group_commands_with_bot_name_and_only_group_admins_change(start_bot):
    bot = await start_bot()
    bot.stub.chat_admins[GROUP] = {55}
    reply = await bot.say("/subscribe@mediabot_test_bot dprk-troops", chat_id=GROUP, user_id=66,
                          chat_type="supergroup")
    assert "nur deren Admins" in reply
    assert bot.rt.store.subscriptions(GROUP) == set()
    reply = await bot.say("/subscribe@mediabot_test_bot dprk-troops", chat_id=GROUP, user_id=55,
                          chat_type="supergroup")
    assert "Abonniert" in reply
    assert bot.rt.store.subscriptions(GROUP) == {"dprk-troops"}
    # reading is fine for every member
    assert "✅" in await bot.say("/list@mediabot_test_bot", chat_id=GROUP, user_id=66, chat_type="supergroup")
    # a command addressed to another bot is not ours
    await bot.say("/list@some_other_bot", chat_id=GROUP, user_id=66, chat_type="supergroup", wait=False)
    await bot.say("/help", chat_id=USER)
    assert len(bot.stub.sent_to(GROUP)) == 3


async def test_restricted_mode_refuses_strangers_until_an_admin_allows_them(start_bot):
    bot = await start_bot(allowed=frozenset({ADMIN, 1234}))
    refusal = await bot.say("/start")
    assert "freigeschaltet" in refusal and str(USER) in refusal
    assert "Willkommen" in await bot.say("/start", chat_id=1234)
    assert "Freigeschaltet" in await bot.say(f"/allow {USER}", chat_id=ADMIN)
    assert "Willkommen" in await bot.say("/start")
    assert "nur die Admins" in await bot.say(f"/allow {USER + 1}")


async def test_disallow_takes_back_an_allow_and_drops_the_alerts_waiting_for_the_chat(start_bot, feed_server):
    bot = await start_bot(allowed=frozenset({ADMIN, 1234}))
    await bot.say(f"/allow {USER}", chat_id=ADMIN)
    await bot.say("/subscribe dprk-troops")
    await bot.say("/mute 1h")
    _queue_alerts(bot.rt, USER, 2)
    await bot.rt.deliverer.drain(timeout=5)
    assert len(bot.rt.store.outbox_rows("held", USER)) == 2
    answer = await bot.say(f"/disallow {USER}", chat_id=ADMIN)
    assert "Gesperrt" in answer and "2 wartende" in answer
    assert "freigeschaltet" in await bot.say("/start")  # refused again
    before = len(bot.stub.sent_to(USER))
    feed_server.routes["/news.xml"] = Route(rss([{"title": "Nordkoreanische Soldaten kämpfen im Gebiet Kursk",
                                                  "link": "https://n.example/a", "guid": "a", "ago": 5}]))
    await run_cycle(bot.rt.ctx, ignore_schedule=True)
    await bot.rt.deliverer.drain(timeout=5)
    assert bot.rt.store.outbox_rows("held", USER) == []
    assert len(bot.stub.sent_to(USER)) == before  # neither the held alerts nor the new one
    # let in again: the subscription is still there
    await bot.say(f"/allow {USER}", chat_id=ADMIN)
    assert "dprk-troops" in bot.rt.store.subscriptions(USER)
    assert "nicht mit /allow" in await bot.say("/disallow 4242", chat_id=ADMIN)
    assert "MEDIABOT_ALLOWED_USERS" in await bot.say("/disallow 1234", chat_id=ADMIN)
    assert "nur die Admins" in await bot.say(f"/disallow {USER}")


async def test_disallow_locks_a_group_out_that_a_let_in_user_subscribed(start_bot, feed_server):
    """A group's alerts do not hang on /allow (a let-in user subscribes it): /disallow of the group stops them,
    and the let-in user can no longer change its subscriptions, until an admin allows it again."""
    member = 1234
    bot = await start_bot(allowed=frozenset({ADMIN, member}))
    bot.stub.chat_admins[GROUP] = {member}
    assert "Abonniert" in await bot.say("/subscribe dprk-troops", chat_id=GROUP, user_id=member,
                                        chat_type="supergroup")
    feed = [{"title": "Nordkoreanische Soldaten kämpfen im Gebiet Kursk", "link": "https://n.example/a",
             "guid": "a", "ago": 5}]
    feed_server.routes["/news.xml"] = Route(rss(feed))
    await run_cycle(bot.rt.ctx, ignore_schedule=True)
    await bot.rt.deliverer.drain(timeout=5)
    assert any("Soldaten" in m.text for m in bot.stub.sent_to(GROUP))
    assert "Gesperrt" in await bot.say(f"/disallow {GROUP}", chat_id=ADMIN)
    assert "freigeschaltet" in await bot.say("/list", chat_id=GROUP, user_id=member, chat_type="supergroup")
    feed.append({"title": "Gefangene nordkoreanische Soldaten in Kiew befragt", "link": "https://n.example/b",
                 "guid": "b", "ago": 3})
    feed_server.routes["/news.xml"] = Route(rss(feed))
    await run_cycle(bot.rt.ctx, ignore_schedule=True)
    await bot.rt.deliverer.drain(timeout=5)
    assert not any("Gefangene" in m.text for m in bot.stub.sent_to(GROUP))
    assert "schon gesperrt" in await bot.say(f"/disallow {GROUP}", chat_id=ADMIN)
    await bot.say(f"/allow {GROUP}", chat_id=ADMIN)
    assert "✅" in await bot.say("/list", chat_id=GROUP, user_id=member, chat_type="supergroup")
    # a chat the YAML sends alerts to is changed there
    config = bot.rt.config
    first = replace(config.watchlists[0], chats=(GROUP,))
    bot.rt.swap_config(replace(config, watchlists=(first, *config.watchlists[1:])), bot.rt.matcher)
    assert f"chats: in {first.id}" in await bot.say(f"/disallow {GROUP}", chat_id=ADMIN)


async def test_disallow_in_an_open_bot_says_it_locks_nobody_out(start_bot):
    bot = await start_bot()
    assert "offen für alle" in await bot.say(f"/disallow {USER}", chat_id=ADMIN)


async def test_a_group_that_adds_the_bot_back_gets_its_alerts_again(start_bot, feed_server):
    """The bot was removed from a group (its next alert failed, the chat was stopped) and added back: the
    group kept its subscriptions but stayed silent until someone typed a command there."""
    bot = await start_bot()
    bot.stub.chat_admins[GROUP] = {55}
    await bot.say("/subscribe dprk-troops", chat_id=GROUP, user_id=55, chat_type="supergroup")
    bot.stub.forbidden.add(GROUP)  # removed: Telegram answers 403
    feed = [{"title": "Nordkoreanische Soldaten kämpfen im Gebiet Kursk", "link": "https://n.example/a",
             "guid": "a", "ago": 5}]
    feed_server.routes["/news.xml"] = Route(rss(feed))
    await run_cycle(bot.rt.ctx, ignore_schedule=True)
    await bot.rt.deliverer.drain(timeout=5)
    assert bot.rt.store.chat(GROUP)["active"] == 0
    bot.stub.forbidden.discard(GROUP)
    bot.stub.bot_membership(GROUP, "left", "member")
    assert await until(lambda: bot.rt.store.chat(GROUP)["active"] == 1)
    feed.append({"title": "Gefangene nordkoreanische Soldaten in Kiew befragt", "link": "https://n.example/b",
                 "guid": "b", "ago": 3})
    feed_server.routes["/news.xml"] = Route(rss(feed))
    await run_cycle(bot.rt.ctx, ignore_schedule=True)
    await bot.rt.deliverer.drain(timeout=5)
    assert any("Gefangene" in m.text for m in bot.stub.sent_to(GROUP))


async def test_a_channel_that_takes_away_the_right_to_post_is_stopped_until_it_gives_it_back(start_bot):
    bot = await start_bot()
    channel = -1001555
    bot.stub.bot_membership(channel, "left", "administrator", chat_type="channel", rights={"can_post_messages": True})
    assert await until(lambda: (bot.rt.store.chat(channel) or {}).get("active") == 1)
    bot.stub.bot_membership(channel, "administrator", "administrator", chat_type="channel",
                            rights={"can_post_messages": False})
    assert await until(lambda: bot.rt.store.chat(channel)["active"] == 0)
    bot.stub.bot_membership(channel, "administrator", "administrator", chat_type="channel",
                            rights={"can_post_messages": True})
    assert await until(lambda: bot.rt.store.chat(channel)["active"] == 1)
    bot.stub.bot_membership(channel, "administrator", "left", chat_type="channel")
    assert await until(lambda: bot.rt.store.chat(channel)["active"] == 0)


async def test_a_button_pressed_while_the_bot_was_down_still_works_and_says_so(start_bot, caplog):
    """Telegram takes a button's answer only within seconds; a press made during a restart reaches the bot
    later. It logged a fault with a traceback, answered "did not work" and left the keyboard stale."""
    bot = await start_bot()
    bot.stub.stale_callbacks = True
    before = len(bot.stub.sent_to(USER))
    with caplog.at_level(logging.INFO):
        bot.stub.button_press("sub:dprk-troops", chat_id=USER)
        assert await until(lambda: len(bot.stub.sent_to(USER)) > before)
    assert bot.rt.store.subscriptions(USER) == {"dprk-troops"}
    assert "Abonniert" in bot.stub.sent_to(USER)[-1].text  # the outcome, as a message
    assert await until(lambda: any(m == "editMessageReplyMarkup" for m, _p, _t in bot.stub.calls))
    assert "button answered too late" in caplog.text and "command failed" not in caplog.text


async def test_a_forum_group_gets_its_alerts_in_the_topic_where_it_subscribed(start_bot, feed_server):
    """Alerts went to a forum's General topic whatever topic the desk subscribed in (and a closed General
    lost them); the reply to /subscribe came in the topic, the alerts did not."""
    bot = await start_bot()
    bot.stub.chat_admins[GROUP] = {55}
    await bot.say("/subscribe dprk-troops", chat_id=GROUP, user_id=55, chat_type="supergroup", topic=77)
    feed = [{"title": "Nordkoreanische Soldaten kämpfen im Gebiet Kursk", "link": "https://n.example/a",
             "guid": "a", "ago": 5}]
    feed_server.routes["/news.xml"] = Route(rss(feed))
    await run_cycle(bot.rt.ctx, ignore_schedule=True)
    await bot.rt.deliverer.drain(timeout=5)
    [alert] = [m for m in bot.stub.sent_to(GROUP) if "Soldaten" in m.text]
    assert alert.thread == 77
    bot.stub.deleted_topics.add(77)  # the topic deleted: the General topic, rather than nowhere
    feed.append({"title": "Gefangene nordkoreanische Soldaten in Kiew befragt", "link": "https://n.example/b",
                 "guid": "b", "ago": 3})
    feed_server.routes["/news.xml"] = Route(rss(feed))
    await run_cycle(bot.rt.ctx, ignore_schedule=True)
    await bot.rt.deliverer.drain(timeout=5)
    [second] = [m for m in bot.stub.sent_to(GROUP) if "Gefangene" in m.text]
    assert second.thread is None
    await bot.say("/subscribe kursk-front", chat_id=GROUP, user_id=55, chat_type="supergroup", topic=0)
    assert bot.rt.store.chat(GROUP)["thread"] is None  # subscribed in General: alerts go there


async def test_allow_keeps_what_the_bot_knows_about_a_chat(start_bot):
    """/allow on a supergroup the bot already serves only lets it in: title, type and language stay."""
    bot = await start_bot(allowed=frozenset({ADMIN}))
    bot.rt.store.ensure_chat(GROUP, "supergroup", "Newsdesk Ost", "en")
    assert "Freigeschaltet" in await bot.say(f"/allow {GROUP}", chat_id=ADMIN)
    chat = bot.rt.store.chat(GROUP)
    assert (chat["type"], chat["title"], chat["language"], chat["allowed"]) == ("supergroup", "Newsdesk Ost", "en", 1)
    # a chat the bot has never seen gets a row, so it is let in when it first writes
    assert "Freigeschaltet" in await bot.say("/allow 4242", chat_id=ADMIN)
    assert bot.rt.store.is_allowed(4242)


async def test_admin_commands_refused_for_others(start_bot):
    bot = await start_bot()
    assert "nur die Admins" in await bot.say("/feeds")
    assert "only this bot's admins" in await bot.say("/reload", lang="en")


async def test_feeds_shows_feed_health(start_bot, feed_server):
    bot = await start_bot()
    assert "🕓 <b>news</b> · not polled yet" in await bot.say("/feeds", chat_id=ADMIN)
    await run_cycle(bot.rt.ctx, ignore_schedule=True)
    reply = await bot.say("/feeds", chat_id=ADMIN)
    assert "✅ <b>news</b>" in reply and "next" in reply


async def test_feeds_shows_what_feeds_yaml_says_not_every_feed_ever_polled(start_bot, feed_server):
    """A feed removed from feeds.yaml stayed in /feeds as ✅ or ❌ for weeks, and a paused one looked
    as if it was polled."""
    from bot.models import FeedSpec

    bot = await start_bot()
    await run_cycle(bot.rt.ctx, ignore_schedule=True)
    state = bot.rt.store.feed_state("oldblog", "https://old.example/rss")
    state.last_error, state.failures = "not found (404)", 3
    bot.rt.store.save_feed_state(state)
    config = bot.rt.config
    paused = replace(config.feeds[0], enabled=False)
    fresh = FeedSpec(id="zeit", url="https://zeit.example/rss", name="Zeit", lang="de")
    bot.rt.swap_config(replace(config, feeds=(paused, fresh)))
    reply = await bot.say("/feeds", chat_id=ADMIN)
    assert "⏸ <b>news</b> · paused" in reply and "🕓 <b>zeit</b> · not polled yet" in reply
    assert "❌" not in reply and "Not in feeds.yaml any more (kept for their items): oldblog" in reply


async def test_feeds_lists_every_feed_in_messages_telegram_accepts(start_bot):
    """Many failing feeds with long errors: the list is split between lines into several messages,
    each under Telegram's limit with its tags intact, and no feed is left out."""
    from bot.models import FeedSpec

    bot = await start_bot()
    now = datetime.now(UTC)
    feeds = []
    for n in range(60):
        feeds.append(FeedSpec(id=f"outlet-{n:02d}", url=f"https://outlet{n}.example/rss", name=f"O{n}", lang="de"))
        state = bot.rt.store.feed_state(f"outlet-{n:02d}", f"https://outlet{n}.example/rss")
        state.last_error, state.failures, state.last_attempt = "HTTP 503 <Service Unavailable> " * 8, 3, now
        bot.rt.store.save_feed_state(state)
    bot.rt.swap_config(replace(bot.rt.config, feeds=tuple(feeds)))
    before = len(bot.stub.sent_to(ADMIN))
    await bot.say("/feeds", chat_id=ADMIN)
    assert await until(lambda: sum(m.text.count("<b>outlet-") for m in bot.stub.sent_to(ADMIN)[before:]) == 60)
    replies = [m.text for m in bot.stub.sent_to(ADMIN)[before:]]
    assert len(replies) > 1
    for text in replies:
        assert len(text) <= 4096
        assert text.count("<b>") == text.count("</b>")
        assert "&lt;Service Unavailable&gt;" in text and "<Service" not in text


async def test_reload_reports_errors_and_keeps_last_good_config(start_bot, workdir):
    bot = await start_bot()
    assert "3 Watchlists" in await bot.say("/reload", chat_id=ADMIN)
    (workdir / "watchlists" / "broken.yaml").write_text("name: x\nthreshold: 500\n", encoding="utf-8")
    reply = await bot.say("/reload", chat_id=ADMIN)
    assert "abgelehnt" in reply and "broken.yaml" in reply
    assert len(bot.rt.config.watchlists) == 3


async def test_subscribe_alert_unsubscribe_flow(start_bot, feed_server):
    """A subscriber gets an alert for a matching item; after /unsubscribe, no more."""
    bot = await start_bot()
    await bot.say("/subscribe dprk-troops")
    feed_server.routes["/news.xml"] = Route(rss([
        {"title": "Nordkoreanische Soldaten kämpfen im Gebiet Kursk", "link": "https://n.example/a",
         "guid": "a", "ago": 5}]))
    await run_cycle(bot.rt.ctx, ignore_schedule=True)
    await bot.rt.deliverer.drain(timeout=5)
    alert = bot.stub.sent_to(USER)[-1]
    assert "Nordkoreanische Soldaten" in alert.text and alert.parse_mode == "HTML"
    assert any(b.get("callback_data") == "mute:dprk-troops" for b in alert.reply_markup["inline_keyboard"][0])
    await bot.say("/unsubscribe dprk-troops")
    count = len(bot.stub.sent_to(USER))
    feed_server.routes["/news.xml"] = Route(rss([
        {"title": "Weitere nordkoreanische Soldaten bei Kursk gesichtet", "link": "https://n.example/b",
         "guid": "b", "ago": 1}]))
    await run_cycle(bot.rt.ctx, ignore_schedule=True)
    await bot.rt.deliverer.drain(timeout=5)
    assert len(bot.stub.sent_to(USER)) == count


def _queue_alerts(rt: Runtime, chat_id: int, n: int, *, watchlist: str = "dprk-troops", start: int = 0) -> None:
    from bot.models import Item
    from bot.store import NewItem

    now = datetime.now(UTC)
    new = [NewItem(Item(key=f"k{i}", feed_id="news", title=f"Alert {i}", summary="", link=f"https://n.example/{i}",
                        canonical_link=f"https://n.example/{i}", guid=str(i), published=now, lang="de",
                        source="Example"), keys=[f"k{i}"], matches=[], alert_chats=[(chat_id, watchlist)])
           for i in range(start, start + n)]
    rt.store.record_items(new, None, now)


def test_daemon_answers_commands_and_delivers(workdir, telegram, feed_server):
    """`mediabot run` (a real subprocess) answers /start and /subscribe, then delivers the next alert."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    write_feeds_yaml(workdir / "watchlists", [{"id": "news", "url": feed_server.url("/news.xml"),
                                               "name": "Example News", "lang": "de"}])
    feed_server.routes["/news.xml"] = Route(rss([]))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDIABOT_", "TELEGRAM_"))} | {
        "TELEGRAM_BOT_TOKEN": telegram.TOKEN, "TELEGRAM_API_BASE_URL": telegram.base_url,
        "MEDIABOT_WATCHLISTS_DIR": str(workdir / "watchlists"), "MEDIABOT_STATE_DIR": str(workdir / "state"),
        "MEDIABOT_POLL_INTERVAL": "1", "MEDIABOT_POLL_MIN_INTERVAL": "1"}
    daemon = subprocess.Popen([sys.executable, "-m", "bot", "run"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        telegram.user_message("/start", chat_id=USER)
        assert telegram.wait_for(lambda: len(telegram.sent_to(USER)) == 1, timeout=15)
        assert "Willkommen" in telegram.sent_to(USER)[0].text
        telegram.user_message("/subscribe dprk-troops", chat_id=USER)
        assert telegram.wait_for(lambda: len(telegram.sent_to(USER)) == 2)
        feed_server.routes["/news.xml"] = Route(rss([
            {"title": "Nordkoreanische Soldaten kämpfen im Gebiet Kursk", "link": "https://n.example/d",
             "guid": "d", "ago": 1}]))
        assert telegram.wait_for(lambda: len(telegram.sent_to(USER)) == 3, timeout=15)
        assert "Nordkoreanische Soldaten" in telegram.sent_to(USER)[2].text
    finally:
        err = stop_daemon(daemon, timeout=15)
    assert daemon.returncode == 0, err
    assert TelegramStub.TOKEN not in err


async def test_a_group_upgrade_moves_the_groups_settings_when_telegram_reports_it(start_bot, telegram):
    """Telegram posts "migrate_to_chat_id" in the old group when it becomes a supergroup: from then on the
    supergroup has the group's subscriptions and settings, before any alert or command there."""
    bot = await start_bot()
    old, new = -555, -1000555
    telegram.chat_admins[old] = {55}
    assert "Abonniert" in await bot.say("/subscribe dprk-troops", chat_id=old, user_id=55, chat_type="group")
    await bot.say("/quiet 22:00-07:00", chat_id=old, user_id=55, chat_type="group")
    telegram.push_update({"message": {
        "message_id": 99, "date": 0, "chat": {"id": old, "type": "group", "title": "Newsroom"},
        "from": {"id": 55, "is_bot": False, "first_name": "Test"}, "migrate_to_chat_id": new}})
    assert await until(lambda: bot.rt.store.subscriptions(new) == {"dprk-troops"})
    assert bot.rt.store.chat(new)["quiet"] == "22:00-07:00" and bot.rt.store.subscriptions(old) == set()


async def test_editing_an_old_command_message_does_not_run_it_again(start_bot, telegram):
    bot = await start_bot()
    await bot.say("/subscribe dprk-troops")
    telegram.push_update({"edited_message": {
        "message_id": 98, "date": 0, "edit_date": 1, "chat": {"id": USER, "type": "private", "first_name": "T"},
        "from": {"id": USER, "is_bot": False, "first_name": "Test"}, "text": "/unsubscribe all",
        "entities": [{"type": "bot_command", "offset": 0, "length": 12}]}})
    await bot.say("/help")  # handled after the edit: the edit had its chance
    assert bot.rt.store.subscriptions(USER) == {"dprk-troops"}


async def test_a_long_digest_comes_in_several_messages_and_loses_nothing(start_bot, telegram):
    """100 alerts kept while muted: every one of them is in a digest message after /unmute (one message held
    about 17 and the rest were marked merged, never shown)."""
    from bot.models import Item
    from bot.store import NewItem

    bot = await start_bot(timezone="UTC")
    await bot.say("/subscribe dprk-troops", lang="en")
    await bot.say("/mute 1h", lang="en")
    now = datetime.now(UTC)
    bot.rt.store.record_items([NewItem(Item(
        key=f"k{i}", feed_id="news", title=f"Nordkoreas Soldaten: Bericht Nummer {i} über die Lage im Gebiet Kursk",
        summary="", link=f"https://news.example.org/2026/11/26/nordkorea-soldaten-kursk-bericht-{i}",
        canonical_link=f"https://news.example.org/{i}", guid=str(i), published=now, lang="de", source="Example News"),
        keys=[f"k{i}"], matches=[], alert_chats=[(USER, "dprk-troops")]) for i in range(100)], None, now)
    await bot.rt.deliverer.drain(timeout=5)
    before = len(telegram.sent_to(USER))
    await bot.say("/unmute", lang="en")
    await bot.rt.deliverer.drain(timeout=10)
    digests = [m.text for m in telegram.sent_to(USER)[before:] if "Digest" in m.text]
    assert len(digests) > 1 and all(len(d) <= 4096 for d in digests)
    shown = "\n".join(digests)
    assert all(f"Bericht Nummer {i} " in shown for i in range(100)) and "more" not in shown
    assert "Digest (1/" in digests[0] and f"({len(digests)}/{len(digests)})" in digests[-1]


async def test_a_user_taken_off_the_allowed_list_gets_no_more_alerts_and_can_still_unsubscribe(start_bot, feed_server):
    """The operator removes a journalist from MEDIABOT_ALLOWED_USERS (and restarts): their private chat
    gets no more alerts, and /unsubscribe still works for them, while everything else is refused."""
    other = 1002
    bot = await start_bot(allowed=frozenset({USER, other}))
    await bot.say("/subscribe dprk-troops")
    await bot.say("/subscribe dprk-troops", chat_id=other)
    restricted = replace(bot.rt.settings, allowed=frozenset({other}))
    bot.rt.settings = bot.rt.ctx.settings = restricted  # what the restart with the new list reads
    assert "freigeschaltet" in await bot.say("/list")
    feed_server.routes["/news.xml"] = Route(rss([{"title": "Nordkoreanische Soldaten kämpfen im Gebiet Kursk",
                                                  "link": "https://n.example/a", "guid": "a", "ago": 5}]))
    await run_cycle(bot.rt.ctx, ignore_schedule=True)
    await bot.rt.deliverer.drain(timeout=5)
    assert any("Soldaten" in m.text for m in bot.stub.sent_to(other))
    assert not any("Soldaten" in m.text for m in bot.stub.sent_to(USER))
    assert "Abo" in await bot.say("/unsubscribe all") and bot.rt.store.subscriptions(USER) == set()


async def test_unsubscribing_drops_the_alerts_kept_while_muted(start_bot):
    bot = await start_bot()
    await bot.say("/subscribe dprk-troops")
    await bot.say("/mute 1h")
    _queue_alerts(bot.rt, USER, 3)
    await bot.rt.deliverer.drain(timeout=5)
    assert len(bot.rt.store.outbox_rows("held", USER)) == 3
    await bot.say("/unsubscribe dprk-troops")
    before = len(bot.stub.sent_to(USER))
    await bot.say("/unmute")
    await bot.rt.deliverer.drain(timeout=5)
    assert not any("Alert" in m.text for m in bot.stub.sent_to(USER)[before:])


async def test_a_reply_over_telegrams_limit_comes_in_parts(start_bot):
    """/subscribe with many unknown ids (and /list with many watchlists, /reload with many problems) made a
    reply Telegram rejects as too long: the user got no answer at all."""
    bot = await start_bot()
    before = len(bot.stub.sent_to(USER))
    await bot.say("/subscribe dprk-troops " + " ".join(f"nope{i}" for i in range(80)))
    assert await until(lambda: any("nope79" in m.text for m in bot.stub.sent_to(USER)[before:]))
    replies = bot.stub.sent_to(USER)[before:]
    assert len(replies) > 1 and all(len(m.text) <= 4096 for m in replies)
    before = len(bot.stub.sent_to(USER))
    await bot.say("/subscribe " + "x" * 4080)
    assert all(len(m.text) <= 4096 for m in bot.stub.sent_to(USER)[before:])


async def test_unmute_with_a_daily_digest_says_the_alerts_still_wait(start_bot):
    bot = await start_bot()
    await bot.say("/subscribe dprk-troops", lang="en")
    await bot.say("/digest daily 08:00", lang="en")
    await bot.say("/mute 2h", lang="en")
    _queue_alerts(bot.rt, USER, 3)
    await bot.rt.deliverer.drain(timeout=5)
    assert "3 kept alerts still wait for your digest" in await bot.say("/unmute", lang="en")


async def test_ids_ignore_case_and_commas_and_the_quiet_window_takes_a_phone_dash(start_bot):
    """What people type: "DPRK-Troops", "a,b", and "22:00—07:00" (iOS turns "--" into an em dash)."""
    bot = await start_bot()
    reply = await bot.say("/subscribe DPRK-Troops,KURSK-front")
    assert bot.rt.store.subscriptions(USER) == {"dprk-troops", "kursk-front"}, reply
    assert "Unbekannt" not in reply
    assert "Abbestellt" in await bot.say("/unsubscribe <Kursk-Front>")
    assert bot.rt.store.subscriptions(USER) == {"dprk-troops"}
    assert "Ruhezeiten: 22:00-07:00" in await bot.say("/quiet 22:00—07:00")
    assert "Noch keine Treffer für" in await bot.say("/recent DPRK-TROOPS")


async def test_an_unknown_command_gets_an_answer_in_private_and_known_ones_only_theirs(start_bot):
    bot = await start_bot()
    assert "Unbekannter Befehl /foo" in await bot.say("/foo bar")
    before = len(bot.stub.sent_to(USER))
    assert "/subscribe" in await bot.say("/help")
    await asyncio.sleep(0.3)
    assert len(bot.stub.sent_to(USER)) == before + 1  # /help is not also "unknown"
    await bot.say("/foo", chat_id=GROUP, user_id=66, chat_type="supergroup", wait=False)  # maybe another bot's
    await asyncio.sleep(0.3)
    assert bot.stub.sent_to(GROUP) == []


async def test_an_anonymous_group_admin_may_change_the_groups_subscriptions(start_bot):
    bot = await start_bot()
    reply = await bot.say("/subscribe dprk-troops", chat_id=GROUP, chat_type="supergroup", on_behalf_of_chat=True)
    assert "Abonniert" in reply
    assert bot.rt.store.subscriptions(GROUP) == {"dprk-troops"}


async def test_a_channel_reader_cannot_mute_or_change_the_channels_language(start_bot):
    channel = -100999
    bot = await start_bot()
    answer = await bot.press("mute:dprk-troops", chat_id=channel, user_id=31337, chat_type="channel", lang="en")
    assert "only their admins may change" in answer
    assert bot.rt.store.chat(channel) is None  # no chat row in the reader's language


async def test_the_mute_button_says_so_when_the_chat_gets_the_list_through_the_yaml(start_bot, workdir):
    path = workdir / "watchlists" / "dprk-troops.yaml"
    path.write_text(path.read_text(encoding="utf-8") + f"\nchats: [{GROUP}]\n", encoding="utf-8")
    bot = await start_bot()
    bot.stub.chat_admins[GROUP] = {55}
    answer = await bot.press("mute:dprk-troops", chat_id=GROUP, user_id=55)
    assert "Konfiguration des Bots" in answer  # it used to say "muted" and change nothing
    await bot.say("/subscribe dprk-troops", chat_id=GROUP, user_id=55, chat_type="supergroup")
    assert "24 h stumm" in await bot.press("mute:dprk-troops", chat_id=GROUP, user_id=55)
    assert "dprk-troops" in bot.rt.store.mute_map(GROUP)
    listing = await bot.say("/list", chat_id=GROUP, user_id=55, chat_type="supergroup")
    assert "(<code>dprk-troops</code>) 🔕 stumm bis " in listing and "(/unmute)" in listing  # it was invisible


async def test_group_admins_choose_the_groups_alert_language(start_bot):
    bot = await start_bot()
    bot.stub.chat_admins[GROUP] = {55}
    await bot.say("/help", chat_id=GROUP, user_id=66, chat_type="supergroup", lang="en")  # a member, first
    assert "nur deren Admins" in await bot.say("/language de", chat_id=GROUP, user_id=66, chat_type="supergroup")
    assert bot.rt.store.chat(GROUP)["language"] == "en"
    assert "Deutsch" in await bot.say("/language de", chat_id=GROUP, user_id=55, chat_type="supergroup")
    assert bot.rt.store.chat(GROUP)["language"] == "de"
    assert "Telegram-App" in await bot.say("/language en")  # private chats follow the app


async def test_an_english_newsroom_sets_the_language_for_everyone_the_bot_cannot_ask(start_bot):
    """MEDIABOT_LANGUAGE=en: a user whose app speaks neither German nor English got German replies and menus,
    and so did every channel fed through `chats:`."""
    bot = await start_bot(language="en")
    assert "Welcome" in await bot.say("/start", lang="fr")
    assert "Willkommen" in await bot.say("/start", lang="de")  # an app in German still gets German
    assert [c["command"] for c in bot.stub.commands[""]][:2] == ["start", "list"]
    assert any(c["description"] == "Help" for c in bot.stub.commands[""])


async def test_unmute_with_a_list_lifts_that_lists_mute_only(start_bot):
    """`/unmute kursk-front` lifted every mute, the whole chat's too."""
    bot = await start_bot()
    await bot.say("/subscribe dprk-troops")
    await bot.say("/subscribe kursk-front")
    await bot.press("mute:dprk-troops")
    await bot.press("mute:kursk-front")
    await bot.say("/mute 2h")
    await bot.say("/unmute kursk-front")
    now = datetime.now(UTC)
    assert {w for w, until in bot.rt.store.mute_map(USER).items() if until > now} == {"dprk-troops"}
    assert bot.rt.store.chat(USER)["muted_until"] is not None  # the chat's own mute stays
    assert "Unbekannte Watchlist" in await bot.say("/unmute nordkorea")


async def test_list_shows_the_chats_own_mute_quiet_hours_and_digest(start_bot):
    """A journalist wondering "why no alerts?" found the chat's mute, quiet hours and digest nowhere."""
    bot = await start_bot()
    await bot.say("/subscribe dprk-troops")
    assert "stumm bis" not in (await bot.say("/list")).lower()
    await bot.say("/mute 2h", lang="en")
    await bot.say("/quiet 22:00-07:00", lang="en")
    await bot.say("/digest daily 08:00", lang="en")
    listing = await bot.say("/list", lang="en")
    assert "This chat is muted until" in listing and "Quiet hours 22:00-07:00" in listing
    assert "Digest: daily 08:00" in listing


async def test_list_shows_a_subscription_to_a_list_the_admins_removed(start_bot):
    bot = await start_bot()
    await bot.say("/subscribe dprk-troops")
    config = bot.rt.config
    bot.rt.swap_config(replace(config, watchlists=tuple(w for w in config.watchlists if w.id != "dprk-troops")))
    listing = await bot.say("/list")
    assert "⚠️ <code>dprk-troops</code> — abonniert, aber von den Admins entfernt" in listing
    assert "Abbestellt: dprk-troops" in await bot.say("/unsubscribe dprk-troops")
    assert "dprk-troops" not in await bot.say("/list")


async def test_the_mute_button_of_a_list_unsubscribed_since_says_so(start_bot):
    """It answered that the chat got the list through the bot's configuration (chats:), which was false."""
    bot = await start_bot()
    await bot.say("/subscribe dprk-troops")
    await bot.say("/unsubscribe dprk-troops")
    answer = await bot.press("mute:dprk-troops", lang="en")
    assert "not subscribed" in answer and "configuration" not in answer
