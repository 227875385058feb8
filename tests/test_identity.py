"""Exact duplicates through the real pipeline: one alert per article, whatever the feed does to it."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import pytest

from bot.app import build_runtime
from bot.config import Config, load_config, load_settings
from bot.models import FeedSpec
from bot.pipeline import run_cycle
from tests.conftest import ROOT
from tests.servers import FeedServer, Route, rss

STORY = {"title": "Nordkoreanische Soldaten kämpfen im Gebiet Kursk",
         "description": "Kiew meldet erste Gefechte mit Truppen aus Nordkorea an der Seite Russlands.", "ago": 5}


async def _poll(tmp_path: Path, feeds: list[FeedSpec]) -> str:
    """One cycle plus delivery to the terminal sink, in a fresh process-like runtime; returns the output."""
    settings = replace(load_settings({}), state_dir=tmp_path / "state", token=None)
    config = Config(tuple(feeds), load_config(ROOT / "watchlists").watchlists)
    out = io.StringIO()
    rt = build_runtime(settings, config, force_console=True, console_stream=out)
    try:
        await run_cycle(rt.ctx, ignore_schedule=True)
        await rt.deliverer.drain(timeout=30)
    finally:
        await rt.aclose()
    return out.getvalue()


def _spec(server: FeedServer, path: str, fid: str = "f", identity: str = "auto") -> FeedSpec:
    return FeedSpec(id=fid, url=server.url(path), name=fid, lang="de", allow_private=True, identity=identity)


def _alerts(output: str) -> int:
    """New alerts of the story (an update of an alert already sent, "(update to alert #…", is none)."""
    return sum(line.startswith("Nordkoreanische Soldaten kämpfen") for line in output.splitlines())


async def test_item_repeated_inside_one_feed_alerts_once(tmp_path, feed_server):
    item = dict(STORY, link="https://x.example/1", guid="g1")
    feed_server.routes["/f.xml"] = Route(rss([item, item]))
    assert _alerts(await _poll(tmp_path, [_spec(feed_server, "/f.xml")])) == 1


@pytest.mark.parametrize(("first", "second"), [
    ({"guid": "random-1", "link": "https://x.example/1"}, {"guid": "random-2", "link": "https://x.example/1"}),
    ({"guid": "stable", "link": "https://x.example/1?utm_source=a"}, {"guid": "stable", "link": "https://x.example/9"}),
    ({"guid": "g", "link": "https://x.example/1"},
     {"guid": "g", "link": "https://x.example/1", "title": STORY["title"] + " (update)"}),
], ids=["guid-changes-link-stays", "link-changes-guid-stays", "edited-title"])
async def test_same_article_in_a_later_fetch_never_realerts(tmp_path, feed_server, first, second):
    feed_server.routes["/f.xml"] = Route(rss([dict(STORY, **first)]))
    assert _alerts(await _poll(tmp_path, [_spec(feed_server, "/f.xml")])) == 1
    feed_server.routes["/f.xml"] = Route(rss([dict(STORY, **second)]))
    assert _alerts(await _poll(tmp_path, [_spec(feed_server, "/f.xml")])) == 0


async def test_same_article_in_two_feeds_of_one_outlet_alerts_once(tmp_path, feed_server):
    feed_server.routes["/a.xml"] = Route(rss([dict(STORY, link="https://www.x.example/1/", guid="a")]))
    feed_server.routes["/b.xml"] = Route(rss([dict(STORY, link="http://x.example/1?utm_medium=rss", guid="b")]))
    out = await _poll(tmp_path, [_spec(feed_server, "/a.xml", "a"), _spec(feed_server, "/b.xml", "b")])
    assert _alerts(out) == 1


async def test_identity_override_for_a_feed_with_broken_guids(tmp_path, feed_server):
    """A publisher that puts the fetch time into the guid: `identity: link` keys its items on the link."""
    feed_server.routes["/f.xml"] = Route(rss([dict(STORY, link="https://x.example/1", guid="t=1")]))
    spec = _spec(feed_server, "/f.xml", identity="link")
    assert _alerts(await _poll(tmp_path, [spec])) == 1
    feed_server.routes["/f.xml"] = Route(rss([dict(STORY, link="https://x.example/1", guid="t=2")]))
    assert _alerts(await _poll(tmp_path, [spec])) == 0


async def test_later_copies_from_two_outlets_make_one_edit_naming_both(tmp_path, feed_server):
    story = dict(STORY, link="https://a.example/1", guid="a1")
    feed_server.routes["/a.xml"] = Route(rss([story]))
    feed_server.routes["/b.xml"] = Route(rss([]))
    feed_server.routes["/c.xml"] = Route(rss([]))
    feeds = [_spec(feed_server, f"/{x}.xml", f"outlet-{x}") for x in "abc"]
    first = await _poll(tmp_path, feeds)
    assert _alerts(first) == 1
    feed_server.routes["/b.xml"] = Route(rss([dict(STORY, title="Ukraine-Krieg: " + STORY["title"],
                                                   link="https://b.example/9", guid="b9")]))
    feed_server.routes["/c.xml"] = Route(rss([dict(STORY, title=STORY["title"] + " – Kiew",
                                                   link="https://c.example/7", guid="c7")]))
    second = await _poll(tmp_path, feeds)
    edits = [line for line in second.splitlines() if line.startswith("(update to alert")]
    assert len(edits) == 1, second
    assert "outlet-b" in edits[0] and "outlet-c" in edits[0]
    assert "────" not in second  # no new alert


async def test_edited_item_with_a_new_link_is_known_under_that_link_in_another_feed(tmp_path, feed_server):
    """An outlet edits headline and slug (the guid stays, so feed A drops it as known), then its second feed
    carries the article under the new link with its own guid and a reworded teaser: still the same article."""
    spec_a, spec_b = _spec(feed_server, "/a.xml", "a"), _spec(feed_server, "/b.xml", "b")
    feed_server.routes["/a.xml"] = Route(rss([dict(STORY, guid="sp-1", link="https://x.example/nk-soldaten-a-111.html")]))
    feed_server.routes["/b.xml"] = Route(rss([]))
    assert _alerts(await _poll(tmp_path, [spec_a, spec_b])) == 1
    edited = dict(title="Kursk: Ukrainische Armee beschießt nordkoreanische Einheiten", ago=4,
                  description="Die Ukraine greift nach eigenen Angaben Stellungen nordkoreanischer Truppen an.",
                  link="https://x.example/kursk-beschuss-nordkoreaner-a-111.html")
    feed_server.routes["/a.xml"] = Route(rss([dict(edited, guid="sp-1")]))
    assert "nordkoreanische Einheiten" not in await _poll(tmp_path, [spec_a, spec_b])
    feed_server.routes["/b.xml"] = Route(rss([dict(edited, guid="schlagzeilen-77",
                                                   link=edited["link"] + "?utm_source=schlagzeilen")]))
    out = await _poll(tmp_path, [spec_a, spec_b])
    assert "nordkoreanische Einheiten" not in out, out


async def test_a_breaking_news_item_filled_in_later_alerts_once_when_it_matches(tmp_path, feed_server):
    """Outlets post a bare "Eilmeldung" and fill it in under the same guid and link. The bare version matches
    nothing and is recorded as seen; the filled-in one used to count as an edit of a known item and never
    alerted, although nothing had been sent for it."""
    spec = _spec(feed_server, "/f.xml")
    bare = {"title": "Eilmeldung: Ukraine meldet Gefangennahme", "description": "Weitere Informationen folgen.",
            "guid": "eil-123", "link": "https://x.example/eil-123", "ago": 3}
    feed_server.routes["/f.xml"] = Route(rss([bare]))
    assert await _poll(tmp_path, [spec]) == ""
    filled = dict(bare, title="Ukraine nimmt zwei nordkoreanische Soldaten in Kursk gefangen",
                  description="Die ukrainische Armee hat bei Kursk zwei Soldaten aus Nordkorea gefangen genommen.")
    feed_server.routes["/f.xml"] = Route(rss([filled]))
    assert (await _poll(tmp_path, [spec])).count("zwei nordkoreanische Soldaten in Kursk gefangen") == 1
    assert "gefangen" not in await _poll(tmp_path, [spec])  # and once only
    feed_server.routes["/f.xml"] = Route(rss([dict(filled, title=filled["title"] + " (aktualisiert)")]))
    assert "gefangen" not in await _poll(tmp_path, [spec])  # a later edit of a matched item: never again


async def test_a_feed_whose_guids_change_on_every_fetch_adds_no_keys(tmp_path, feed_server):
    """Keys of a known item are learned only when it was edited: a feed that puts the fetch time into the
    guid must not grow the seen table by one key per item and poll."""
    from bot.store import SqliteStore

    spec = _spec(feed_server, "/f.xml")
    for n in range(3):
        feed_server.routes["/f.xml"] = Route(rss([dict(STORY, guid=f"t={n}", link="https://x.example/1")]))
        await _poll(tmp_path, [spec])
    store = SqliteStore(tmp_path / "state" / "mediabot.db")
    try:
        assert store.count("seen") == 2  # the first fetch's guid and the link
    finally:
        store.close()


# -- feeds.yaml edits reach a feed that was polled before ---------------------------------------


async def test_a_feed_url_edited_in_feeds_yaml_is_used(tmp_path, feed_server):
    """The stored URL won for ever once a feed had been polled: the bot kept fetching the old address."""
    feed_server.routes["/old.xml"] = Route(rss([]))
    feed_server.routes["/new.xml"] = Route(rss([dict(STORY, link="https://x.example/1", guid="g1")]))
    await _poll(tmp_path, [_spec(feed_server, "/old.xml")])
    assert _alerts(await _poll(tmp_path, [_spec(feed_server, "/new.xml")])) == 1
    assert feed_server.hits("/old.xml") == 1 and feed_server.hits("/new.xml") == 1


async def test_a_feed_disabled_after_410_comes_back_when_its_url_is_edited(tmp_path, feed_server):
    feed_server.routes["/gone.xml"] = Route(b"", status=410)
    feed_server.routes["/moved.xml"] = Route(rss([dict(STORY, link="https://x.example/1", guid="g1")]))
    await _poll(tmp_path, [_spec(feed_server, "/gone.xml")])
    await _poll(tmp_path, [_spec(feed_server, "/gone.xml")])
    assert feed_server.hits("/gone.xml") == 1  # disabled
    assert _alerts(await _poll(tmp_path, [_spec(feed_server, "/moved.xml")])) == 1


async def test_a_permanent_redirect_is_kept_while_feeds_yaml_stays_the_same(tmp_path, feed_server):
    feed_server.redirect("/a.xml", "/b.xml", 301)
    feed_server.routes["/b.xml"] = Route(rss([]))
    for _ in range(3):
        await _poll(tmp_path, [_spec(feed_server, "/a.xml")])
    assert feed_server.hits("/a.xml") == 1 and feed_server.hits("/b.xml") == 3


async def test_a_next_poll_set_by_a_clock_that_ran_ahead_does_not_silence_the_feed(tmp_path, feed_server):
    """A next poll a year ahead (the host's clock was wrong when it was set) is treated as due."""
    from datetime import UTC, datetime, timedelta

    from bot.models import FeedState
    from bot.pipeline import feed_due

    spec = _spec(feed_server, "/f.xml")
    now = datetime.now(UTC)
    assert feed_due(spec, FeedState("f", spec.url, next_poll=now + timedelta(days=365)), now, ignore_schedule=False)
    assert not feed_due(spec, FeedState("f", spec.url, next_poll=now + timedelta(hours=2)), now, ignore_schedule=False)


async def test_an_item_a_feed_keeps_listing_never_alerts_again_however_old_its_key(tmp_path, feed_server):
    """Seen keys are pruned after twice the retention; a feed that keeps an item longer than that (or a
    host whose clock was far behind when the item arrived) made it new again and alerted it a second time."""
    import sqlite3
    from datetime import UTC, datetime

    from bot.store import SqliteStore

    spec = _spec(feed_server, "/f.xml")
    item = dict(STORY, guid="kept", link="https://x.example/kept")
    feed_server.routes["/f.xml"] = Route(rss([item]))
    assert _alerts(await _poll(tmp_path, [spec])) == 1
    db = tmp_path / "state" / "mediabot.db"
    con = sqlite3.connect(db)
    con.execute("UPDATE seen SET first_seen='2020-01-01T00:00:00+00:00'")  # recorded long ago (or so it looks)
    con.commit()
    con.close()
    other = {"title": "Wetter", "description": "Sonnig.", "guid": "w", "link": "https://x.example/w", "ago": 1}
    feed_server.routes["/f.xml"] = Route(rss([item, other]))  # the feed changes, the old item stays listed
    assert _alerts(await _poll(tmp_path, [spec])) == 0
    store = SqliteStore(db)
    try:
        store.prune(datetime.now(UTC), 30)
    finally:
        store.close()
    feed_server.routes["/f.xml"] = Route(rss([item, other, dict(other, guid="w2", link="https://x.example/w2")]))
    assert _alerts(await _poll(tmp_path, [spec])) == 0


def test_a_prune_that_would_drop_every_seen_key_keeps_them(tmp_path):
    """A host that booted with its clock a year behind, then synced: every key looks a year old."""
    from datetime import UTC, datetime, timedelta

    from bot.models import Item
    from bot.store import NewItem, SqliteStore

    store = SqliteStore(tmp_path / "state" / "mediabot.db")
    try:
        then = datetime.now(UTC) - timedelta(days=400)
        it = Item(key="k", feed_id="f", title="t", summary="", link="https://x.example/k",
                  canonical_link="https://x.example/k", guid="k", published=then, lang="de", source="S")
        store.record_items([NewItem(it, ["g:k"], [], [])], None, then)
        assert store.prune(datetime.now(UTC), 30)["seen"] == 0
        assert store.seen_keys(["g:k"]) == {"g:k"}
        store.record_items([NewItem(replace(it, key="n"), ["g:n"], [], [])], None, datetime.now(UTC))
        assert store.prune(datetime.now(UTC), 30)["seen"] == 1  # with recent keys beside it, the old one goes
    finally:
        store.close()


async def test_an_alert_names_the_words_it_matched_as_the_item_writes_them(tmp_path, feed_server):
    """The "matched" line listed term names: a German alert read "Munition, ammunition" for the one word
    "Artilleriegranaten", and "the war" for "Ukraine"."""
    spec = _spec(feed_server, "/f.xml")
    feed_server.routes["/f.xml"] = Route(rss([{
        "title": "Nordkorea liefert Russland Artilleriegranaten", "guid": "g", "link": "https://x.example/g",
        "description": "Nordkorea hat Russland nach südkoreanischen Angaben Millionen Artilleriegranaten geliefert.",
        "ago": 2}]))
    out = await _poll(tmp_path, [spec])
    [line] = [ln for ln in out.splitlines() if "Treffer:" in ln]
    assert "Artilleriegranaten" in line and "ammunition" not in line and "Munition" not in line, line


async def test_an_old_unmatched_item_touched_up_days_later_does_not_alert(tmp_path, feed_server):
    """The rewritten-item path is for placeholders filled in within hours, not for a ten-day-old item whose
    teaser an outlet extends (or that an upgrade now reads better): that is old news."""
    import sqlite3

    spec = _spec(feed_server, "/f.xml")
    old = {"title": "Lage im Gebiet Kursk", "description": "Die Lage ist unübersichtlich.",
           "guid": "alt-1", "link": "https://x.example/alt-1", "ago": 3}
    feed_server.routes["/f.xml"] = Route(rss([old]))
    assert await _poll(tmp_path, [spec]) == ""
    con = sqlite3.connect(tmp_path / "state" / "mediabot.db")
    con.execute("UPDATE items SET first_seen='2020-01-01T00:00:00+00:00'")  # stored ten days, or years, ago
    con.commit()
    con.close()
    feed_server.routes["/f.xml"] = Route(rss([dict(old, description="Nordkoreanische Soldaten kämpfen im Gebiet "
                                                                    "Kursk an der Seite Russlands.")]))
    assert "Lage im Gebiet Kursk" not in await _poll(tmp_path, [spec])


@pytest.mark.parametrize("guid", ["a1", ""], ids=["with-guids", "links-only"])
async def test_a_feed_unchanged_through_a_clock_jump_keeps_its_items_seen(tmp_path, feed_server, guid):
    """The host's clock jumped months ahead. A feed that had not changed was never parsed again, so its
    seen keys were pruned (another feed's new item kept the prune guard quiet), and when the feed next
    changed its old items alerted again. Its unconditional fetch (due after the jump) keeps them seen."""
    import sqlite3
    from datetime import UTC, datetime

    from bot.store import SqliteStore

    spec_a, spec_b = _spec(feed_server, "/a.xml", "a"), _spec(feed_server, "/b.xml", "b")
    item = dict(STORY, guid=guid, link="https://x.example/a1")
    feed_server.routes["/a.xml"] = Route(rss([item]), etag='"v1"')
    feed_server.routes["/b.xml"] = Route(rss([]))
    assert _alerts(await _poll(tmp_path, [spec_a, spec_b])) == 1
    con = sqlite3.connect(tmp_path / "state" / "mediabot.db")  # everything so far looks months old now
    con.execute("UPDATE seen SET first_seen='2020-01-01T00:00:00+00:00'")
    con.execute("UPDATE feeds SET last_full_fetch='2020-01-01T00:00:00+00:00'")
    con.commit()
    con.close()
    other = {"title": "Wetter", "description": "Sonnig.", "guid": "b1", "link": "https://x.example/b1", "ago": 1}
    feed_server.routes["/b.xml"] = Route(rss([other]))  # a fresh key: the prune guard stays quiet
    assert _alerts(await _poll(tmp_path, [spec_a, spec_b])) == 0
    store = SqliteStore(tmp_path / "state" / "mediabot.db")
    try:
        store.prune(datetime.now(UTC), 30)
    finally:
        store.close()
    new = {"title": "Börse", "description": "Ruhig.", "guid": guid and "a2", "link": "https://x.example/a2", "ago": 1}
    feed_server.routes["/a.xml"] = Route(rss([item, new]), etag='"v2"')
    assert _alerts(await _poll(tmp_path, [spec_a, spec_b])) == 0


# -- keys that change under known items ------------------------------------------------------------


def _story(n: int, minutes: float, host: str = "x.example") -> dict[str, object]:
    """A matching story of its own (its own words, so the story index never folds two of them)."""
    places = ["Sudscha", "Gluschkowo", "Korenewo", "Lgow", "Rylsk", "Tjotkino"]
    return {"title": f"Nordkoreanische Soldaten greifen bei {places[n]} an", "ago": minutes,
            "description": f"Gefechte um {places[n]} im Gebiet Kursk, meldet Kiew.",
            "link": f"https://{host}/{n}", "guid": f"{host}-{n}"}


def _alerted(output: str, n: int) -> bool:
    """A new alert for story n (its headline heads a message; an edit of an earlier alert does not count)."""
    place = ["Sudscha", "Gluschkowo", "Korenewo", "Lgow", "Rylsk", "Tjotkino"][n]
    return f"Nordkoreanische Soldaten greifen bei {place} an" in output.splitlines()


async def test_an_identity_edit_sends_no_old_story_again(tmp_path, feed_server):
    """Every key changes with `identity:`, so every item the feed lists looked new: the items a first poll
    held back (10 and 30 hours old) alerted, and old stories outside the fold's reach came again."""
    feed_server.routes["/f.xml"] = Route(rss([_story(0, 60), _story(1, 600), _story(2, 1800)]))
    first = await _poll(tmp_path, [_spec(feed_server, "/f.xml")])
    assert _alerted(first, 0) and not _alerted(first, 1) and not _alerted(first, 2)
    out = await _poll(tmp_path, [_spec(feed_server, "/f.xml", identity="title_link")])
    assert not any(_alerted(out, n) for n in range(3))
    feed_server.routes["/f.xml"] = Route(rss([_story(3, 2), _story(0, 60), _story(1, 600), _story(2, 1800)]))
    out = await _poll(tmp_path, [_spec(feed_server, "/f.xml", identity="title_link")])
    assert _alerted(out, 3) and not any(_alerted(out, n) for n in range(3))  # new items alert as before


async def test_a_moved_site_does_not_send_stories_older_than_the_dedup_window_again(tmp_path, feed_server):
    """A publisher reissued every GUID and link (a new domain): a three-day-old story the feed lists under
    its new keys is out of the story index's reach (48 hours), and alerted again."""
    feed_server.routes["/f.xml"] = Route(rss([_story(0, 30)]))
    await _poll(tmp_path, [_spec(feed_server, "/f.xml")])
    feed_server.routes["/f.xml"] = Route(rss([_story(0, 30, "new.example"), _story(1, 3 * 24 * 60, "new.example")]))
    out = await _poll(tmp_path, [_spec(feed_server, "/f.xml")])
    assert not _alerted(out, 0) and not _alerted(out, 1)


async def test_a_feed_that_stamps_every_item_with_one_old_date_still_alerts_new_stories(tmp_path, feed_server):
    """A CMS that gives every item the same date (here a week old, frozen): each new story looked like an old
    one listed again, was held back as older than the dedup window, and the feed never alerted."""
    frozen = "Mon, 16 Nov 2026 06:00:00 GMT"
    old = [dict(_story(n, 0), pubDate=frozen) for n in range(3)]
    feed_server.routes["/f.xml"] = Route(rss(old))
    first = await _poll(tmp_path, [_spec(feed_server, "/f.xml")])
    assert not any(_alerted(first, n) for n in range(3))  # a first poll cannot tell what is recent: no catch-up
    feed_server.routes["/f.xml"] = Route(rss([dict(_story(3, 0), pubDate=frozen), *old]))
    out = await _poll(tmp_path, [_spec(feed_server, "/f.xml")])
    assert _alerted(out, 3) and not any(_alerted(out, n) for n in range(3))
    # the same with a zero date (1970) on every item, and on a single new one
    feed_server.routes["/f.xml"] = Route(rss([dict(_story(4, 0), pubDate="Thu, 01 Jan 1970 00:00:00 GMT"),
                                              dict(_story(3, 0), pubDate=frozen), *old]))
    assert _alerted(await _poll(tmp_path, [_spec(feed_server, "/f.xml")]), 4)


async def test_a_new_story_of_a_feed_with_one_recent_date_on_every_item_counts_from_when_it_was_seen(
        tmp_path, feed_server):
    """The shared date was 40 minutes old: a story first seen now showed that time, took the lead of its
    story from the outlet that really published first, and sorted first in digests (hunt11b)."""
    from datetime import UTC, datetime, timedelta
    from email.utils import format_datetime

    from bot.store import SqliteStore

    frozen = format_datetime(datetime.now(UTC) - timedelta(minutes=40))
    old = [dict(_story(n, 0), pubDate=frozen) for n in range(3)]
    feed_server.routes["/f.xml"] = Route(rss(old))
    first = await _poll(tmp_path, [_spec(feed_server, "/f.xml")])
    assert _alerted(first, 0)  # a first poll keeps the date: the items are recent as far as it can tell
    feed_server.routes["/f.xml"] = Route(rss([dict(_story(3, 0), pubDate=frozen), *old]))
    before = datetime.now(UTC)
    assert _alerted(await _poll(tmp_path, [_spec(feed_server, "/f.xml")]), 3)
    store = SqliteStore(tmp_path / "state" / "mediabot.db")
    try:
        published = {m.title: m.published for m in store.recent_matches("kursk-front", 10)}
    finally:
        store.close()
    assert published[_story(3, 0)["title"]] >= before - timedelta(seconds=1)
    assert published[_story(0, 0)["title"]] < before - timedelta(minutes=30)


async def test_one_old_date_on_a_few_items_is_still_a_date(tmp_path, feed_server):
    """Two items that share an old date (a relisted pair) stay what they are: old stories, held back."""
    feed_server.routes["/f.xml"] = Route(rss([_story(0, 30)]))
    await _poll(tmp_path, [_spec(feed_server, "/f.xml")])
    feed_server.routes["/f.xml"] = Route(rss([_story(1, 3 * 24 * 60), _story(2, 3 * 24 * 60)]))
    out = await _poll(tmp_path, [_spec(feed_server, "/f.xml")])
    assert not _alerted(out, 1) and not _alerted(out, 2)


async def test_a_feed_back_after_days_alerts_only_what_is_recent(tmp_path, feed_server):
    """A feed paused (or failing) for days and back: what it published meanwhile came as alerts a day old."""
    from datetime import UTC, datetime, timedelta

    from bot.store import SqliteStore

    spec = _spec(feed_server, "/f.xml")
    feed_server.routes["/f.xml"] = Route(rss([_story(0, 30)]))
    await _poll(tmp_path, [spec])
    store = SqliteStore(tmp_path / "state" / "mediabot.db")  # five days pass
    try:
        state = store.feed_state("f", spec.url)
        state.last_success = datetime.now(UTC) - timedelta(days=5)
        store.save_feed_state(state)
    finally:
        store.close()
    feed_server.routes["/f.xml"] = Route(rss([_story(1, 20 * 60), _story(2, 10), _story(0, 5 * 24 * 60)]))
    out = await _poll(tmp_path, [spec])
    assert _alerted(out, 2) and not _alerted(out, 1)


async def test_a_shorter_interval_in_feeds_yaml_applies_at_once(tmp_path, feed_server):
    """The old schedule ran out first: a feed changed from hourly to every five minutes waited up to an hour."""
    feed_server.routes["/f.xml"] = Route(rss([_story(0, 30)]))
    settings = replace(load_settings({}), state_dir=tmp_path / "state", token=None)
    watchlists = load_config(ROOT / "watchlists").watchlists
    for interval, expected_hits in ((3600, 1), (3600, 1), (300, 2)):
        spec = replace(_spec(feed_server, "/f.xml"), interval=interval)
        rt = build_runtime(settings, Config((spec,), watchlists), force_console=True, console_stream=io.StringIO())
        try:
            await run_cycle(rt.ctx)  # on the schedule, as the daemon polls
        finally:
            await rt.aclose()
        assert feed_server.hits("/f.xml") == expected_hits


async def test_an_item_a_feed_keeps_listing_unchanged_for_months_never_alerts_again(tmp_path, feed_server):
    """A quiet feed keeps listing the undated story it alerted on its second poll, its document unchanged for
    70 days (polled twice a day, pruned at each run as `poll --once` does), then it publishes something new:
    the story must not alert again though the store's retention (keys kept twice the 30 days) came round.
    Before, an unchanged document was not read, so nothing refreshed its items' keys. One feed with guids,
    one without."""
    from datetime import UTC, datetime, timedelta

    from bot.scheduler import prune_store

    clock = [datetime.now(UTC)]
    other = {"title": "Wetter: Regen in Bremen", "description": "Morgen wird es nass.", "ago": 30}
    story = {"g": dict(STORY, ago=None, link="https://x.example/g1", guid="g1"),
             "l": {"title": "Duma ratifiziert Beistandsvertrag mit Nordkorea", "ago": None,
                   "description": "Das Abkommen mit Pjöngjang sieht gegenseitigen militärischen Beistand vor.",
                   "link": "https://y.example/l1"}}
    for fid in story:
        feed_server.routes[f"/{fid}.xml"] = Route(rss([dict(other, link=f"https://{fid}.example/w")]))
    settings = replace(load_settings({}), state_dir=tmp_path / "state", token=None)
    config = Config((_spec(feed_server, "/g.xml", "g"), _spec(feed_server, "/l.xml", "l"),
                     _spec(feed_server, "/busy.xml", "busy")), load_config(ROOT / "watchlists").watchlists)
    out = io.StringIO()
    rt = build_runtime(settings, config, force_console=True, console_stream=out, now=lambda: clock[0])
    try:
        for step in range(2 * 75):
            # another feed publishes all along (with none, the prune keeps every key: the clock may have jumped)
            feed_server.routes["/busy.xml"] = Route(rss([dict(other, link=f"https://busy.example/{step}")]))
            if step in (1, 2 * 70):  # the story arrives, then nothing changes until day 70 brings a new item
                for fid, item in story.items():
                    news = [dict(other, title="Glatteis", link=f"https://{fid}.example/new")] if step > 1 else []
                    feed_server.routes[f"/{fid}.xml"] = Route(rss([*news, item, dict(
                        other, link=f"https://{fid}.example/w", pubDate="Tue, 24 Nov 2026 08:00:00 GMT")]))
            await run_cycle(rt.ctx, ignore_schedule=True)
            await rt.deliverer.drain(timeout=30)
            await prune_store(rt, settings, clock[0])
            clock[0] += timedelta(hours=12)
    finally:
        await rt.aclose()
    lines = out.getvalue().splitlines()
    assert [sum(line.startswith(item["title"]) for line in lines) for item in story.values()] == [1, 1]
