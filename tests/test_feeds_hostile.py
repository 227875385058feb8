"""Whole poll cycles (pipeline.run_cycle with the real Fetcher, a real SQLite store and a loopback
feed server) where one feed is broken, slow or hostile: that feed gets a clear status (last error in
plain words, failures, next attempt) and the good feeds in the same cycle are polled and recorded,
with the cycle bounded by the fetch timeout."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.config import Config, Settings
from bot.fetch import Fetcher
from bot.match import Matcher
from bot.models import FeedSpec, FeedState
from bot.pipeline import FAILING_NOTICE_AFTER, FULL_FETCH_EVERY, CycleContext, _backoff, next_interval, run_cycle
from bot.store import SqliteStore
from tests.servers import FeedServer, Route, rss

DATA = Path(__file__).parent / "data" / "feeds"
UA = "mediabot-test/1.0 (+https://contact.example/bot)"
TOTAL = 1.0  # the fetch timeout of these tests, seconds
ADMIN = 4242
SETTINGS = Settings(poll_interval=10, poll_min_interval=5, poll_max_interval=60, admins=frozenset({ADMIN}),
                    recent_window=30 * 86400.0, max_body_bytes=256 * 1024, fetch_timeout=TOTAL)


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Rig:
    server: FeedServer
    store: SqliteStore
    fetcher: Fetcher
    clock: Clock
    feeds: list[FeedSpec] = field(default_factory=list)

    def add(self, feed_id: str, path: str) -> FeedSpec:
        spec = FeedSpec(id=feed_id, url=self.server.url(path), name=feed_id, lang="en", allow_private=True)
        self.feeds.append(spec)
        return spec

    def ctx(self, settings: Settings = SETTINGS) -> CycleContext:
        return CycleContext(config=Config(feeds=tuple(self.feeds), watchlists=()), settings=settings,
                            store=self.store, fetcher=self.fetcher, matcher=Matcher([]), console=True,
                            now=self.clock)

    def state(self, feed_id: str) -> FeedState:
        return self.store.feed_state(feed_id, "")

    def items(self, feed_id: str) -> int:
        since = datetime(2000, 1, 1, tzinfo=UTC)
        return sum(1 for i in self.store.items_since(since) if i.feed_id == feed_id)


@pytest.fixture
async def rig(tmp_path, feed_server):
    store = SqliteStore(tmp_path / "state" / "mediabot.db")
    fetcher = Fetcher.from_settings(Settings(user_agent=UA, max_body_bytes=256 * 1024, fetch_timeout=TOTAL))
    try:
        yield Rig(feed_server, store, fetcher, Clock())
    finally:
        await fetcher.aclose()
        store.close()


def _good(n: int, prefix: str) -> bytes:
    return rss([{"title": f"{prefix} story {i}", "link": f"https://good.example/{prefix}/{i}",
                 "guid": f"{prefix}-{i}", "ago": 10 + i} for i in range(n)])


def _trickle() -> Iterator[bytes]:
    yield b'<?xml version="1.0"?><rss version="2.0"><channel><title>slow</title>'
    while True:
        yield b" "


def _endless() -> Iterator[bytes]:
    chunk = b"<item><title>x</title></item>" * 2000
    while True:
        yield chunk


def _bomb() -> Iterator[bytes]:
    z = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    zeros = bytes(1024 * 1024)
    while True:
        out = z.compress(zeros)
        if out:
            yield out


def _fifty_mb() -> Iterator[bytes]:
    chunk = b"y" * (1024 * 1024)
    for _ in range(50):
        yield chunk


def _stall(server: FeedServer) -> Callable[..., None]:
    def handler(h: object) -> None:
        server.stopping.wait(3)
    return handler


HOSTILE: dict[str, tuple[Callable[[FeedServer], None], str]] = {
    "slow-body": (lambda s: s.stream("/bad", _trickle, delay=0.05), f"timed out after {TOTAL:g} s in total"),
    "stalled": (lambda s: s.routes.__setitem__("/bad", Route(handler=_stall(s))), "timed out"),
    "endless-body": (lambda s: s.stream("/bad", _endless), "body larger than 256 KB, cut off"),
    "gzip-bomb": (lambda s: s.stream("/bad", _bomb, headers={"Content-Encoding": "gzip"}),
                  "body larger than 256 KB, cut off"),
    "50-mb-body": (lambda s: s.stream("/bad", _fifty_mb), "body larger than 256 KB, cut off"),
    "html-page": (lambda s: s.routes.__setitem__("/bad", Route(body=(DATA / "html_page.html").read_bytes(),
                                                              headers={"Content-Type": "text/html"})),
                  "an HTML page, not a feed"),
    "empty-200": (lambda s: s.routes.__setitem__("/bad", Route(body=b"")), "empty document"),
    "malformed-xml": (lambda s: s.routes.__setitem__("/bad", Route(body=(DATA / "malformed.xml").read_bytes())),
                      "broken XML"),
    "404": (lambda s: s.routes.__setitem__("/bad", Route(status=404, body=b"no")), "not found (404)"),
    "500": (lambda s: s.routes.__setitem__("/bad", Route(status=500, body=b"oops")), "HTTP 500"),
    "503-retry-after": (lambda s: s.routes.__setitem__("/bad", Route(status=503, headers={"Retry-After": "30"})),
                        "service unavailable (503), retry after 30 s"),
    "redirect-loop": (lambda s: (s.redirect("/bad", "/bad2", 302), s.redirect("/bad2", "/bad", 302)),
                      "more than 5 redirects"),
    "redirect-to-ftp": (lambda s: s.redirect("/bad", "ftp://ftp.example/feed.xml", 301),
                        "refused: redirected to ftp: URL"),
    "redirect-to-file": (lambda s: s.redirect("/bad", "file:///etc/passwd", 302), "refused: redirected to file: URL"),
    "broken-gzip": (lambda s: s.routes.__setitem__("/bad", Route(body=b"garbage",
                                                                headers={"Content-Encoding": "gzip"})),
                    "broken compression"),
    "not-json-feed": (lambda s: s.routes.__setitem__("/bad", Route(body=b'{"a": 1}',
                                                                  headers={"Content-Type": "application/json"})),
                      "JSON that is not a JSON Feed"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
async def test_one_hostile_feed_gets_a_clear_status_and_the_others_are_polled(rig, case):
    setup, error = HOSTILE[case]
    setup(rig.server)
    rig.server.routes["/good1"] = Route(body=_good(3, "a"))
    rig.server.routes["/good2"] = Route(body=_good(2, "b"))
    rig.add("good1", "/good1")
    rig.add("bad", "/bad")
    rig.add("good2", "/good2")
    started = time.monotonic()
    report = await asyncio.wait_for(run_cycle(rig.ctx()), timeout=TOTAL + 3)
    elapsed = time.monotonic() - started
    assert elapsed < TOTAL + 1.5, f"cycle took {elapsed:.1f} s"
    assert sorted(report.feeds_ok) == ["good1", "good2"]
    assert (rig.items("good1"), rig.items("good2")) == (3, 2)
    assert list(report.feeds_failed) == ["bad"]
    bad = rig.state("bad")
    assert bad.last_error and error in bad.last_error, bad.last_error
    assert bad.failures == 1 and bad.last_success is None
    assert bad.next_poll is not None and bad.next_poll > rig.clock.now
    assert rig.state("good1").failures == 0 and rig.state("good1").last_error is None


async def test_failing_feed_backs_off_and_recovers(rig):
    rig.server.routes["/f"] = Route(status=500)
    rig.add("f", "/f")
    start = rig.clock.now
    await run_cycle(rig.ctx())
    first = rig.state("f")
    assert first.failures == 1 and first.last_error == "HTTP 500"
    rig.clock.now = first.next_poll
    await run_cycle(rig.ctx())
    second = rig.state("f")
    assert second.failures == 2
    assert second.next_poll - first.next_poll > first.next_poll - start  # 5 s ±20 %, then 10 s ±20 %
    rig.server.routes["/f"] = Route(body=_good(1, "f"))
    rig.clock.now = second.next_poll
    await run_cycle(rig.ctx())
    healed = rig.state("f")
    assert (healed.failures, healed.last_error, healed.last_success) == (0, None, rig.clock.now)
    assert rig.items("f") == 1


def test_backoff_grows_exponentially_with_jitter_inside_the_bounds():
    delays = [_backoff(n, None, SETTINGS) for n in range(1, 8)]
    assert 4 <= delays[0] <= 6  # min 5 s ± 20 %
    assert 8 <= delays[1] <= 12
    assert all(d <= SETTINGS.poll_max_interval * 1.2 for d in delays)
    assert len({round(_backoff(3, None, SETTINGS), 6) for _ in range(20)}) > 1  # jitter
    assert _backoff(1, 120.0, SETTINGS) == 120.0
    assert _backoff(1, 0.0, SETTINGS) == SETTINGS.poll_min_interval
    assert _backoff(1, 10**9, SETTINGS) == 86400.0


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_is_honoured_by_the_next_attempt(rig, status):
    rig.server.routes["/f"] = Route(status=status, headers={"Retry-After": "120"})
    rig.add("f", "/f")
    start = rig.clock.now
    await run_cycle(rig.ctx())
    state = rig.state("f")
    assert state.next_poll == start + timedelta(seconds=120)
    assert "retry after 120 s" in (state.last_error or "")
    rig.clock.advance(60)
    await run_cycle(rig.ctx())
    await run_cycle(rig.ctx(), ignore_schedule=True)  # poll --once also honours it
    assert rig.server.hits("/f") == 1
    rig.clock.advance(61)
    rig.server.routes["/f"] = Route(body=_good(1, "f"))
    await run_cycle(rig.ctx())
    assert rig.server.hits("/f") == 2 and rig.items("f") == 1


async def test_410_disables_the_feed_and_tells_the_admins(rig):
    rig.server.routes["/gone"] = Route(status=410)
    rig.add("gone", "/gone")
    await run_cycle(rig.ctx())
    state = rig.state("gone")
    assert state.disabled and state.last_error == "gone (410): the publisher removed this feed"
    notices = [r for r in rig.store.outbox_rows() if r.kind == "notice"]
    assert [r.chat_id for r in notices] == [ADMIN]
    assert "gone (HTTP 410)" in notices[0].payload and "gone" in notices[0].payload
    rig.clock.advance(86400)
    await run_cycle(rig.ctx())
    await run_cycle(rig.ctx(), ignore_schedule=True)
    assert rig.server.hits("/gone") == 1


async def test_404_is_not_disabling_but_slows_down(rig):
    rig.server.routes["/missing"] = Route(status=404)
    rig.add("missing", "/missing")
    await run_cycle(rig.ctx())
    state = rig.state("missing")
    assert not state.disabled and state.last_error == "not found (404)"
    assert state.next_poll >= rig.clock.now + timedelta(seconds=SETTINGS.poll_interval)


async def test_permanent_redirect_updates_the_stored_url(rig):
    rig.server.redirect("/old", "/new", 301)
    rig.server.routes["/new"] = Route(body=_good(2, "m"))
    rig.server.redirect("/tmp", "/new", 302)
    rig.add("moved", "/old")
    rig.add("temp", "/tmp")
    await run_cycle(rig.ctx())
    assert rig.state("moved").url == rig.server.url("/new")
    assert rig.state("temp").url == rig.server.url("/tmp")
    rig.clock.advance(3600)
    await run_cycle(rig.ctx())
    assert rig.server.hits("/old") == 1 and rig.server.hits("/tmp") == 2


async def test_304_on_conditional_requests(rig):
    rig.server.routes["/f"] = Route(body=_good(2, "c"), etag='"v1"')
    rig.add("f", "/f")
    await run_cycle(rig.ctx())
    assert rig.state("f").etag == '"v1"'
    rig.clock.advance(3600)
    report = await run_cycle(rig.ctx())
    assert report.feeds_not_modified == ["f"]
    assert rig.server.headers_of("/f")[1]["if-none-match"] == '"v1"'
    state = rig.state("f")
    assert state.failures == 0 and state.last_success == rig.clock.now and state.etag == '"v1"'


async def test_stale_validators_cannot_silence_a_feed_forever(rig):
    """The server keeps answering 304 to its old ETag although the feed changed; the periodic
    unconditional fetch (FULL_FETCH_EVERY) still finds the new item."""
    rig.server.routes["/f"] = Route(body=_good(1, "s"), etag='"stale"')
    rig.add("f", "/f")
    await run_cycle(rig.ctx())
    rig.server.routes["/f"] = Route(body=_good(2, "s"), etag='"stale"')
    rig.clock.advance(3600)
    assert (await run_cycle(rig.ctx())).feeds_not_modified == ["f"]
    assert rig.items("f") == 1
    rig.clock.advance(FULL_FETCH_EVERY.total_seconds())
    report = await run_cycle(rig.ctx())
    assert report.feeds_ok == ["f"] and rig.items("f") == 2
    assert "if-none-match" not in rig.server.headers_of("/f")[2]


async def test_unchanged_body_is_not_parsed_again_when_validators_are_ignored(rig):
    rig.server.routes["/f"] = Route(body=_good(2, "h"))
    rig.add("f", "/f")
    await run_cycle(rig.ctx())
    rig.clock.advance(3600)
    assert (await run_cycle(rig.ctx())).feeds_not_modified == ["f"]


async def test_wrong_content_type_and_compression_still_parse(rig):
    rig.server.routes["/html-type"] = Route(body=_good(2, "w"), headers={"Content-Type": "text/html; charset=latin-1"})
    rig.server.routes["/json-type"] = Route(body=_good(1, "j"), headers={"Content-Type": "application/json"})
    rig.server.routes["/gz"] = Route(body=gzip.compress(_good(3, "g")), headers={"Content-Encoding": "gzip"})
    rig.server.routes["/deflate"] = Route(body=zlib.compress(_good(1, "d")), headers={"Content-Encoding": "deflate"})
    rig.server.routes["/jf"] = Route(body=(DATA / "jsonfeed_1_1.json").read_bytes(),
                                     headers={"Content-Type": "application/feed+json"})
    for name in ("html-type", "json-type", "gz", "deflate", "jf"):
        rig.add(name, f"/{name}")
    report = await run_cycle(rig.ctx())
    assert sorted(report.feeds_ok) == ["deflate", "gz", "html-type", "jf", "json-type"]
    assert [rig.items(n) for n in ("html-type", "json-type", "gz", "deflate", "jf")] == [2, 1, 3, 1, 3]


async def test_entity_bombs_and_external_entities_do_not_hurt_the_cycle(rig, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT", encoding="utf-8")
    xxe = (f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY xxe SYSTEM "{secret.as_uri()}">]>'
           '<rss version="2.0"><channel><title>x</title><item><title>Leak &xxe;</title>'
           "<link>https://x.example/1</link></item></channel></rss>").encode()
    rig.server.routes["/laughs"] = Route(body=(DATA / "billion_laughs.xml").read_bytes())
    rig.server.routes["/xxe"] = Route(body=xxe)
    rig.server.routes["/good"] = Route(body=_good(1, "ok"))
    for name in ("laughs", "xxe", "good"):
        rig.add(name, f"/{name}")
    started = time.monotonic()
    report = await run_cycle(rig.ctx())
    assert time.monotonic() - started < 3
    assert "good" in report.feeds_ok and rig.items("good") == 1
    for item in rig.store.items_since(datetime(2000, 1, 1, tzinfo=UTC)):
        assert "TOP-SECRET" not in item.title + item.summary
        assert len(item.title) < 1000


async def test_feeds_without_guids_or_dates(rig):
    rig.server.routes["/bare"] = Route(body=(DATA / "rss_no_guid_no_date.xml").read_bytes())
    rig.add("bare", "/bare")
    await run_cycle(rig.ctx())
    assert rig.items("bare") == 4
    rig.server.routes["/bare"] = Route(body=(DATA / "rss_no_guid_no_date.xml").read_bytes() + b"\n")
    rig.clock.advance(3600)
    report = await run_cycle(rig.ctx())  # a changed body with the same items: nothing new
    assert report.feeds_ok == ["bare"] and report.new_items == 0 and rig.items("bare") == 4


async def test_ten_thousand_item_feed_beside_good_feeds(rig):
    parts = [f"<item><title>Bulk {i}</title><link>https://bulk.example/{i}</link><guid>b{i}</guid></item>"
             for i in range(10_000)]
    body = ('<?xml version="1.0"?><rss version="2.0"><channel><title>bulk</title>'
            + "".join(parts) + "</channel></rss>").encode()
    big = Fetcher(user_agent=UA, max_body=4 * 1024 * 1024, total_timeout=3)
    rig.fetcher, old = big, rig.fetcher
    try:
        rig.server.routes["/bulk"] = Route(body=body)
        rig.server.routes["/good"] = Route(body=_good(2, "n"))
        rig.add("bulk", "/bulk")
        rig.add("good", "/good")
        report = await run_cycle(rig.ctx())
    finally:
        rig.fetcher = old
        await big.aclose()
    assert sorted(report.feeds_ok) == ["bulk", "good"]
    assert rig.items("bulk") == 10_000 and rig.items("good") == 2


async def test_event_loop_stays_responsive_while_a_big_feed_parses(rig):
    parts = [f"<item><title>Bulk {i}</title><guid>b{i}</guid></item>" for i in range(5_000)]
    rig.server.routes["/bulk"] = Route(body=('<?xml version="1.0"?><rss version="2.0"><channel><title>b</title>'
                                            + "".join(parts) + "</channel></rss>").encode())
    rig.add("bulk", "/bulk")
    big = Fetcher(user_agent=UA, max_body=4 * 1024 * 1024, total_timeout=3)
    rig.fetcher, old = big, rig.fetcher
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    try:
        await run_cycle(rig.ctx())
    finally:
        task.cancel()
        rig.fetcher = old
        await big.aclose()
    assert gaps and max(gaps) < 0.5, f"the loop stalled for {max(gaps):.2f} s"


# --------------------------------------------------------------------------- adaptive interval

SPEC = FeedSpec(id="f", url="https://e.example/f", name="f", lang="en")
BOUNDS = Settings(poll_interval=60, poll_min_interval=30, poll_max_interval=600)


def test_interval_shrinks_while_publishing_and_grows_while_quiet_inside_the_bounds():
    state = FeedState("f", SPEC.url)
    busy = []
    for _ in range(6):
        state.interval = next_interval(SPEC, state, BOUNDS, new_items=3, hint=None)
        busy.append(state.interval)
    assert busy[0] == 30 and min(busy) >= BOUNDS.poll_min_interval
    quiet = []
    for _ in range(20):
        state.interval = next_interval(SPEC, state, BOUNDS, new_items=0, hint=None)
        quiet.append(state.interval)
    assert quiet == sorted(quiet) and max(quiet) <= BOUNDS.poll_max_interval


def test_ttl_and_max_age_hints_raise_the_interval_but_never_past_the_maximum():
    state = FeedState("f", SPEC.url)
    assert next_interval(SPEC, state, BOUNDS, new_items=5, hint=300) == 300
    assert next_interval(SPEC, state, BOUNDS, new_items=5, hint=86400) == BOUNDS.poll_max_interval
    assert next_interval(SPEC, state, BOUNDS, new_items=5, hint=1) == BOUNDS.poll_min_interval


async def test_rss_ttl_and_cache_control_reach_the_schedule(rig):
    ttl_feed = _good(1, "t").replace(b"<description>test</description>",
                                     b"<description>test</description><ttl>1</ttl>")
    rig.server.routes["/ttl"] = Route(body=ttl_feed)
    rig.server.routes["/cc"] = Route(body=_good(1, "c"), headers={"Cache-Control": "max-age=45"})
    rig.add("ttl", "/ttl")
    rig.add("cc", "/cc")
    settings = Settings(poll_interval=5, poll_min_interval=2, poll_max_interval=50)
    await run_cycle(rig.ctx(settings))
    ttl, cc = rig.state("ttl"), rig.state("cc")
    assert ttl.ttl == 60 and ttl.interval == 50  # a 60 s TTL, cut to the 50 s maximum
    assert ttl.next_poll == rig.clock.now + timedelta(seconds=50)
    assert cc.interval == 45


async def test_a_failing_streak_tells_the_admins_once_and_again_when_the_feed_is_back(rig):
    """Only a 410 used to reach the admins: a feed answering 500 for days was visible in /feeds only,
    which nobody asks in cron mode."""
    rig.server.routes["/broken"] = Route(status=500)
    rig.add("broken", "/broken")

    def notices() -> list[str]:
        return [r.payload for r in rig.store.outbox_rows() if r.kind == "notice"]

    for _ in range(FAILING_NOTICE_AFTER - 1):
        await run_cycle(rig.ctx())
        rig.clock.advance(3600)
    assert notices() == []  # a few failures are normal weather
    await run_cycle(rig.ctx())
    assert len(notices()) == 1 and "failed 5 times in a row" in notices()[0] and "HTTP 500" in notices()[0]
    for _ in range(3):
        rig.clock.advance(3600)
        await run_cycle(rig.ctx())
    assert rig.state("broken").failures == FAILING_NOTICE_AFTER + 3 and len(notices()) == 1
    rig.server.routes["/broken"] = Route(body=_good(1, "broken"))
    rig.clock.advance(3600)
    await run_cycle(rig.ctx())
    assert len(notices()) == 2 and "works again after 8 failed polls" in notices()[1]


async def test_the_cycle_report_names_feeds_left_out_while_they_back_off(rig):
    rig.server.routes["/broken"] = Route(status=500)
    rig.server.routes["/gone"] = Route(status=410)
    rig.server.routes["/ok"] = Route(body=_good(1, "ok"))
    for name in ("broken", "gone", "ok"):
        rig.add(name, f"/{name}")
    first = await run_cycle(rig.ctx(), ignore_schedule=True)
    assert set(first.feeds_failed) == {"broken", "gone"} and first.feeds_waiting == {}
    again = await run_cycle(rig.ctx(), ignore_schedule=True)  # cron a minute later: backoff holds
    assert again.feeds_failed == {} and set(again.feeds_waiting) == {"broken", "gone"}
    assert again.feeds_waiting["broken"].startswith("HTTP 500 (1× in a row, next try ")
    assert again.feeds_waiting["gone"].startswith("disabled: gone (410)")


async def test_a_store_that_cannot_be_written_is_said_in_words_and_the_feed_is_tried_again(rig, caplog):
    rig.server.routes["/f"] = Route(body=_good(2, "f"))
    rig.add("f", "/f")
    rig.store._db.execute("PRAGMA query_only=ON")  # as on a full disk
    try:
        report = await run_cycle(rig.ctx())
    finally:
        rig.store._db.execute("PRAGMA query_only=OFF")
    assert "f" in report.feeds_failed
    said = [r for r in caplog.records if "state store cannot be written" in r.getMessage()]
    assert said and said[0].exc_info is None  # one line, not a traceback
    await run_cycle(rig.ctx(), ignore_schedule=True)
    assert rig.items("f") == 2  # nothing was lost: the next poll records the items


async def test_half_an_emoji_in_a_json_feed_does_not_block_the_feed(rig):
    """A JSON Feed whose CMS cut a title inside an emoji ("\\ud83d" alone) made the store refuse the whole
    batch, at every poll, for as long as the item was listed: the feed's other items were lost too."""
    body = json.dumps({"version": "https://jsonfeed.org/version/1.1", "title": "J", "items": [
        {"id": "1", "url": "https://j.example/1", "title": "Kursk: Lage am Abend \ud83d",
         "summary": "Teaser \ud83d", "date_published": "2026-11-20T10:00:00Z"},
        {"id": "2", "url": "https://j.example/2", "title": "Zweite Meldung", "date_published": "2026-11-20T10:00:00Z"},
    ]}).encode()
    assert b"\\ud83d" in body  # escaped as a JS-based CMS writes it
    rig.server.routes["/jf"] = Route(body=body, headers={"Content-Type": "application/feed+json"})
    rig.add("jf", "/jf")
    report = await run_cycle(rig.ctx())
    assert report.feeds_ok == ["jf"] and rig.items("jf") == 2
    titles = sorted(i.title for i in rig.store.items_since(datetime(2000, 1, 1, tzinfo=UTC)))
    assert titles == ["Kursk: Lage am Abend \ufffd", "Zweite Meldung"]


