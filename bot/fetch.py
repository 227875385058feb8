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
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from bot.models import FeedSpec, FeedState, FetchResult

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 5
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


def _is_private_ip(ip: str) -> bool:
    try:
        addr = ipaddress.ip_address(ip.split("%")[0])
    except ValueError:
        return False
    return (addr.is_private or addr.is_loopback or addr.is_link_local or addr.is_reserved
            or addr.is_multicast or addr.is_unspecified)


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
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            follow_redirects=False,
            trust_env=False,
        )
        self._all = asyncio.Semaphore(concurrency)
        self._per_host: defaultdict[str, asyncio.Semaphore] = defaultdict(lambda: asyncio.Semaphore(per_host))

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def fetch(self, spec: FeedSpec, state: FeedState, *, conditional: bool = True) -> FetchResult:
        """One GET with validators; never raises for network or HTTP trouble (see `error`)."""
        started = time.monotonic()
        url = state.url or spec.url
        try:
            async with asyncio.timeout(self.total_timeout):
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
        for hop in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                return FetchResult(spec.id, 0, error=f"refused: {parts.scheme or 'no'} scheme in {url[:200]}",
                                   transient=False)
            refusal = await self._refuse_private(parts.hostname, spec.allow_private)
            if refusal:
                return FetchResult(spec.id, 0, error=refusal, transient=False)
            host_key = parts.hostname.lower()
            try:
                async with self._all, self._per_host[host_key]:
                    request = self._client.build_request("GET", url, headers=headers)
                    response = await self._client.send(request, stream=True)
                    try:
                        if response.is_redirect:
                            location = response.headers.get("location")
                            if not location:
                                return FetchResult(spec.id, response.status_code,
                                                   error=f"redirect ({response.status_code}) without Location")
                            if response.status_code not in (301, 308):
                                permanent = False
                            url = urljoin(url, location)
                            continue
                        return await self._finish(spec, response, url, permanent and hop > 0)
                    finally:
                        await response.aclose()
            except httpx.TimeoutException as exc:
                return FetchResult(spec.id, 0, error=f"timed out ({type(exc).__name__})")
            except httpx.TransportError as exc:
                return FetchResult(spec.id, 0, error=f"connection failed: {_describe(exc)}")
            except httpx.HTTPError as exc:
                return FetchResult(spec.id, 0, error=f"HTTP error: {_describe(exc)}")
        return FetchResult(spec.id, 0, error=f"more than {MAX_REDIRECTS} redirects (loop?)")

    async def _refuse_private(self, host: str, allowed: bool) -> str | None:
        if allowed:
            return None
        if host.lower() in ("localhost",) or host.lower().endswith(".localhost"):
            return f"refused: {host} is a loopback address (set allow_private: true to allow)"
        if _is_private_ip(host.strip("[]")):
            return f"refused: {host} is a private or loopback address (set allow_private: true to allow)"
        try:
            ipaddress.ip_address(host.strip("[]"))
            return None  # a public literal address
        except ValueError:
            pass
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except OSError:
            return None  # let the request fail with a clear DNS error
        for info in infos:
            if _is_private_ip(str(info[4][0])):
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
            return FetchResult(**common, error=f"body larger than {self.max_body // (1024 * 1024)} MB, cut off",
                               transient=False)
        except httpx.DecodingError as exc:
            return FetchResult(**common, error=f"broken compression: {_describe(exc)}")
        return FetchResult(**common, body=body, etag=response.headers.get("etag"),
                           last_modified=response.headers.get("last-modified"))

    async def _read_capped(self, response: httpx.Response) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes(65536):  # decompressed: the cap holds for gzip bombs
            size += len(chunk)
            if size > self.max_body:
                raise BodyTooLarge
            chunks.append(chunk)
        return b"".join(chunks)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:200]
