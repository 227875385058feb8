"""httpx adapter: one conditional GET of one feed -> FetchResult. Makes no decisions about items.

Limits: connect/read/total time, a body cap counted on the *decompressed* bytes while streaming
(a gzip bomb or an endless body is cut off early), at most 5 redirects over http(s) only,
a total and a per-host concurrency limit, and no requests to private or loopback addresses
unless the feed allows it (an edited YAML must not make the bot probe the internal network).
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import ipaddress
import logging
import socket
import time
import zlib
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from bot.config import Settings, is_private_address
from bot.models import FeedSpec, FeedState, FetchResult

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_ACCEPT = ("application/rss+xml, application/atom+xml, application/feed+json, application/xml;q=0.9, "
           "text/xml;q=0.9, */*;q=0.5")


class BodyTooLarge(Exception):
    """The body passed the size cap."""


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date), None when absent/invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def _max_age(cache_control: str | None) -> float | None:
    if not cache_control:
        return None
    for part in cache_control.split(","):
        name, _, value = part.strip().partition("=")
        if name.lower() in ("max-age", "s-maxage") and value.strip().isdigit():
            return float(value.strip())
    return None


class Fetcher:
    """Fetches feeds concurrently over one pooled httpx client."""

    def __init__(self, *, user_agent: str, max_body: int = 10 * 1024 * 1024, concurrency: int = 50,
                 per_host: int = 4, connect_timeout: float = 10.0, read_timeout: float = 20.0,
                 total_timeout: float = 60.0) -> None:
        self.max_body = max_body
        self.total_timeout = total_timeout
        self._client = httpx.AsyncClient(
            headers={"User-Agent": user_agent, "Accept": _ACCEPT, "Accept-Encoding": "gzip, deflate"},
            timeout=httpx.Timeout(connect=connect_timeout, read=read_timeout, write=10.0, pool=total_timeout),
            # Our semaphores bound concurrent requests; the pool gets headroom so a request never waits
            # inside httpcore for a connection that is still being released (httpcore rescans its whole
            # pool on every such wake-up, which cost seconds per 1,000-feed cycle).
            limits=httpx.Limits(max_connections=concurrency * 2, max_keepalive_connections=min(concurrency, 10)),
            follow_redirects=False,
            trust_env=False,
        )
        self._all = asyncio.Semaphore(concurrency)
        self._per_host: defaultdict[str, asyncio.Semaphore] = defaultdict(lambda: asyncio.Semaphore(per_host))

    @classmethod
    def from_settings(cls, settings: Settings) -> Fetcher:
        """A fetcher with the limits of MEDIABOT_* settings (MEDIABOT_FETCH_TIMEOUT bounds each request)."""
        total = settings.fetch_timeout
        return cls(user_agent=settings.user_agent, max_body=settings.max_body_bytes,
                   concurrency=settings.fetch_concurrency, per_host=settings.per_host_concurrency,
                   connect_timeout=min(10.0, total), read_timeout=min(20.0, total), total_timeout=total)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def fetch(self, spec: FeedSpec, state: FeedState, *, conditional: bool = True) -> FetchResult:
        """One GET with validators; never raises for network or HTTP trouble (see `error`)."""
        started = time.monotonic()
        url = state.url or spec.url
        try:
            result = await self._fetch(spec, state, url, conditional)
        except TimeoutError:
            result = FetchResult(spec.id, 0, error=f"timed out after {self.total_timeout:g} s in total")
        return dataclasses.replace(result, elapsed_ms=(time.monotonic() - started) * 1000)

    async def _fetch(self, spec: FeedSpec, state: FeedState, url: str, conditional: bool) -> FetchResult:
        headers: dict[str, str] = {}
        if conditional and state.etag:
            headers["If-None-Match"] = state.etag
        if conditional and state.last_modified:
            headers["If-Modified-Since"] = state.last_modified
        permanent = True
        deadline: float | None = None  # the total timeout starts once a slot is held, not while queued
        for hop in range(MAX_REDIRECTS + 1):
            try:
                parts = urlsplit(url)
                host = parts.hostname
            except ValueError:
                return FetchResult(spec.id, 0, error=f"invalid URL: {url[:200]}", transient=False)
            if parts.scheme not in ("http", "https") or not host:
                where = "redirected to" if hop else "the URL is"
                return FetchResult(spec.id, 0, transient=False,
                                   error=f"refused: {where} {parts.scheme or 'a'}: URL {url[:200]} "
                                         "(only http and https are fetched)")
            refusal = await self._refuse_private(host, spec.allow_private)
            if refusal:
                return FetchResult(spec.id, 0, error=refusal, transient=False)
            try:
                # Per-host slot first, then a global one: a feed queued behind its own busy host must
                # not hold one of the global slots that feeds on other hosts are waiting for.
                async with self._per_host[host.lower()], self._all:
                    if deadline is None:
                        deadline = asyncio.get_running_loop().time() + self.total_timeout
                    async with asyncio.timeout_at(deadline):
                        request = self._client.build_request("GET", url, headers=headers)
                        response = await self._client.send(request, stream=True)
                        try:
                            if response.status_code in _REDIRECTS:  # not is_redirect: httpx counts 304 as one
                                location = response.headers.get("location")
                                if not location:
                                    return FetchResult(spec.id, response.status_code,
                                                       error=f"redirect ({response.status_code}) without Location")
                                if response.status_code not in (301, 308):
                                    permanent = False
                                url = urljoin(url, location.strip())
                                continue
                            return await self._finish(spec, response, url, permanent and hop > 0)
                        finally:
                            await response.aclose()
            except httpx.TimeoutException as exc:
                return FetchResult(spec.id, 0, error=self._timeout_words(exc))
            except httpx.TransportError as exc:
                return FetchResult(spec.id, 0, error=f"connection failed: {_describe(exc)}")
            except httpx.HTTPError as exc:
                return FetchResult(spec.id, 0, error=f"HTTP error: {_describe(exc)}")
            except (httpx.InvalidURL, ValueError) as exc:  # e.g. a Location that is not a URL
                return FetchResult(spec.id, 0, error=f"invalid URL at or redirected from {url[:200]}: "
                                                     f"{_describe(exc)}", transient=False)
        return FetchResult(spec.id, 0, error=f"more than {MAX_REDIRECTS} redirects (a redirect loop?)")

    def _timeout_words(self, exc: httpx.TimeoutException) -> str:
        t = self._client.timeout
        if isinstance(exc, httpx.ConnectTimeout):
            return f"timed out connecting (no connection within {t.connect:g} s)"
        if isinstance(exc, httpx.ReadTimeout):
            return f"timed out waiting for data (nothing received for {t.read:g} s)"
        if isinstance(exc, httpx.PoolTimeout):
            return "timed out waiting for a free connection"
        return f"timed out ({type(exc).__name__})"

    async def _refuse_private(self, host: str, allowed: bool) -> str | None:
        if allowed:
            return None
        if host.lower() in ("localhost",) or host.lower().endswith(".localhost"):
            return f"refused: {host} is a loopback address (set allow_private: true to allow)"
        if is_private_address(host):
            return f"refused: {host} is a private or loopback address (set allow_private: true to allow)"
        try:
            ipaddress.ip_address(host.strip("[]"))
            return None  # a public literal address
        except ValueError:
            pass
        try:
            async with asyncio.timeout(self._client.timeout.connect or 10.0):
                infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except (OSError, TimeoutError):
            return None  # let the request fail with a clear DNS error
        for info in infos:
            if is_private_address(str(info[4][0])):
                return f"refused: {host} resolves to a private address {info[4][0]} (set allow_private: true to allow)"
        return None

    async def _finish(self, spec: FeedSpec, response: httpx.Response, url: str, moved: bool) -> FetchResult:
        now = datetime.now(UTC)
        status = response.status_code
        common: dict[str, Any] = {
            "feed_id": spec.id, "status": status, "final_url": url, "permanent_redirect": moved,
            "content_type": response.headers.get("content-type", ""),
            "max_age": _max_age(response.headers.get("cache-control")),
        }
        if status == 304:
            asked = response.request.headers
            if "if-none-match" not in asked and "if-modified-since" not in asked:
                # Nothing to be "not modified" against: counted as fine, it would hide a dead feed for ever
                return FetchResult(**common, error="answered 304 Not Modified to a request without validators "
                                                   "(If-None-Match/If-Modified-Since); no feed received")
            return FetchResult(**common, etag=response.headers.get("etag"),
                               last_modified=response.headers.get("last-modified"))
        if status in (429, 503):
            retry = parse_retry_after(response.headers.get("retry-after"), now)
            word = "rate limited (429)" if status == 429 else "service unavailable (503)"
            hint = f", retry after {retry:g} s" if retry is not None else ""
            return FetchResult(**common, error=f"{word}{hint}", retry_after=retry)
        if status == 410:
            return FetchResult(**common, error="gone (410): the publisher removed this feed",
                               transient=False)
        if status in (401, 403, 404, 451):
            words = {401: "needs a login (401)", 403: "access denied (403)", 404: "not found (404)",
                     451: "unavailable for legal reasons (451)"}
            return FetchResult(**common, error=words[status], transient=False)
        if status >= 400:
            return FetchResult(**common, error=f"HTTP {status}", transient=status >= 500)
        try:
            body = await self._read_capped(response)
        except BodyTooLarge:
            return FetchResult(**common, error=f"body larger than {_size(self.max_body)}, cut off",
                               transient=False)
        except _BadCompression as exc:
            return FetchResult(**common, error=f"broken compression: {exc}")
        return FetchResult(**common, body=body, etag=response.headers.get("etag"),
                           last_modified=response.headers.get("last-modified"))

    async def _read_capped(self, response: httpx.Response) -> bytes:
        """Read the body, decompressing it ourselves with a bound on every step.

        httpx's own decoders inflate a whole network chunk at once: 64 KB of a gzip bomb become
        ~64 MB in memory before any cap can look at them. Here zlib gets `max_length`, so memory
        stays near `max_body` however the bytes are compressed.
        """
        coding = response.headers.get("content-encoding", "").strip().lower()
        declared = response.headers.get("content-length", "")
        if coding in ("", "identity") and declared.isdigit() and int(declared) > self.max_body:
            raise BodyTooLarge  # refuse before reading a byte
        inflater = _Inflater(coding)
        out = bytearray()
        async for raw in response.aiter_raw(65536):
            out += inflater.feed(raw, self.max_body - len(out))
            if len(out) > self.max_body:
                raise BodyTooLarge
        out += inflater.flush(self.max_body - len(out))
        if len(out) > self.max_body:
            raise BodyTooLarge
        return bytes(out)


class _BadCompression(Exception):
    """The body's Content-Encoding is unknown or its bytes do not inflate."""


