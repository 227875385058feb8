"""The httpx adapter against a real loopback feed server: validators, redirects, schemes, private
addresses, timeouts, size caps on decompressed bytes, compression, status codes -> plain words."""

from __future__ import annotations

import asyncio
import gzip
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from bot.config import Settings, load_settings
from bot.errors import ConfigError
from bot.fetch import Fetcher, parse_retry_after
from bot.models import FeedSpec, FeedState
from tests.servers import FeedServer, Route, rss

UA = "mediabot-test/1.0 (+https://contact.example/bot)"
FEED = rss([{"title": "One", "link": "https://e.example/1", "guid": "1", "ago": 5}])


def _spec(server: FeedServer, path: str, *, allow_private: bool = True) -> FeedSpec:
    return FeedSpec(id="f", url=server.url(path), name="F", lang="en", allow_private=allow_private)


def _state(spec: FeedSpec, **kw) -> FeedState:
    return FeedState(feed_id=spec.id, url=spec.url, **kw)


@pytest.fixture
async def fetcher():
    f = Fetcher(user_agent=UA, max_body=256 * 1024, connect_timeout=1, read_timeout=1, total_timeout=2)
    try:
        yield f
    finally:
        await f.aclose()


async def test_user_agent_names_the_bot_and_contact(feed_server, fetcher):
    feed_server.routes["/f"] = Route(body=FEED)
    spec = _spec(feed_server, "/f")
    result = await fetcher.fetch(spec, _state(spec))
    assert result.status == 200 and result.body == FEED and result.error is None
    headers = feed_server.headers_of("/f")[0]
    assert headers["user-agent"] == UA
    assert "gzip" in headers["accept-encoding"]


async def test_conditional_get_sends_validators_and_maps_304(feed_server, fetcher):
    feed_server.routes["/f"] = Route(body=FEED, etag='"v1"', headers={"Last-Modified": "Wed, 01 Jan 2026 00:00:00 GMT"})
    spec = _spec(feed_server, "/f")
    first = await fetcher.fetch(spec, _state(spec))
    assert first.etag == '"v1"' and first.last_modified
    second = await fetcher.fetch(spec, _state(spec, etag=first.etag, last_modified=first.last_modified))
    assert second.status == 304 and second.body is None and second.error is None
    sent = feed_server.headers_of("/f")[1]
    assert sent["if-none-match"] == '"v1"' and sent["if-modified-since"] == first.last_modified
    unconditional = await fetcher.fetch(spec, _state(spec, etag='"v1"'), conditional=False)
    assert unconditional.status == 200 and "if-none-match" not in feed_server.headers_of("/f")[2]


async def test_304_to_a_request_without_validators_is_an_error_not_a_healthy_feed(feed_server, fetcher):
    """A broken server (or cache) that always answers 304 never delivered a document: counted as
    "unchanged" it looked healthy for ever, also to the 4-hourly unconditional fetch meant to catch it."""
    feed_server.routes["/f"] = Route(status=304)
    spec = _spec(feed_server, "/f")
    result = await fetcher.fetch(spec, _state(spec))
    assert result.error is not None and "304 Not Modified to a request without validators" in result.error
    forced = await fetcher.fetch(spec, _state(spec, etag='"v1"'), conditional=False)
    assert forced.error is not None
    asked = await fetcher.fetch(spec, _state(spec, etag='"v1"'))
    assert asked.status == 304 and asked.error is None  # with a validator sent, 304 is the normal answer


async def test_redirect_chain_is_followed_and_permanence_reported(feed_server, fetcher):
    feed_server.routes["/final"] = Route(body=FEED)
    feed_server.redirect("/a", "/b", 301)
    feed_server.redirect("/b", feed_server.url("/final"), 308)
    feed_server.redirect("/t", "/final", 302)
    spec = _spec(feed_server, "/a")
    moved = await fetcher.fetch(spec, _state(spec))
    assert moved.body == FEED and moved.permanent_redirect and moved.final_url == feed_server.url("/final")
    spec = _spec(feed_server, "/t")
    temporary = await fetcher.fetch(spec, _state(spec))
    assert temporary.body == FEED and not temporary.permanent_redirect


