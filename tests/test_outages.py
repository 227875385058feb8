# ruff: noqa: F811  (the `runtime` fixture is imported from test_deliver and named as a parameter)
"""Delivery through Telegram outages and forum topics: the backlog digest keeps a chat's mute, quiet hours
and lock-out, joins the digest already waiting, and a closed or deleted topic moves the alerts to General.
(Cases a review of the outage digest found.)"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from tests.test_deliver import A, B, queue, runtime  # noqa: F401  (runtime: the fixture)

FORUM = -1009990001


async def _outage(rt, telegram, first: int, later, *, between=None) -> None:  # type: ignore[no-untyped-def]
    """Telegram answers 502 while `first` alerts queue for chat A, then `between()` runs (a user's or an
    admin's action), then `later` alerts queue, then Telegram is back and everything drains."""
    telegram.unavailable = 10**6
    drain = asyncio.ensure_future(rt.deliverer.drain(timeout=60))
    for i in range(first):
        queue(rt, [A], title=f"Meldung {i} zu Kursk", key=f"a{i}")
    rt.deliverer.wake()
    await asyncio.sleep(1.0)  # tried and deferred: the chat's sends are backlogged
    if between is not None:
        between()
    for i in range(later):
        queue(rt, [A], title=f"Spätere Meldung {i} aus Kiew", key=f"b{i}")
        rt.deliverer.wake()
        await asyncio.sleep(1.0)
    telegram.unavailable = 0
    await drain


async def test_a_chat_muted_during_an_outage_gets_nothing_when_telegram_is_back(runtime, telegram):
    rt = runtime(digest_threshold=3)
    await _outage(rt, telegram, 2, 2, between=lambda: rt.store.update_chat(
        A, muted_until=datetime.now(UTC) + timedelta(hours=2)))
    assert telegram.sent_to(A) == []
    assert {r.state for r in rt.store.outbox_rows(chat_id=A)} <= {"held", "pending"}  # kept for /unmute


async def test_quiet_hours_that_begin_during_an_outage_hold_the_backlog(runtime, telegram):
    rt = runtime(digest_threshold=3)
    local = datetime.now(rt.settings.tz)
    quiet = f"{(local - timedelta(hours=1)):%H:%M}-{(local + timedelta(hours=2)):%H:%M}"
    await _outage(rt, telegram, 2, 2, between=lambda: rt.store.update_chat(A, quiet=quiet))
    assert telegram.sent_to(A) == []


async def test_alerts_queued_behind_a_waiting_digest_join_it(runtime, telegram):
    """Each later alert of the outage became a digest of its own ("1 Meldungen", no buttons)."""
    rt = runtime(digest_threshold=3)
    await _outage(rt, telegram, 5, 3)
    sent = telegram.sent_to(A)
    assert len(sent) <= 2 and all("Zusammenfassung" in m.text for m in sent)
    assert sum(m.text.count("• ") for m in sent) == 8


async def test_a_chat_locked_out_during_an_outage_gets_no_waiting_digest(runtime, telegram):
    rt = runtime(digest_threshold=3, allowed=frozenset({999}))
    rt.store.ensure_chat(A)
    rt.store.update_chat(A, allowed=1)  # let in with /allow
    await _outage(rt, telegram, 5, 0, between=lambda: rt.store.revoke(A))  # /disallow A
    assert telegram.sent_to(A) == []


async def test_a_list_removed_during_an_outage_takes_its_stories_out_of_the_waiting_digest(runtime, telegram,
                                                                                         workdir):
    from bot.scheduler import reload_config

    rt = runtime(digest_threshold=3)
    rt.store.ensure_chat(A)
    rt.store.subscribe(A, "dprk-troops", datetime.now(UTC))

    def remove_list() -> None:
        (workdir / "watchlists" / "dprk-troops.yaml").unlink()
        asyncio.get_running_loop().create_task(reload_config(rt, rt.settings))

    await _outage(rt, telegram, 5, 0, between=remove_list)
    assert not any("Zusammenfassung" in m.text for m in telegram.sent_to(A))


async def test_a_502_is_no_message_that_may_arrive_twice(runtime, telegram, caplog):
    """Telegram answered (502 Bad Gateway): nothing went out. Every retry counted as a possible repeat."""
    rt = runtime(digest_threshold=0)
    telegram.unavailable = 8
    queue(rt, [A], key="one")
    queue(rt, [B], key="two", title="Weitere nordkoreanische Soldaten bei Kursk")
    with caplog.at_level(logging.WARNING, logger="bot.deliver"):
        stats = await rt.deliverer.drain(timeout=60)
    assert stats.maybe_repeated == 0 and "may arrive twice" not in caplog.text
    assert len(telegram.sent_to(A)) == 1 and len(telegram.sent_to(B)) == 1


async def test_a_closed_forum_topic_sends_the_alerts_to_general_and_keeps_the_group(runtime, telegram):
    """A moderator closed the topic the desk subscribed in: the whole group was switched off."""
    topic = 55
    plain = telegram._send

    def send(method, p, now):  # type: ignore[no-untyped-def]  # a closed topic refuses a non-admin's post
        if p.get("message_thread_id") and int(p["message_thread_id"]) == topic:
            return telegram._reject(method, int(p["chat_id"]), 400, "Bad Request: TOPIC_CLOSED", now)
        return plain(method, p, now)

    telegram._send = send
    rt = runtime()
    rt.store.ensure_chat(FORUM, "supergroup", "Desk")
    rt.store.subscribe(FORUM, "dprk-troops", datetime.now(UTC))
    rt.store.update_chat(FORUM, thread=topic)
    queue(rt, [FORUM], key="one")
    queue(rt, [FORUM], key="two", title="Weitere nordkoreanische Soldaten bei Kursk")
    await rt.deliverer.drain(timeout=10)
    assert rt.store.chat(FORUM)["active"] == 1
    assert len(telegram.sent_to(FORUM)) == 2 and all(m.thread is None for m in telegram.sent_to(FORUM))


async def test_a_deleted_forum_topic_is_tried_once_then_general_is_used(runtime, telegram):
    rt = runtime()
    telegram.deleted_topics.add(77)
    rt.store.ensure_chat(FORUM, "supergroup", "Desk")
    rt.store.update_chat(FORUM, thread=77)
    for n, title in enumerate(["Nordkoreanische Soldaten bei Kursk", "Pjöngjang schickt weitere Truppen nach Kursk"]):
        queue(rt, [FORUM], key=f"k{n}", title=title)
        await rt.deliverer.drain(timeout=10)
    assert len([r for r in telegram.rejections if "thread not found" in r[2]]) == 1
    assert len(telegram.sent_to(FORUM)) == 2 and rt.store.chat(FORUM)["thread"] is None
