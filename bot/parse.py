"""Feed bytes -> Items. Pure: feedparser is only ever given bytes, never a URL.

RSS 0.9x/1.0/2.0 and Atom go through feedparser; JSON Feed 1.x through a small reader here
(feedparser has none). Text is stripped to plain text for matching and display; dates are UTC,
missing dates become the first-seen time and dates in the future are clamped to now.
"""

from __future__ import annotations

import calendar
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin
from xml.sax import SAXParseException

import feedparser

from bot.dedup import canonical_link, identity_keys, parse_published
from bot.errors import ParseError
from bot.fastparse import parse_well_formed
from bot.models import MAX_SUMMARY, MAX_TITLE, FeedSpec, Item
from bot.text import html_to_text, repair_mojibake, shorten

# feedparser options: we strip HTML to text ourselves and escape everything we send, so its
# sanitizer and relative-URI rewriting inside content are wasted work (FACTS.md: ~30-40% faster).
_FP_OPTIONS: dict[str, Any] = {"sanitize_html": False, "resolve_relative_uris": False}


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    """One parsed document: its items and the publisher's refresh hint (RSS <ttl>, sy:updatePeriod)."""

    items: list[Item]
    ttl: float | None = None  # seconds


def parse_feed(body: bytes, spec: FeedSpec, now: datetime, url: str | None = None,
               content_type: str = "") -> list[Item]:
    """Parse one fetched document into items. Raises ParseError when it is not a feed at all."""
    return parse_document(body, spec, now, url, content_type).items


def parse_document(body: bytes, spec: FeedSpec, now: datetime, url: str | None = None,
                   content_type: str = "") -> ParsedFeed:
    """Parse one fetched document: items plus TTL hint. Raises ParseError when it is not a feed."""
    base = url or spec.url
    stripped = body.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not stripped:
        raise ParseError("empty document")
    # The body decides, not the Content-Type: servers label feeds text/html, application/json,
    # application/octet-stream... A JSON Feed starts with "{", an XML document with "<".
    if stripped[:1] == b"{" or (stripped[:1] != b"<" and "json" in content_type.lower()):
        return ParsedFeed(_parse_json_feed(stripped, spec, now, base))
    headers = {"content-location": base}
    if content_type and _is_xml_type(content_type):
        headers["content-type"] = content_type
    parsed = (parse_well_formed(body, headers.get("content-type", ""))  # fast path; None: feedparser
              or feedparser.parse(body, response_headers=headers, **_FP_OPTIONS))
    entries = parsed.get("entries") or []
    if not entries:
        version = parsed.get("version") or ""
        if not version:
            head = stripped[:1024].lower()
            if b"<html" in head or b"<!doctype html" in head:
                raise ParseError("an HTML page, not a feed (the feed URL may have moved)")
            exc = parsed.get("bozo_exception")
            raise ParseError(f"not a feed ({_reason(exc)})" if exc else "not a feed (no RSS or Atom root element)")
        exc = parsed.get("bozo_exception")
        if isinstance(exc, SAXParseException):  # recovered nothing from broken XML: say so
            raise ParseError(f"broken XML, no items ({_reason(exc)})")
        return ParsedFeed([], _ttl(parsed.get("feed", {})))
    feed = parsed.get("feed", {})
    feed_lang = (spec.lang or str(feed.get("language") or "")).lower()[:8]
    items: list[Item] = []
    for entry in entries:
        item = _entry_to_item(entry, spec, now, base, feed_lang)
        if item is not None:
            items.append(item)
    exc = parsed.get("bozo_exception")
    if not items and isinstance(exc, SAXParseException):  # broken inside its first item: not a good poll
        raise ParseError(f"broken XML, no items ({_reason(exc)})")
    return ParsedFeed(items, _ttl(feed))


def _is_xml_type(content_type: str) -> bool:
    """Only an XML media type's charset is worth passing on; text/html or text/plain labels on a feed
    are mistakes, and feedparser would let their (default) charset override the XML declaration."""
    media = content_type.split(";")[0].strip().lower()
    return media.endswith(("/xml", "+xml"))


_SY_PERIODS = {"hourly": 3600.0, "daily": 86400.0, "weekly": 604800.0, "monthly": 2592000.0,
               "yearly": 31536000.0}


def _ttl(feed: Mapping[str, Any]) -> float | None:
    """RSS 2.0 <ttl> (minutes, https://www.rssboard.org/rss-specification#ltttlgtSubelementOfLtchannelgt),
    else RSS 1.0 sy:updatePeriod / sy:updateFrequency, in seconds; None when absent or nonsense."""
    raw = str(feed.get("ttl") or "").strip()
    if raw.isdigit() and int(raw) > 0:
        return min(float(raw) * 60.0, 7 * 86400.0)
    period = _SY_PERIODS.get(str(feed.get("sy_updateperiod") or "").strip().lower())
    if period is None:
        return None
    freq = str(feed.get("sy_updatefrequency") or "1").strip()
    times = int(freq) if freq.isdigit() and int(freq) > 0 else 1
    return period / times


def _reason(exc: BaseException) -> str:
    text = str(exc) or exc.__class__.__name__
    return text.replace("<unknown>:", "line ")[:200]