async def test_redirect_loop_stops_after_five_hops(feed_server, fetcher):
    feed_server.redirect("/x", "/y", 302)
    feed_server.redirect("/y", "/x", 302)
    spec = _spec(feed_server, "/x")
    result = await fetcher.fetch(spec, _state(spec))
    assert result.error == "more than 5 redirects (a redirect loop?)"
    assert feed_server.hits("/x") + feed_server.hits("/y") == 6


@pytest.mark.parametrize("target", ["ftp://files.example/feed.xml", "file:///etc/passwd", "javascript:alert(1)"])
async def test_redirect_to_another_scheme_is_refused(feed_server, fetcher, target):
    feed_server.redirect("/r", target, 302)
    spec = _spec(feed_server, "/r")
    result = await fetcher.fetch(spec, _state(spec))
    assert result.error and not result.transient
    if target.startswith(("ftp", "file")):
        assert result.error.startswith("refused: redirected to") and "only http and https" in result.error
    else:  # httpx itself rejects it while reading the Location
        assert result.error.startswith("invalid URL")


async def test_private_address_refused_unless_allowed(feed_server, fetcher):
    feed_server.routes["/f"] = Route(body=FEED)
    spec = _spec(feed_server, "/f", allow_private=False)
    result = await fetcher.fetch(spec, _state(spec))
    assert result.error and "allow_private" in result.error and not result.transient
    assert feed_server.hits("/f") == 0


async def test_private_link_local_and_loopback_hosts_are_refused(fetcher):
    """Checked before every request, so a redirect target is checked like the first URL."""
    for host in ("127.0.0.1", "localhost", "feeds.localhost", "[::1]", "10.1.2.3", "169.254.169.254",
                 "100.64.0.1", "[::ffff:127.0.0.1]", "0.0.0.0", "[fd00::1]", "2130706433"):
        refusal = await fetcher._refuse_private(host, allowed=False)
        assert refusal and "allow_private: true" in refusal, host
    assert await fetcher._refuse_private("203.0.113.1", allowed=True) is None
    assert await fetcher._refuse_private("8.8.8.8", allowed=False) is None  # a public literal: no DNS


ADDRESSES = {  # host -> private?
    "100.64.0.1": True, "224.0.0.1": True, "[ff02::1]": True, "[64:ff9b::a00:1]": True,  # NAT64 to 10.0.0.1
    "[2002:a00:1::1]": True, "[::ffff:10.0.0.1]": True, "10.0.0.1": True, "[fe80::1]": True,
    "8.8.8.8": False, "[2001:4860:4860::8888]": False, "[64:ff9b::808:808]": False,  # NAT64 to 8.8.8.8
}


@pytest.mark.parametrize(("host", "private"), ADDRESSES.items())
async def test_check_and_the_fetcher_agree_on_what_a_private_address_is(tmp_path, fetcher, host, private):
    """A feed `check` accepts must not be refused at every poll (carrier-grade NAT and multicast were), and
    a feed the fetcher would fetch must not be one `check` rejects (NAT64 to an internal address was)."""
    from bot.config import load_config

    (tmp_path / "feeds.yaml").write_text(f"feeds:\n  - id: a\n    url: http://{host}/feed.xml\n")
    (tmp_path / "w.yaml").write_text("description: d\ngroups:\n  a: [Kursk]\n")
    try:
        load_config(tmp_path)
        check_refuses = False
    except ConfigError as exc:
        assert "private or loopback" in str(exc)
        check_refuses = True
    fetch_refuses = await fetcher._refuse_private(host, allowed=False) is not None
    assert (check_refuses, fetch_refuses) == (private, private)


def test_fetch_timeout_comes_from_the_environment():
    assert load_settings({"MEDIABOT_FETCH_TIMEOUT": "5"}).fetch_timeout == 5.0
    assert load_settings({"MEDIABOT_FETCH_TIMEOUT": "2m"}).fetch_timeout == 120.0
    assert load_settings({}).fetch_timeout == 60.0
    with pytest.raises(ConfigError):
        load_settings({"MEDIABOT_FETCH_TIMEOUT": "soon"})


