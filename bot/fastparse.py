"""A fast path for well-formed UTF-8 RSS 2.0, RSS 1.0 (RDF) and Atom 1.0: bytes -> feedparser-shaped dict.

Pure, no I/O. Returns None for anything odd (other encodings, a DOCTYPE or entity declaration, HTML
entities XML does not know, xhtml text constructs, xml:base, unparseable dates, unknown roots), and
parse.py then uses feedparser, the reference. The result has the keys parse.py reads from
feedparser ("version", "feed", "entries"), so both paths go through the same Item-building code;
tests/test_fastparse.py checks that they give the same Items on the real corpus and generated feeds.
Why not a library: fastfeedparser 0.6 gives different items on 14 of 56 real feeds (FACTS.md).
"""

from __future__ import annotations

import email.utils
import re
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Any

_ATOM = "{http://www.w3.org/2005/Atom}"
_RSS1 = "{http://purl.org/rss/1.0/}"
_RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}RDF"
_DC_DATE = "{http://purl.org/dc/elements/1.1/}date"
_CONTENT = "{http://purl.org/rss/1.0/modules/content/}encoded"
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_RDF_ABOUT = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}about"
_DC_LANG = "{http://purl.org/dc/elements/1.1/}language"
# feedparser folds these namespaced elements (media:title, media:description, itunes:summary...) into
# the entry's title or summary, last one winning: not worth copying, leave such feeds to it.
_FOLDED = ("}title", "}description", "}summary", "}subtitle")
_ENTITY_LEFT = re.compile(r"&#?\w+;")  # "&amp;amp;" in a link: feedparser unescapes once more
# RFC 822 as feeds write it, English names only (feedparser gives up on "mer, 16 nov 2022 ...").
_RFC822 = re.compile(
    r"(?:(?:mon|tue|wed|thu|fri|sat|sun),\s*)?\d{1,2}\s+(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)\s+"
    r"\d{4}\s+\d{1,2}:\d{2}(?::\d{2})?\s+(?:[+-]\d{4}|gmt|ut|utc|z)", re.IGNORECASE)
_MOJIBAKE = re.compile(rb"\xc3[\x82-\xaf]\xc2[\x80-\xbf]|\xc3\xa2\xe2\x82\xac")
_READ = frozenset(
    [f"{ns}{tag}" for ns in ("", _RSS1) for tag in ("title", "link", "description")]
    + ["guid", "pubDate", _DC_DATE, _CONTENT, _DC_LANG]
    + [_ATOM + tag for tag in ("title", "summary", "content", "id", "published", "updated")]
)
_SY = "{http://purl.org/rss/1.0/modules/syndication/}"


class _Odd(Exception):
    """Something this path does not reproduce exactly: leave the document to feedparser."""


def parse_well_formed(body: bytes, content_type: str = "") -> dict[str, Any] | None:
    """Parse a well-formed UTF-8 RSS/Atom document like feedparser would, or None to use feedparser."""
    charset = content_type.lower().partition("charset=")[2].strip(" \"';")
    if charset and charset not in ("utf-8", "utf8"):
        return None
    head = body[:200].lower()
    if head.startswith(b"<?xml") and b"encoding" in head.split(b"?>", 1)[0]:
        decl = head.split(b"?>", 1)[0]
        if b"utf-8" not in decl and b"utf8" not in decl:
            return None
    # No DTDs at all: no entity expansion (billion laughs) and no external entities (XXE).
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body or b"xml:base" in body:
        return None
    if _MOJIBAKE.search(body):  # "KÃ¶lner", "â€™": double-encoded UTF-8; feedparser's call
        return None
    try:
        root = ET.fromstring(body)
        return _read(root)
    except (ET.ParseError, _Odd, ValueError, TypeError, OverflowError, UnicodeError):
        return None


def _read(root: ET.Element) -> dict[str, Any]:
    if root.tag == "rss":
        channel = root.find("channel")
        if channel is None:
            raise _Odd
        feed = _channel(channel)
        feed["language"] = _text(channel.find("language")) or _text(channel.find(_DC_LANG))
        feed["ttl"] = _text(channel.find("ttl"))
        entries = [_rss_entry(el, "") for el in channel.iter("item")]
        return {"version": "rss20", "feed": feed, "entries": entries}
    if root.tag == _ATOM + "feed":
        lang = root.get(_XML_LANG, "")
        entries = [_atom_entry(el) for el in root.iter(_ATOM + "entry")]
        return {"version": "atom10", "feed": {"language": lang}, "entries": entries}
    if root.tag == _RDF:
        channel = root.find(_RSS1 + "channel")
        if channel is None:
            raise _Odd
        feed = _channel(channel)
        feed["language"] = _text(channel.find(_DC_LANG))
        entries = [_rss_entry(el, _RSS1) for el in root.iter(_RSS1 + "item")]
        return {"version": "rss10", "feed": feed, "entries": entries}
    raise _Odd


