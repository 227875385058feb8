"""The delivery engine with the real python-telegram-bot client against TelegramStub and a real SQLite
store: Telegram's errors become the right outcome, holds and digests, and a crash mid fan-out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.alerts import Rendered
from bot.app import Runtime, build_runtime
from bot.config import Settings, load_config
from bot.deliver import Pacer, TelegramSender
from bot.errors import ChatUnavailableError
from bot.models import Item, Match, TermHit
from bot.store import NewItem, SqliteStore
from tests.conftest import ROOT, run_cli, write_feeds_yaml
from tests.servers import FeedServer, Route, TelegramStub, rss

A, B, C = 2001, 2002, 2003


@pytest.fixture
async def runtime(workdir: Path, telegram: TelegramStub, feed_server: FeedServer) -> AsyncIterator[Any]:
    write_feeds_yaml(workdir / "watchlists", [{"id": "news", "url": feed_server.url("/news.xml"),
                                               "name": "Example News", "lang": "de"}])
    made: list[Runtime] = []

    def make(**overrides: Any) -> Runtime:
        settings = replace(Settings(token=TelegramStub.TOKEN, api_base_url=telegram.base_url,
                                    watchlists_dir=workdir / "watchlists", state_dir=workdir / "state"), **overrides)
        made.append(build_runtime(settings, load_config(settings.watchlists_dir)))
        return made[-1]

    yield make
    for rt in made:
        await rt.aclose()


def queue(rt: Runtime, chats: list[int], *, title: str = "Nordkoreanische Soldaten bei Kursk", key: str = "k",
          watchlist: str = "dprk-troops", published: datetime | None = None, source: str = "Example",
          story_id: int | None = None, link: str | None = None) -> int:
    """One matching item queued as an alert to each chat (what the pipeline records); with `story_id`, a
    copy folded into that story instead. Returns its story id."""
    now = datetime.now(UTC)
    for c in chats:
        rt.store.ensure_chat(c)
    link = link or f"https://n.example/{key}"
    item = Item(key=key, feed_id="news", title=title, summary="Kiew meldet Gefechte.", link=link,
                canonical_link=f"https://n.example/{key}", guid=key, published=published or now, lang="de",
                source=source)
    alerts = [] if story_id else [(c, watchlist) for c in chats]
    match = Match(watchlist, 100.0, (TermHit("Kursk", "Kursk", "title", 1, 100.0),))
    return rt.store.record_items([NewItem(item, [key], [match], alerts, story_id=story_id)], None, now)[0][0]


async def test_429_waits_exactly_retry_after_and_other_chats_go_on(runtime, telegram):
    rt = runtime()
    telegram.retry_after[A] = 2
    queue(rt, [A, B])
    stats = await rt.deliverer.drain(timeout=10)
    assert telegram.too_many == 1  # never retried early: an early retry would count again
    assert stats.rate_limited == 1 and stats.sent == 2
    rejected_at = next(t for (_m, chat, _d, t) in telegram.rejections if chat == A)
    assert telegram.sent_to(A)[0].at >= rejected_at + 2.0
    assert telegram.sent_to(B)[0].at < rejected_at + 1.0  # B did not wait for A


async def test_blocked_user_is_deactivated_and_others_still_get_the_alert(runtime, telegram, caplog):
    rt = runtime()
    telegram.forbidden.add(A)
    rt.store.ensure_chat(A)
    rt.store.subscribe(A, "dprk-troops", datetime.now(UTC))
    with caplog.at_level(logging.WARNING, logger="bot.deliver"):
        queue(rt, [A, B, C])
        stats = await rt.deliverer.drain(timeout=10)
    assert stats.chats_gone == 1 and stats.sent == 2
    assert len(telegram.sent_to(B)) == 1 and len(telegram.sent_to(C)) == 1
    assert rt.store.chat(A)["active"] == 0
    assert rt.store.subscribers("dprk-troops") == []
    assert [r.state for r in rt.store.outbox_rows(chat_id=A)] == ["failed"]
    assert f"chat unavailable, its alerts stop until it is back chat={A}" in caplog.text
    assert TelegramStub.TOKEN not in caplog.text


async def test_group_upgraded_to_supergroup_moves_subscriptions_and_alert(runtime, telegram):
    rt = runtime()
    old, new = -555, -1000555
    telegram.migrated[old] = new
    rt.store.ensure_chat(old, "group")
    rt.store.subscribe(old, "dprk-troops", datetime.now(UTC))
    queue(rt, [old])
    await rt.deliverer.drain(timeout=10)
    assert len(telegram.sent_to(new)) == 1
    assert rt.store.subscriptions(new) == {"dprk-troops"} and rt.store.subscriptions(old) == set()


async def test_html_rejected_by_telegram_is_resent_once_as_plain_text(runtime, telegram, caplog):
    rt = runtime()
    sender = TelegramSender(rt.bot)
    with caplog.at_level(logging.WARNING, logger="bot.deliver"):
        await sender.send(A, Rendered("<b>broken & bad", "broken & bad"))
    assert [m.parse_mode for m in telegram.sent_to(A)] == [None]
    assert telegram.sent_to(A)[0].text == "broken & bad"
    assert sum(1 for (_m, chat, d, _t) in telegram.rejections if chat == A and "parse entities" in d) == 1
    assert "resending as plain text" in caplog.text


async def test_plain_text_resend_failing_too_is_not_retried_in_a_loop(runtime, telegram):
    rt = runtime()
    telegram.forbidden.add(A)
    with pytest.raises(ChatUnavailableError):
        await TelegramSender(rt.bot).send(A, Rendered("<b>broken", "broken"))
    assert len(telegram.calls) <= 3  # getMe at most, then one send


async def test_an_article_link_telegram_would_refuse_is_encoded_or_left_out(runtime, telegram):
    """Telegram refuses the whole message for a button URL or href with a space, or with a host that has no
    dot (an intranet feed's links): the alert was marked failed for every recipient."""
    rt = runtime()
    queue(rt, [A], key="a", link="https://n.example/politik/Nordkorea Soldaten Kursk.html")
    queue(rt, [A], key="b", title="Gefangene aus Nordkorea in Kiew", link="http://newsdesk/kursk/4711")
    await rt.deliverer.drain(timeout=10)
    assert telegram.rejections == []
    first, second = telegram.sent_to(A)
    assert first.buttons()[0]["url"] == "https://n.example/politik/Nordkorea%20Soldaten%20Kursk.html"
    assert 'href="https://n.example/politik/Nordkorea%20Soldaten%20Kursk.html"' in first.text
    assert "Gefangene" in second.text and "href" not in second.text
    assert all("url" not in b for b in second.buttons())  # the mute button stays


async def test_a_link_telegram_refuses_for_a_rule_of_its_own_goes_as_plain_text(runtime, telegram, caplog):
    from bot.pipeline import _queue_also_edits

    rt = runtime()
    telegram.refuse_urls_with = "n.example/k"
    rt.store.ensure_chat(A)
    rt.store.subscribe(A, "dprk-troops", datetime.now(UTC))  # so the alert has its mute button
    story = queue(rt, [A])
    await rt.deliverer.drain(timeout=10)
    [sent] = telegram.sent_to(A)
    assert sent.parse_mode is None and "https://n.example/k" in sent.text  # the link, as text
    assert [b.get("callback_data") for b in sent.buttons()] == ["mute:dprk-troops"]
    queue(rt, [A], key="k2", source="Other Outlet", story_id=story)  # a copy: the alert is edited
    _queue_also_edits(rt.ctx, story, datetime.now(UTC))
    await rt.deliverer.drain(timeout=10)
    edits = [m for m in telegram.messages if m.method == "editMessageText"]
    assert edits and "Other Outlet" in edits[-1].text
    assert rt.store.outbox_rows("failed") == []


async def test_invalid_html_in_a_feed_title_is_escaped(runtime, telegram):
    rt = runtime()
    queue(rt, [A], title='Kursk: <script>alert("x")</script> & </b> Soldaten <3')
    await rt.deliverer.drain(timeout=10)
    sent = telegram.sent_to(A)
    assert len(sent) == 1 and sent[0].parse_mode == "HTML"
    assert "&lt;script&gt;" in sent[0].text and "&amp;" in sent[0].text and "&lt;3" in sent[0].text
    assert telegram.rejections == []


async def test_backlog_over_threshold_becomes_one_digest(runtime, telegram):
    rt = runtime(digest_threshold=5)
    for i in range(8):
        queue(rt, [A], title=f"Meldung {i} zu Kursk", key=f"k{i}")
    queue(rt, [B], title="Einzelmeldung", key="single")
    await rt.deliverer.drain(timeout=10)
    sent = telegram.sent_to(A)
    assert len(sent) == 1 and "8 Meldungen" in sent[0].text
    assert all(f"Meldung {i} zu Kursk" in sent[0].text for i in range(8))
    assert len(telegram.sent_to(B)) == 1 and "Einzelmeldung" in telegram.sent_to(B)[0].text
    assert {r.state for r in rt.store.outbox_rows(chat_id=A)} == {"merged", "sent"}


async def test_quiet_hours_hold_alerts_and_release_them_as_one_digest(runtime, telegram):
    rt = runtime(timezone="UTC")
    # The rows are stamped with the real clock, so the fake one must not lie before it: the next 23:00.
    night = datetime.now(UTC).replace(hour=23, minute=0, second=0, microsecond=0)
    if night < datetime.now(UTC):
        night += timedelta(days=1)
    clock = [night]
    rt.deliverer.now = lambda: clock[0]
    rt.store.ensure_chat(A)
    rt.store.update_chat(A, quiet="22:00-07:00")
    for i in range(3):
        queue(rt, [A], key=f"q{i}", title=f"Nachtmeldung {i}")
    await rt.deliverer.drain(timeout=5)
    assert telegram.sent_to(A) == []
    assert len(rt.store.outbox_rows("held", A)) == 3
    clock[0] = night + timedelta(hours=8)  # 07:00, quiet hours are over
    rt.deliverer._next_release = 0.0
    await rt.deliverer.drain(timeout=5)
    sent = telegram.sent_to(A)
    assert len(sent) == 1 and "3 Meldungen" in sent[0].text
    assert rt.store.outbox_rows("held", A) == []


async def test_a_digest_lists_stories_as_they_happened_with_the_outlets_that_also_carried_them(runtime, telegram):
    """After quiet hours the digest listed stories in the order their feeds answered, with bare times
    that looked alike across midnight, and never the other outlets: a copy under a headline of its own,
    which a chat without quiet hours sees under its alert, never reached the digest reader."""
    rt = runtime(timezone="UTC")
    night = datetime.now(UTC).replace(hour=23, minute=0, second=0, microsecond=0)
    if night < datetime.now(UTC):
        night += timedelta(days=1)
    clock = [night]
    rt.deliverer.now = lambda: clock[0]
    rt.store.ensure_chat(A)
    rt.store.update_chat(A, quiet="22:00-07:00")
    early = queue(rt, [A], key="late-feed", title="Drohnenangriff auf Kurtschatow",
                  published=night - timedelta(hours=1))
    queue(rt, [A], key="second", title="Nacht der Explosionen in Sudscha", published=night + timedelta(hours=6))
    queue(rt, [A], key="first", title="Evakuierung im Gebiet Kursk ausgeweitet", published=night - timedelta(hours=2))
    queue(rt, [A], key="copy", title="Kurtschatow: Drohne trifft Umspannwerk", source="Outlet B", story_id=early,
          published=night - timedelta(minutes=30))
    await rt.deliverer.drain(timeout=5)
    assert telegram.sent_to(A) == []
    clock[0] = night + timedelta(hours=8)
    rt.deliverer._next_release = 0.0
    await rt.deliverer.drain(timeout=5)
    [digest] = telegram.sent_to(A)
    lines = digest.text.splitlines()
    assert lines[0].endswith("3 Meldungen · UTC")
    day, next_day = (night - timedelta(hours=2)).strftime("%d.%m."), (night + timedelta(hours=6)).strftime("%d.%m.")
    assert [line[:15] for line in lines if line.startswith("•")] == [
        f"• {day} 21:00 ", f"• {day} 22:00 ", f"• {next_day} 05:00 "]  # oldest first, dated across midnight
    assert lines[3:5] == ["   ➕ Outlet B", "   ↳ Outlet B: Kurtschatow: Drohne trifft Umspannwerk"]


async def test_a_quiet_chat_is_looked_at_once_a_minute_not_every_second(runtime, telegram):
    """The release check runs every second; a chat whose hold has long to run is not re-read each time,
    and is still released the moment its quiet hours end."""
    rt = runtime(timezone="UTC")
    night = datetime.now(UTC).replace(hour=23, minute=0, second=0, microsecond=0)
    if night < datetime.now(UTC):
        night += timedelta(days=1)
    rt.deliverer.now = lambda: night
    rt.store.ensure_chat(A)
    rt.store.update_chat(A, quiet="22:00-07:00")
    queue(rt, [A], key="n0", title="Nachtmeldung")
    await rt.deliverer.drain(timeout=5)
    router = rt.deliverer.router
    reads: list[Any] = []
    real = rt.store.outbox_rows
    rt.store.outbox_rows = lambda state=None, chat_id=None: reads.append(chat_id) or real(state, chat_id)
    for second in range(120):
        assert router.release(night + timedelta(seconds=second)) == 0
    assert len(reads) == 2  # at the start and a minute later, not 120 times
    assert router.release(night + timedelta(hours=8)) == 1
    assert rt.store.outbox_rows("held", A) == []


async def test_hourly_digest_collects_alerts_until_the_hour(runtime, telegram):
    rt = runtime(timezone="UTC")
    queue(rt, [A], key="d0")
    rt.store.update_chat(A, digest="hourly")
    queue(rt, [A], key="d1", title="Zweite Meldung")
    clock = [datetime.now(UTC)]  # rows are stamped with the real clock; the next full hour is the slot
    rt.deliverer.now = lambda: clock[0]
    await rt.deliverer.drain(timeout=5)
    assert telegram.sent_to(A) == []
    clock[0] = datetime.now(UTC) + timedelta(hours=1, minutes=1)
    rt.deliverer._next_release = 0.0
    await rt.deliverer.drain(timeout=5)
    assert len(telegram.sent_to(A)) == 1 and "2 Meldungen" in telegram.sent_to(A)[0].text


def test_restart_in_the_middle_of_a_fan_out_loses_nothing_and_repeats_at_most_one(workdir, feed_server, telegram):
    """SIGKILL a real `poll --once` while it sends to 40 chats; the restart sends the rest exactly once."""
    chats = list(range(5000, 5040))
    store = SqliteStore(workdir / "state" / "mediabot.db")
    now = datetime.now(UTC)
    for c in chats:
        store.ensure_chat(c)
        store.subscribe(c, "dprk-troops", now)
    store.close()
    write_feeds_yaml(workdir / "watchlists", [{"id": "news", "url": feed_server.url("/news.xml"),
                                               "name": "Example News", "lang": "de"}])
    feed_server.routes["/news.xml"] = Route(rss([{
        "title": "Nordkoreanische Soldaten kämpfen im Gebiet Kursk", "link": "https://news.example.org/nk",
        "guid": "a1", "ago": 10}]))
    env = {"TELEGRAM_BOT_TOKEN": telegram.TOKEN, "TELEGRAM_API_BASE_URL": telegram.base_url,
           "MEDIABOT_WATCHLISTS_DIR": str(workdir / "watchlists"), "MEDIABOT_STATE_DIR": str(workdir / "state")}
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDIABOT_", "TELEGRAM_"))} | env
    proc = subprocess.Popen([sys.executable, "-m", "bot", "poll", "--once"], cwd=ROOT, env=full_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def kill_mid_way(_msg: Any) -> None:
        if len(telegram.messages) == 15:  # accepted by "Telegram", not yet marked sent by the bot
            os.kill(proc.pid, signal.SIGKILL)

    telegram.on_accept = kill_mid_way
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    telegram.on_accept = None
    first_run = len(telegram.messages)
    assert 15 <= first_run < len(chats)

    again = run_cli(["poll", "--once"], env)
    assert again.returncode == 0, again.stderr
    counts = {c: len(telegram.sent_to(c)) for c in chats}
    assert all(n >= 1 for n in counts.values()), "an alert was lost"
    assert sum(n - 1 for n in counts.values()) <= 1, "more than the one in-flight message was repeated"
    assert TelegramStub.TOKEN not in again.stderr


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.mark.parametrize(("chat", "sends", "after", "expected"), [
    (A, [], 0.0, 0.0),  # nothing sent yet: go
    (B, [A], 0.0, 1.03 / 60),  # another chat: the even spacing (half a slot made up after a pause)
    (B, [A, C], 0.0, 1.03 / 60 + 1.03 / 30),  # ... then full slots
    (A, [A], 0.5, 0.5),  # the same private chat: about one per second
    (-100, [-100], 1.0, 0.0),  # a group after a second: fine while under 20 per minute
])
def test_pacer_waits(chat, sends, after, expected):
    clock = FakeClock()
    pacer = Pacer(clock=clock)
    for c in sends:
        pacer.record(c)
    clock.t += after
    assert pacer.wait_time(chat) == pytest.approx(expected, abs=1e-6)


def test_pacer_caps_a_group_at_20_per_minute_and_honours_retry_after():
    clock = FakeClock()
    pacer = Pacer(clock=clock)
    for _ in range(20):
        pacer.record(-100)
        clock.t += 1.5
    assert pacer.wait_time(-100) == pytest.approx(60 - 30, abs=1e-6)
    pacer.block(A, 7)
    assert pacer.wait_time(A) == pytest.approx(7)


def test_pacer_never_exceeds_30_in_any_second():
    clock = FakeClock()
    pacer = Pacer(clock=clock)
    sent: list[float] = []
    chat = 1
    while clock.t < 1010:
        if pacer.wait_time(chat) <= 0:
            pacer.record(chat)
            sent.append(clock.t)
            chat += 1
        clock.t += 0.001
    assert all(sum(1 for t in sent if s <= t < s + 1.0) <= 30 for s in sent)
    assert len(sent) >= 10 * 30 * 0.95


async def test_group_upgraded_when_the_supergroup_already_has_the_alert_sends_it_once(runtime, telegram):
    """The group's admin subscribed again in the new supergroup before the first alert, so the alert was
    queued for both ids: the old id's row is dropped, not resent for ever (and `drain` returns)."""
    rt = runtime()
    old, new = -555, -1000555
    telegram.migrated[old] = new
    rt.store.ensure_chat(old, "group", language="en")
    hour = datetime.now(rt.settings.tz).hour  # quiet hours that are not now: the test ran red from 22:00 to 07:00
    quiet = f"{(hour + 2) % 24:02d}:00-{(hour + 3) % 24:02d}:00"
    rt.store.update_chat(old, quiet=quiet, allowed=1)
    rt.store.subscribe(old, "dprk-troops", datetime.now(UTC))
    rt.store.ensure_chat(new, "supergroup")  # a member's /help in the supergroup made a fresh row
    rt.store.subscribe(new, "dprk-troops", datetime.now(UTC))
    queue(rt, [old, new])
    await rt.deliverer.drain(timeout=10)
    assert len(telegram.sent_to(new)) == 1
    assert len([r for r in telegram.rejections if r[1] == old]) == 1  # asked once, then moved
    assert {r.state for r in rt.store.outbox_rows(chat_id=old)} == {"merged"}
    # The group's settings moved with it, although the supergroup's row was made first.
    moved = rt.store.chat(new)
    assert (moved["language"], moved["quiet"], moved["allowed"]) == ("en", quiet, 1)


async def test_a_token_revoked_mid_run_keeps_every_alert_and_stops_sending(runtime, telegram, caplog):
    """A 401 is the token's fault, not the chat's: no row fails, the chats stay subscribed, and the
    deliverer does not hammer Telegram with the rest of the fan-out."""
    rt = runtime()
    queue(rt, [A, B, C])
    telegram.reject_token = True
    with caplog.at_level(logging.ERROR):
        stats = await rt.deliverer.drain(timeout=10)
    assert rt.deliverer.token_rejected
    assert stats.failed == 0 and stats.chats_gone == 0
    assert [r.state for r in rt.store.outbox_rows()] == ["pending"] * 3
    assert len([c for c in telegram.calls if c[0] == "sendMessage"]) == 1
    assert sum("rejected the bot token" in r.getMessage() for r in caplog.records) == 1


async def test_the_mute_button_is_offered_only_where_it_works(runtime, telegram):
    """A chat that gets the list through `chats:` (a channel, most often) has no subscription for the
    button to mute; in a channel any reader could press it."""
    rt = runtime()
    rt.store.ensure_chat(B)
    rt.store.subscribe(B, "dprk-troops", datetime.now(UTC))
    queue(rt, [A, B])
    await rt.deliverer.drain(timeout=10)

    def callbacks(chat: int) -> list[str]:
        markup = telegram.sent_to(chat)[0].reply_markup or {}
        return [b.get("callback_data", "") for row in markup.get("inline_keyboard", []) for b in row]

    assert callbacks(A) == [""]  # the article button alone
    assert callbacks(B) == ["", "mute:dprk-troops"]


async def test_a_muted_list_does_not_hold_a_story_that_also_came_through_a_list_still_on(runtime, telegram):
    """The alert is tagged with the item's best-scoring list; muting that list (the alert's button) held
    a Kursk story for 24 h although the chat still receives kursk-front."""
    rt = runtime()
    now = datetime.now(UTC)
    rt.store.ensure_chat(A)
    for wl in ("dprk-troops", "kursk-front"):
        rt.store.subscribe(A, wl, now)
    assert rt.store.set_watchlist_mute(A, "dprk-troops", now + timedelta(hours=24))

    def item(key: str, title: str) -> Item:
        return Item(key=key, feed_id="news", title=title, summary="Kiew meldet Gefechte.", link=f"https://n.example/{key}",
                    canonical_link=f"https://n.example/{key}", guid=key, published=now, lang="de", source="Example")

    both = item("both", "Kursk: Drohnen treffen nordkoreanische Soldaten")
    only = item("only", "Nordkorea schickt weitere Soldaten nach Russland")
    rt.store.record_items([NewItem(both, ["both"], [], [(A, "dprk-troops")],
                                   chat_lists={A: ["dprk-troops", "kursk-front"]}),
                           NewItem(only, ["only"], [], [(A, "dprk-troops")])], None, now)
    await rt.deliverer.drain(timeout=10)
    assert [m.text.split("\n")[0] for m in telegram.sent_to(A)] == [
        '<b><a href="https://n.example/both">Kursk: Drohnen treffen nordkoreanische Soldaten</a></b>']
    assert [r.state for r in rt.store.outbox_rows(chat_id=A) if r.kind == "alert"] == ["sent", "held"]


async def test_a_store_that_cannot_record_a_sent_message_never_makes_it_go_again(runtime, telegram, caplog):
    """A full disk: Telegram accepted the alert, recording it failed, and the row went out again at the
    next free slot (17 copies to one group in 50 s), each with a "Task exception was never retrieved"."""
    rt = runtime()
    queue(rt, [A, B, C])

    def store_breaks(_message: object) -> None:  # after the first message Telegram accepted
        telegram.on_accept = None
        rt.store._db.execute("PRAGMA query_only=ON")  # every write fails now, as on a full disk

    telegram.on_accept = store_breaks
    with caplog.at_level(logging.INFO):
        drain = asyncio.ensure_future(rt.deliverer.drain(timeout=30))
        await asyncio.sleep(2.0)
        assert len(telegram.messages) == 1  # nothing more leaves while nothing can be recorded
        rt.store._db.execute("PRAGMA query_only=OFF")
        await drain
    assert sorted(m.chat_id for m in telegram.messages) == [A, B, C]  # each once
    assert [r.state for r in rt.store.outbox_rows()] == ["sent"] * 3
    assert sum("cannot record deliveries" in r.getMessage() for r in caplog.records) == 1
    assert not any("never retrieved" in r.getMessage() for r in caplog.records)


async def test_a_stop_that_cancels_delivery_still_records_what_was_sent(runtime, telegram):
    """The store could not record an alert Telegram took (a full disk, another process's lock) and a stop
    cancelled delivery while another send still hung on Telegram: the sent alert was only in memory, and the
    next start sent it again. The cancelled loop now records it on its way out."""
    rt = runtime()
    queue(rt, [A, B])

    def store_breaks(_message: object) -> None:  # after the first message Telegram accepted
        telegram.on_accept = None
        telegram.delay = 3.0  # the next send hangs
        rt.store._db.execute("PRAGMA query_only=ON")

    telegram.on_accept = store_breaks
    run = asyncio.ensure_future(rt.deliverer.run())
    await asyncio.sleep(1.0)
    assert len(telegram.messages) == 1
    rt.store._db.execute("PRAGMA query_only=OFF")  # the store records again, but delivery is paused
    run.cancel()  # the stop's grace ran out (scheduler: wait_for on the delivery task)
    with contextlib.suppress(asyncio.CancelledError):
        await run
    states = {r.chat_id: r.state for r in rt.store.outbox_rows()}
    assert states[telegram.messages[0].chat_id] == "sent"
    telegram.delay = 0.0


def test_an_alerts_time_names_its_time_zone():
    """Desks in several countries read one channel: "18:38" alone left them guessing whose clock."""
    from zoneinfo import ZoneInfo

    from bot.alerts import render_alert

    payload = {"title": "Kursk", "source": "Example", "published": "2026-11-26T17:38:00+00:00"}
    winter = render_alert(payload, watchlist_name="Kursk", tz=ZoneInfo("Europe/Berlin"))
    assert "Example · 26.11.2026 18:38 CET" in winter.html
    summer = render_alert({**payload, "published": "2026-07-01T17:38:00+00:00"}, watchlist_name="Kursk", tz=UTC)
    assert "01.07.2026 17:38 UTC" in summer.html


def test_a_digest_line_says_when_the_story_was_published():
    """A digest after quiet hours listed stories without times: which came first overnight was lost."""
    from zoneinfo import ZoneInfo

    from bot.alerts import render_digest

    entries = [{"title": "Kursk", "source": "A", "watchlist": "kursk-front", "link": "https://a.example/1",
                "published": "2026-11-26T05:10:00+00:00"}]
    digest = render_digest(entries, heading="Digest", tz=ZoneInfo("Europe/Berlin"), names={"kursk-front": "Kursk"})
    assert '• 06:10 <a href="https://a.example/1">Kursk</a> <i>(A; Kursk)</i>' in digest.html


def test_a_paged_digest_counts_every_story_on_each_page():
    """"Digest (1/2) — 17 stories" for a digest of 21 read as if the first page were all of it."""
    from zoneinfo import ZoneInfo

    from bot.alerts import render_digest

    entries = [{"title": "Kursk", "source": "A", "watchlist": "kursk-front", "published": "2026-11-26T05:10:00+00:00"}]
    page = render_digest(entries, heading="Digest (2/2)", tz=ZoneInfo("Europe/Berlin"), lang="en", total=21)
    assert page.plain.splitlines()[0] == "Digest (2/2) — 21 stories · CET"


async def test_a_copy_recorded_while_the_alert_is_on_its_way_still_reaches_the_message(runtime, telegram):
    """The pipeline edits only alerts already sent, and skips a chat whose edit is already waiting. A copy
    recorded while the alert (or that edit) was in flight was never named in the message: 2 to 36 chats per
    kill -9 chaos run lacked an outlet."""
    from bot.pipeline import _queue_also_edits

    rt = runtime()
    story = queue(rt, [A], key="lead", title="Nordkoreanische Soldaten bei Kursk")
    copies = iter([("Outlet B", "b1"), ("Outlet C", "c1")])

    def copy_lands(_accepted: object) -> None:  # in Telegram's thread, before the bot hears back
        outlet = next(copies, None)
        if outlet is not None:
            queue(rt, [A], key=outlet[1], source=outlet[0], story_id=story, title=f"{outlet[0]}: Soldaten in Kursk")
            _queue_also_edits(rt.ctx, story, datetime.now(UTC))

    telegram.on_accept = copy_lands
    try:
        await rt.deliverer.drain(timeout=10)
    finally:
        telegram.on_accept = None
    [alert] = telegram.sent_to(A)
    edits = [m for m in telegram.messages if m.method == "editMessageText"]
    assert edits and "Outlet B" in edits[-1].text and "Outlet C" in edits[-1].text  # the alert, then its edit
    assert len(edits) <= 2 and "Outlet B" not in alert.text


async def test_alerts_waiting_together_go_out_in_the_order_they_were_published(runtime, telegram):
    """One cycle writes alerts in the order the feeds answered: a chat saw 17:05, 17:10, then 17:05 again."""
    rt = runtime()
    now = datetime.now(UTC)
    for key, minutes in (("b", 10), ("c", 5), ("a", 30)):
        queue(rt, [A], key=key, title=f"Meldung {key} aus Kursk", published=now - timedelta(minutes=minutes))
    await rt.deliverer.drain(timeout=10)
    sent = [next(k for k in "abc" if f"Meldung {k} aus" in m.text) for m in telegram.sent_to(A)]
    assert sent == ["a", "b", "c"]


def test_a_long_digest_over_several_days_loses_no_story_to_its_dates():
    """Pages were measured without the date each line gets when a digest spans days: the last stories of a
    full page were cut to "… +N more", and their rows were already merged into the digest."""
    from zoneinfo import ZoneInfo

    from bot.alerts import digest_dated, digest_order, digest_pages, render_digest

    tz, names = ZoneInfo("Europe/Berlin"), {"kursk-front": "Kursk front"}
    start = datetime(2024, 8, 10, 20, tzinfo=UTC)
    entries = digest_order([{"title": f"Gefechte bei Sudscha, Lage {i}", "link": f"https://t.me/s/x/{i}",
                             "source": "Tagesschau", "published": (start + timedelta(hours=i)).isoformat(),
                             "watchlist": "kursk-front", "story_id": i + 1} for i in range(120)])
    dated = digest_dated(entries, tz)
    pages = digest_pages(entries, names, dated)
    shown = [render_digest(page, heading="Digest", tz=tz, names=names, total=120, dated=dated).plain.count("\n• ")
             for page in pages]
    assert dated and sum(shown) == 120 and len(pages) > 1


@pytest.mark.parametrize("status,answer", [
    (403, "Forbidden: bot is not a member of the channel chat"),
    (400, "Bad Request: need administrator rights in the channel chat"),  # in it, without "Post messages"
    (400, "Bad Request: not enough rights to send text messages to the chat"),
])
async def test_a_chats_channel_the_bot_cannot_post_to_is_reported_to_the_admins_once(runtime, telegram, workdir,
                                                                                     status, answer):
    """Alerts to a channel in a watchlist's chats: that the bot was never added to were dropped with a log
    line only; the admins heard nothing. A private user who blocked the bot is no news to them. Telegram
    answers a bot that is in the chat but may not post there with a 400, which failed alert after alert."""
    channel, admin = -1001999, 4242
    path = workdir / "watchlists" / "dprk-troops.yaml"
    path.write_text(path.read_text(encoding="utf-8") + f"\nchats: [{channel}]\n", encoding="utf-8")
    rt = runtime(admins=frozenset({admin}))
    telegram.forbidden.add(A)
    telegram.refused[channel] = (status, answer)
    queue(rt, [channel, A], key="one")
    await rt.deliverer.drain(timeout=10)
    queue(rt, [channel], key="two", title="Weitere nordkoreanische Soldaten bei Kursk")
    await rt.deliverer.drain(timeout=10)
    [notice] = telegram.sent_to(admin)
    assert str(channel) in notice.text and "dprk-troops" in notice.text and str(A) not in notice.text


async def test_a_bot_admin_who_never_started_the_bot_is_named_in_the_log(runtime, telegram, caplog):
    """A bot cannot write first: an admin who never sent /start gets no notice, and the log blamed
    "subscriptions deactivated" for a user who has none."""
    admin = 4242
    rt = runtime(admins=frozenset({admin}))
    telegram.refused[admin] = (403, "Forbidden: bot can't initiate conversation with a user")
    rt.store.queue_notice([admin], "Feed down", datetime.now(UTC))
    with caplog.at_level(logging.WARNING, logger="bot.deliver"):
        await rt.deliverer.drain(timeout=10)
    assert f"chat {admin} has never started the bot" in caplog.text and "sends /start" in caplog.text


async def test_a_message_whose_answer_was_lost_is_sent_again_and_counted(runtime, telegram, caplog):
    """Telegram took the alert but the connection dropped before its answer: the Bot API cannot be asked
    whether it arrived. It is sent again (a repeat is the lesser harm than a lost alert), and said so."""
    rt = runtime()
    telegram.drop_answers = 1
    queue(rt, [A])
    with caplog.at_level(logging.WARNING, logger="bot.deliver"):
        stats = await rt.deliverer.drain(timeout=15)
    assert len(telegram.sent_to(A)) == 2  # the honest repeat
    assert stats.maybe_repeated == 1 and "may arrive twice" in caplog.text
    assert rt.store.outbox_rows("pending") == []


def test_only_a_send_that_may_have_reached_telegram_counts_as_maybe_repeated():
    import httpx
    from telegram.error import NetworkError, TimedOut

    from bot.deliver import _map_error

    cases = [(TimedOut(), httpx.ConnectTimeout("connect"), False), (TimedOut(), httpx.PoolTimeout("pool"), False),
             (NetworkError("x"), httpx.ConnectError("refused"), False), (TimedOut(), httpx.ReadTimeout("read"), True),
             (NetworkError("x"), httpx.RemoteProtocolError("disconnected"), True)]
    for error, cause, maybe_sent in cases:
        error.__cause__ = cause
        mapped = _map_error(error)
        assert getattr(mapped, "maybe_sent", None) is maybe_sent, cause


async def test_a_chats_group_that_became_a_supergroup_is_reported_to_the_admins_once(runtime, telegram, workdir):
    """Its alerts reach the supergroup, each after a refused try at the old id, and chats: kept the old id
    for ever: nobody told the admins to change it."""
    old, new, admin = -555, -1000555, 4242
    path = workdir / "watchlists" / "dprk-troops.yaml"
    path.write_text(path.read_text(encoding="utf-8") + f"\nchats: [{old}]\n", encoding="utf-8")
    rt = runtime(admins=frozenset({admin}))
    telegram.migrated[old] = new
    queue(rt, [old], key="one")
    await rt.deliverer.drain(timeout=10)
    queue(rt, [old], key="two", title="Weitere nordkoreanische Soldaten bei Kursk")
    await rt.deliverer.drain(timeout=10)
    assert len(telegram.sent_to(new)) == 2
    [notice] = telegram.sent_to(admin)
    assert f"replace {old} with {new} in chats:" in notice.text and "dprk-troops" in notice.text


async def test_alerts_piled_up_in_a_telegram_outage_come_as_one_digest(runtime, telegram):
    """Each alert was weighed against the digest threshold once, when it was queued, a few per cycle: after
    an outage the chat got every one of them singly, one a second, instead of the promised digest."""
    rt = runtime(digest_threshold=10)
    telegram.unavailable = 10**6  # every call answered 502 Bad Gateway
    drain = asyncio.ensure_future(rt.deliverer.drain(timeout=60))
    for batch in range(5):  # five poll cycles during the outage, three alerts each
        for i in range(3):
            queue(rt, [A], title=f"Meldung {batch}-{i} zu Kursk", key=f"k{batch}-{i}")
        rt.deliverer.wake()
        await asyncio.sleep(0.4)
    assert telegram.sent_to(A) == []
    failing = rt.deliverer.unreachable  # what /healthz shows ("connected" it said all along)
    assert failing is not None and "Bad Gateway" in failing[1]
    telegram.unavailable = 0  # Telegram is back
    await drain
    assert rt.deliverer.unreachable is None
    sent = telegram.sent_to(A)
    assert all("Zusammenfassung" in m.text for m in sent) and len(sent) <= 2, [m.text[:60] for m in sent]
    assert sum(m.text.count("• ") for m in sent) == 15


def test_an_article_link_keeps_its_host_when_made_safe_for_telegram():
    """A link with a user part and an international domain name was rewritten to point at another host."""
    from bot.alerts import safe_url

    assert safe_url("https://user:pw@münchen.de:8080/a b") == "https://user:pw@xn--mnchen-3ya.de:8080/a%20b"
    assert safe_url("https://ru.example/новости/1") == "https://ru.example/%D0%BD%D0%BE%D0%B2%D0%BE%D1%81%D1%82%D0%B8/1"
    assert safe_url("http://newsdesk/kursk") is None and safe_url("ftp://x.example/a") is None