def _trickle() -> Iterator[bytes]:
    yield b'<?xml version="1.0"?><rss version="2.0"><channel><title>slow</title>'
    while True:
        yield b" "


async def test_slow_body_is_cut_by_the_total_timeout(feed_server):
    feed_server.stream("/slow", _trickle, delay=0.05)  # a byte every 50 ms: the read timeout never fires
    async with asyncio.timeout(5):
        f = Fetcher(user_agent=UA, read_timeout=1, total_timeout=0.5)
        try:
            spec = _spec(feed_server, "/slow")
            started = time.monotonic()
            result = await f.fetch(spec, _state(spec))
        finally:
            await f.aclose()
    assert result.error == "timed out after 0.5 s in total"
    assert result.transient and time.monotonic() - started < 1.5


async def test_stalled_server_hits_the_read_timeout(feed_server):
    def stall(h):
        feed_server.stopping.wait(3)

    feed_server.routes["/stall"] = Route(handler=stall)
    f = Fetcher(user_agent=UA, read_timeout=0.3, total_timeout=2)
    try:
        spec = _spec(feed_server, "/stall")
        result = await f.fetch(spec, _state(spec))
    finally:
        await f.aclose()
    assert result.error == "timed out waiting for data (nothing received for 0.3 s)"


def _endless() -> Iterator[bytes]:
    chunk = b"<item><title>x</title></item>" * 2000
    while True:
        yield chunk


async def test_endless_body_is_cut_at_the_size_cap(feed_server, fetcher):
    feed_server.stream("/endless", _endless)
    spec = _spec(feed_server, "/endless")
    result = await fetcher.fetch(spec, _state(spec))
    assert result.error == "body larger than 256 KB, cut off" and result.body is None
    assert not result.transient


async def test_50_mb_body_is_cut_early_with_or_without_content_length(feed_server):
    big = b"x" * (50 * 1024 * 1024)
    feed_server.routes["/declared"] = Route(body=big)

    def fifty_mb() -> Iterator[bytes]:
        chunk = b"y" * (1024 * 1024)
        for _ in range(50):
            yield chunk

    feed_server.stream("/undeclared", fifty_mb)
    f = Fetcher(user_agent=UA, max_body=1024 * 1024, total_timeout=4)
    try:
        for path in ("/declared", "/undeclared"):
            spec = _spec(feed_server, path)
            started = time.monotonic()
            result = await f.fetch(spec, _state(spec))
            assert result.error == "body larger than 1 MB, cut off", path
            assert time.monotonic() - started < 2
    finally:
        await f.aclose()
    await asyncio.sleep(0.2)
    assert feed_server.sent.get("/undeclared", 0) < 20 * 1024 * 1024  # the server was made to stop


def _gzip_bomb() -> Iterator[bytes]:
    """An endless gzip stream of zeros: ~1000:1, so every 64 KB on the wire is ~64 MB inflated."""
    z = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    zeros = bytes(1024 * 1024)
    yield z.compress(b'<?xml version="1.0"?><rss version="2.0"><channel><title>')
    while True:
        out = z.compress(zeros)
        if out:
            yield out


async def test_gzip_bomb_is_cut_early_and_memory_stays_bounded(feed_server):
    feed_server.stream("/bomb", _gzip_bomb, headers={"Content-Encoding": "gzip"})
    f = Fetcher(user_agent=UA, max_body=512 * 1024, total_timeout=4)
    spec = _spec(feed_server, "/bomb")
    tracemalloc.start()
    try:
        result = await f.fetch(spec, _state(spec))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        await f.aclose()
    assert result.error == "body larger than 512 KB, cut off"
    assert peak < 8 * 1024 * 1024, f"peak {peak} bytes while inflating a bomb with a 512 KB cap"