def _channel(channel: ET.Element) -> dict[str, Any]:
    """The channel fields parse.py reads besides the language: the sy: update hints."""
    return {"sy_updateperiod": _text(channel.find(_SY + "updatePeriod")),
            "sy_updatefrequency": _text(channel.find(_SY + "updateFrequency"))}


def _text(el: ET.Element | None) -> str:
    if el is None:
        return ""
    if len(el):  # child elements inside a text field: markup feedparser would serialise
        raise _Odd
    return (el.text or "").strip()


_OWN = (_ATOM + "title", _ATOM + "summary", _RSS1 + "title", _RSS1 + "description")


def _check_folded(el: ET.Element) -> None:
    for child in el.iter():
        if child.tag.startswith("{") and child.tag.endswith(_FOLDED) and child.tag not in _OWN:
            raise _Odd


def _link(value: str) -> str:
    if _ENTITY_LEFT.search(value):
        raise _Odd
    return value


def _rss_entry(item: ET.Element, ns: str) -> dict[str, Any]:
    _check_folded(item)
    if item.find(_ATOM + "link") is not None:
        raise _Odd  # atom:link inside an RSS item: feedparser merges it into the links
    tags = [child.tag for child in item if child.tag in _READ]
    if len(tags) != len(set(tags)):
        raise _Odd  # a repeated element (two titles, two links...): feedparser keeps the last one
    entry: dict[str, Any] = {}
    title = item.find(ns + "title")
    if title is not None:
        entry["title"] = _text(title)
    desc = item.find(ns + "description")
    content = item.find(_CONTENT)
    if desc is not None:
        entry["summary"] = _text(desc)
    if content is not None:
        entry["content"] = [{"value": _text(content)}]
    link = _link(_text(item.find(ns + "link")))
    guid_el = item.find("guid")
    guid = _text(guid_el) if guid_el is not None else item.get(_RDF_ABOUT, "").strip()
    permalink = guid_el is not None and guid_el.get("isPermaLink", "true").lower() != "false"
    if permalink and (not link or not guid.startswith(("http://", "https://"))):
        raise _Odd  # feedparser resolves a permalink guid against the feed URL and may use it as the link
    if link:
        entry["link"] = link
    if guid:
        entry["id"] = guid
    lang = _text(item.find(_DC_LANG))
    if lang:
        entry["language"] = lang
    pub = item.find("pubDate")
    if pub is not None and _text(pub):
        entry["published_parsed"] = _rfc822(_text(pub))
    dc = item.find(_DC_DATE)
    if dc is not None and _text(dc):
        entry["updated_parsed"] = _w3c(_text(dc))
    return entry


def _atom_entry(el: ET.Element) -> dict[str, Any]:
    _check_folded(el)
    tags = [child.tag for child in el if child.tag in _READ]
    if len(tags) != len(set(tags)):
        raise _Odd  # a repeated title, summary, id or date: feedparser keeps the last one
    entry: dict[str, Any] = {}
    title = el.find(_ATOM + "title")
    if title is not None:
        entry["title"] = _atom_text(title)
    summary = el.find(_ATOM + "summary")
    if summary is not None:
        entry["summary"] = _atom_text(summary)
    content = el.find(_ATOM + "content")
    if content is not None:
        if content.get("src"):
            raise _Odd
        entry["content"] = [{"value": _atom_text(content)}]
    for link in el.findall(_ATOM + "link"):
        if link.get("rel", "alternate") == "alternate" and link.get("href"):
            entry["link"] = _link(link.get("href", "").strip())
            break
    guid = _text(el.find(_ATOM + "id"))
    if guid:
        entry["id"] = guid
    for tag, key in (("published", "published_parsed"), ("updated", "updated_parsed")):
        value = _text(el.find(_ATOM + tag))
        if value:
            entry[key] = _w3c(value)
    if el.get(_XML_LANG):
        raise _Odd
    return entry


def _atom_text(el: ET.Element) -> str:
    if el.get("type", "text") not in ("text", "html", "text/plain", "text/html"):
        raise _Odd  # xhtml and other media types
    return _text(el)


def _rfc822(value: str) -> time.struct_time:
    if not _RFC822.fullmatch(value):
        raise _Odd
    dt = email.utils.parsedate_to_datetime(value)  # raises ValueError/TypeError on garbage
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).timetuple()


def _w3c(value: str) -> time.struct_time:
    if "T" not in value or len(value) < 19:
        raise _Odd  # date-only and other W3C-DTF variants: feedparser's rules
    dt = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    if dt.tzinfo is None:
        raise _Odd
    return dt.astimezone(UTC).replace(microsecond=0).timetuple()