async def test_a_store_that_cannot_write_does_not_make_every_feed_due_at_every_tick(rig):
    """With a full disk the next poll could not be saved: read back from the store, every feed was due at
    every tick (30 s), fetched and parsed for nothing, with two ERROR lines each time."""
    rig.server.routes["/f"] = Route(body=_good(1, "a"))
    rig.add("f", "/f")
    ctx = rig.ctx()  # one process: what it keeps in memory counts
    await run_cycle(ctx)
    rig.clock.advance(3600)
    rig.server.routes["/f"] = Route(body=_good(3, "b"))
    rig.store._db.execute("PRAGMA query_only=1")  # no write goes through (a full file system)
    assert "f" in (await run_cycle(ctx)).feeds_failed
    hits = rig.server.hits("/f")
    rig.clock.advance(2)  # the next tick, within the feed's backoff (at least poll_min_interval, 5 s here)
    await run_cycle(ctx)
    assert rig.server.hits("/f") == hits  # not due yet: its backoff holds without the store
    rig.store._db.execute("PRAGMA query_only=0")  # space again
    rig.clock.advance(3600)
    assert "f" in (await run_cycle(ctx)).feeds_ok and rig.items("f") == 4


async def test_items_a_full_disk_kept_out_of_the_store_are_recorded_once_it_has_room(rig):
    """The items could not be written but the feed's state could (a small update in place): it kept the new
    document's validators, so the next poll took the document as one it had read, and its items were lost."""
    rig.server.routes["/f"] = Route(body=_good(1, "a"))
    rig.add("f", "/f")
    await run_cycle(rig.ctx())
    rig.clock.advance(3600)
    rig.server.routes["/f"] = Route(body=_good(300, "b"))  # many new items: more than the file has room for
    pages = rig.store._db.execute("PRAGMA page_count").fetchone()[0]
    rig.store._db.execute(f"PRAGMA max_page_count={pages}")  # the file cannot grow: a full disk
    assert "f" in (await run_cycle(rig.ctx())).feeds_failed
    rig.store._db.execute("PRAGMA max_page_count=1073741823")
    rig.clock.advance(3600)
    assert "f" in (await run_cycle(rig.ctx())).feeds_ok and rig.items("f") == 301