@pytest.mark.parametrize("coding", ["gzip", "deflate", "raw-deflate"])
async def test_compressed_bodies_are_inflated(feed_server, fetcher, coding):
    if coding == "gzip":
        data = gzip.compress(FEED)
    elif coding == "deflate":
        data = zlib.compress(FEED)
    else:  # some servers send raw deflate without the zlib wrapper
        z = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        data = z.compress(FEED) + z.flush()
    feed_server.routes["/z"] = Route(body=data, headers={"Content-Encoding": coding.replace("raw-", "")})
    spec = _spec(feed_server, "/z")
    result = await fetcher.fetch(spec, _state(spec))
    assert result.error is None and result.body == FEED


async def test_broken_and_unknown_compression_are_plain_errors(feed_server, fetcher):
    feed_server.routes["/broken"] = Route(body=b"not gzip at all", headers={"Content-Encoding": "gzip"})
    feed_server.routes["/br"] = Route(body=b"\x00\x01", headers={"Content-Encoding": "br"})
    spec = _spec(feed_server, "/broken")
    broken = await fetcher.fetch(spec, _state(spec))
    assert broken.error and broken.error.startswith("broken compression:")
    spec = _spec(feed_server, "/br")
    unknown = await fetcher.fetch(spec, _state(spec))
    assert unknown.error == "broken compression: unsupported Content-Encoding 'br'"


@pytest.mark.parametrize(
    ("status", "headers", "error", "transient", "retry"),
    [
        (429, {"Retry-After": "120"}, "rate limited (429), retry after 120 s", True, 120.0),
        (503, {"Retry-After": "7"}, "service unavailable (503), retry after 7 s", True, 7.0),
        (503, {}, "service unavailable (503)", True, None),
        (404, {}, "not found (404)", False, None),
        (410, {}, "gone (410): the publisher removed this feed", False, None),
        (403, {}, "access denied (403)", False, None),
        (500, {}, "HTTP 500", True, None),
    ],
)
async def test_error_statuses_become_plain_words(feed_server, fetcher, status, headers, error, transient, retry):
    feed_server.routes["/e"] = Route(status=status, body=b"nope", headers=headers)
    spec = _spec(feed_server, "/e")
    result = await fetcher.fetch(spec, _state(spec))
    assert (result.status, result.error, result.transient, result.retry_after) == (status, error, transient, retry)


async def test_cache_control_max_age_is_reported(feed_server, fetcher):
    feed_server.routes["/f"] = Route(body=FEED, headers={"Cache-Control": "public, max-age=900"})
    spec = _spec(feed_server, "/f")
    assert (await fetcher.fetch(spec, _state(spec))).max_age == 900


def test_retry_after_http_date_and_garbage():
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("Thu, 01 Jan 2026 12:05:00 GMT", now) == 300
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now) == 0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


async def test_a_busy_host_does_not_hold_slots_other_hosts_need(feed_server):
    """127.0.0.1 and localhost are different hosts to the limiter: two slow feeds on one must not
    keep the fast feed on the other waiting, even with only two slots in total."""
    feed_server.stream("/slow", _trickle, delay=0.05)
    feed_server.routes["/fast"] = Route(body=FEED)
    f = Fetcher(user_agent=UA, concurrency=2, per_host=1, total_timeout=1.0)
    slow = [FeedSpec(id=f"s{i}", url=feed_server.url("/slow"), name="s", lang="", allow_private=True)
            for i in range(2)]
    fast = FeedSpec(id="fast", url=feed_server.url("/fast").replace("127.0.0.1", "localhost"), name="f",
                    lang="", allow_private=True)
    try:
        tasks = [asyncio.create_task(f.fetch(s, _state(s))) for s in slow]
        await asyncio.sleep(0.1)
        started = time.monotonic()
        result = await f.fetch(fast, _state(fast))
        assert result.body == FEED and time.monotonic() - started < 0.8
        await asyncio.gather(*tasks)
    finally:
        await f.aclose()


def test_fetcher_from_settings_uses_the_fetch_timeout():
    f = Fetcher.from_settings(Settings(fetch_timeout=3.0, user_agent=UA, max_body_bytes=1234))
    assert f.total_timeout == 3.0 and f.max_body == 1234
    assert f._client.timeout.connect == 3.0 and f._client.timeout.read == 3.0
    asyncio.run(f.aclose())