def _struct_to_dt(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(value), tz=UTC)
    except (TypeError, ValueError, OverflowError):
        return None


# Bidirectional embeddings, overrides and isolates: one left open in a headline (U+202E) shows the alert's
# text reversed in Telegram, and nothing in a news item needs them.
_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")


def _readable(raw: str) -> str:
    """Feed HTML as plain text, double-encoded UTF-8 repaired before (a no-break space turns into a plain
    one on the way) and after (mojibake spelled as entities) the HTML is read; bidi controls dropped."""
    text = repair_mojibake(html_to_text(repair_mojibake(raw)))
    return _BIDI_CONTROLS.sub("", text) if not text.isascii() else text


def _entry_to_item(entry: Mapping[str, Any], spec: FeedSpec, now: datetime, base: str,
                   feed_lang: str) -> Item | None:
    title = shorten(_readable(str(entry.get("title") or "")), MAX_TITLE)
    summary_raw = entry.get("summary") or ""
    if not summary_raw:
        content = entry.get("content") or []
        if content:
            summary_raw = content[0].get("value") or ""
    summary = _readable(str(summary_raw))[:MAX_SUMMARY]
    link = str(entry.get("link") or "").strip()
    if not link:
        for candidate in entry.get("links") or []:
            if candidate.get("href") and candidate.get("rel", "alternate") == "alternate":
                link = str(candidate["href"]).strip()
                break
    guid = str(entry.get("id") or entry.get("guid") or "").strip()
    if not link and guid.startswith(("http://", "https://")):
        link = guid
    if link:
        link = urljoin(base, link)
    if not title and not summary:
        return None
    published = _struct_to_dt(entry.get("published_parsed")) or _struct_to_dt(entry.get("updated_parsed"))
    return make_item(spec, title, summary, link, guid, published, now,
                     lang=str(entry.get("language") or feed_lang or "").lower()[:8])


_SURROGATE = re.compile(r"[\ud800-\udfff]")
_FIRST_FEED_YEAR = 1999  # RSS 0.90; a news feed item dated before it carries a placeholder


def make_item(spec: FeedSpec, title: str, summary: str, link: str, guid: str,
              published: datetime | None, now: datetime, lang: str = "") -> Item:
    """Build an Item from already-plain fields: canonical link, identity key, clamped date. An item
    without a title (posts bridged from Telegram channels and social networks) is headed by its text,
    cut at a word."""
    if _SURROGATE.search(f"{title}{summary}{link}{guid}{lang}"):
        # A JSON Feed's "\\ud83d" escape (a title cut inside an emoji) decodes to half a character, which the
        # store (UTF-8) and Telegram refuse: the whole feed's batch failed at every poll.
        title, summary, link, guid, lang = (_SURROGATE.sub("\ufffd", v) for v in (title, summary, link, guid, lang))
    title = title or shorten(summary, 120)
    canon = canonical_link(link)
    if published is not None and published.year < _FIRST_FEED_YEAR:
        published = None  # a placeholder (a zero Unix time, 1900, year 1), not a date
    dated = published is not None
    when = published or now
    if when > now:
        when = now
    key = identity_keys(spec.id, guid, canon, title, spec.identity)[0]
    return Item(
        key=key, feed_id=spec.id, title=title, summary=summary, link=link, canonical_link=canon,
        guid=guid, published=when, lang=lang or spec.lang, source=spec.name, dated=dated,
    )


def _parse_json_feed(body: bytes, spec: FeedSpec, now: datetime, base: str) -> list[Item]:
    """JSON Feed 1.0/1.1 (https://www.jsonfeed.org/version/1.1/)."""
    try:
        doc = json.loads(body.decode("utf-8-sig", errors="replace"))
    except (ValueError, RecursionError) as exc:
        raise ParseError(f"invalid JSON: {exc}") from exc
    if not isinstance(doc, dict) or "jsonfeed.org" not in str(doc.get("version", "")):
        raise ParseError("JSON that is not a JSON Feed (no jsonfeed.org version)")
    entries = doc.get("items")
    if not isinstance(entries, list):
        raise ParseError("JSON Feed without an `items` list")
    feed_lang = (spec.lang or str(doc.get("language") or "")).lower()
    base = str(doc.get("home_page_url") or doc.get("feed_url") or base)
    items: list[Item] = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        title = shorten(_readable(str(entry.get("title") or "")), MAX_TITLE)
        summary = _readable(str(entry.get("summary") or entry.get("content_text")
                                or entry.get("content_html") or ""))[:MAX_SUMMARY]
        if not title and not summary:
            continue
        link = str(entry.get("url") or entry.get("external_url") or "").strip()
        if link:
            link = urljoin(base, link)
        guid = str(entry.get("id") or "").strip()
        published = _iso_date(entry.get("date_published")) or _iso_date(entry.get("date_modified"))
        items.append(make_item(spec, title, summary, link, guid, published, now,
                               lang=str(entry.get("language") or feed_lang).lower()[:8]))
    return items


def _iso_date(value: Any) -> datetime | None:
    when = parse_published(value) if isinstance(value, str) and value else None
    return when.astimezone(UTC) if when else None