class _Inflater:
    """gzip/deflate decoding with bounded output per call (RFC 9110 section 8.4.1)."""

    def __init__(self, coding: str) -> None:
        self._coding = coding
        self._first = True
        if coding in ("", "identity"):
            self._z: Any = None
        elif coding in ("gzip", "x-gzip"):
            self._z = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif coding == "deflate":
            self._z = zlib.decompressobj()
        else:
            raise _BadCompression(f"unsupported Content-Encoding {coding[:40]!r}")

    def feed(self, data: bytes, room: int) -> bytes:
        """Inflate `data`, producing at most `room + 1` bytes (one more than allowed means too large)."""
        if self._z is None:
            return data[: room + 1]
        out: list[bytes] = []
        produced = 0
        while data and produced <= room:
            try:
                chunk = self._z.decompress(data, room + 1 - produced)
            except zlib.error as exc:
                if self._first and self._coding == "deflate":  # raw deflate without the zlib header
                    self._first = False
                    self._z = zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                raise _BadCompression(str(exc)) from exc
            self._first = False
            out.append(chunk)
            produced += len(chunk)
            data = self._z.unconsumed_tail
            if self._z.eof:
                data = self._z.unused_data
                if data and self._coding in ("gzip", "x-gzip"):  # a multi-member gzip stream
                    self._z = zlib.decompressobj(zlib.MAX_WBITS | 16)
                else:
                    break
        return b"".join(out)

    def flush(self, room: int) -> bytes:
        """What zlib still holds, at most `room + 1` bytes."""
        if self._z is None:
            return b""
        try:
            return bytes(self._z.flush())[: room + 1]
        except zlib.error as exc:
            raise _BadCompression(str(exc)) from exc


def _size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):g} MB"
    if n >= 1024:
        return f"{n / 1024:g} KB"
    return f"{n} bytes"


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:200]
