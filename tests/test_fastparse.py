"""The fast XML path gives the same Items as feedparser, or declines (None) and leaves it to feedparser."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import bot.parse
from bot.fastparse import parse_well_formed
from bot.models import FeedSpec
from bot.parse import parse_feed

ROOT = Path(__file__).resolve().parent.parent
REAL = ROOT.parent / "shared" / "feeds" / "real"
NOW = datetime(2030, 1, 1, tzinfo=UTC)  # after every corpus date: nothing is clamped differently
SPEC = FeedSpec(id="f", url="https://example.org/feed.xml", name="Example", lang="")

sys.path.insert(0, str(ROOT))
from bench._feedgen import render_feed  # noqa: E402


def _both(body: bytes, monkeypatch: pytest.MonkeyPatch, content_type: str = "") -> tuple[list, list]:
    fast = parse_feed(body, SPEC, NOW, content_type=content_type)
    with monkeypatch.context() as m:
        m.setattr(bot.parse, "parse_well_formed", lambda *a, **k: None)
        reference = parse_feed(body, SPEC, NOW, content_type=content_type)
    return fast, reference


def _fields(items: list) -> list[tuple]:
    return [(i.key, i.title, i.summary, i.link, i.canonical_link, i.guid, i.published, i.dated, i.lang)
            for i in items]


def _real_documents() -> list[Path]:
    if not REAL.is_dir():
        return []
    return sorted(p for p in REAL.iterdir() if p.suffix in (".xml", ".rss", ".atom", ".rdf"))


@pytest.mark.skipif(not REAL.is_dir(), reason=f"real feed corpus not present at {REAL}")
@pytest.mark.parametrize("path", _real_documents(), ids=lambda p: p.name)
def test_real_feed_gives_feedparser_items_or_declines(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On every captured publisher feed the fast path declines or yields exactly feedparser's items."""
    body = path.read_bytes()
    try:
        fast, reference = _both(body, monkeypatch)
    except bot.parse.ParseError:
        pytest.skip("not a feed for either path")
    assert _fields(fast) == _fields(reference)


@pytest.mark.skipif(not REAL.is_dir(), reason=f"real feed corpus not present at {REAL}")
def test_fast_path_takes_most_of_the_real_corpus() -> None:
    """The fast path still takes the plain real feeds (20 of the 56 deliberately odd ones when written)."""
    docs = _real_documents()
    taken = sum(1 for p in docs if parse_well_formed(p.read_bytes()) is not None)
    assert taken >= min(15, len(docs) // 3), f"fast path took only {taken} of {len(docs)}"


@pytest.mark.parametrize("i", range(10))
def test_generated_feed_takes_fast_path_with_same_items(i: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Generated RSS 2.0 and Atom feeds (bench/_feedgen.py) parse fast and equal feedparser's items."""
    body = render_feed(i, 7, NOW - timedelta(days=1))
    assert parse_well_formed(body) is not None
    fast, reference = _both(body, monkeypatch, "application/rss+xml; charset=utf-8")
    assert len(fast) == 50
    assert _fields(fast) == _fields(reference)


@pytest.mark.parametrize(
    "body",
    [
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>'
        b"<rss><channel><item><title>&lol2;</title></item></channel></rss>",
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b"<rss><channel><item><title>&x;</title></item></channel></rss>",
        b'<?xml version="1.0" encoding="windows-1251"?><rss><channel></channel></rss>',
        b"<rss><channel><item><title>caf&eacute;</title></item></channel></rss>",
        b"<html><body>not a feed</body></html>",
        b"<rss><channel><item><title>broken</channel></rss>",
        b'<feed xmlns="http://www.w3.org/2005/Atom"><entry><title type="xhtml"><div>x</div></title></entry></feed>',
        b"<rss><channel><item><title>t</title><pubDate>yesterday</pubDate></item></channel></rss>",
        b"<rss><channel><item><title>a</title><title>b</title></item></channel></rss>",
        b'<rss xmlns:atom="http://www.w3.org/2005/Atom"><channel><item><title>t</title>'
        b'<atom:link href="https://e.org/a"/></item></channel></rss>',
        b'<rss xmlns:media="http://search.yahoo.com/mrss/"><channel><item><title>t</title>'
        b"<media:description>caption</media:description></item></channel></rss>",
        "<rss><channel><item><title>K\u00c3\u00b6ln</title></item></channel></rss>".encode(),
    ],
    ids=["entities", "external-entity", "cp1251", "html-entity", "html", "broken", "xhtml", "bad-date",
         "two-titles", "atom-link-in-rss", "media-description", "double-encoded"],
)
def test_odd_documents_are_left_to_feedparser(body: bytes) -> None:
    """DTDs (billion laughs, XXE), other encodings, HTML entities, broken XML, xhtml, odd dates: None."""
    assert parse_well_formed(body) is None


def test_non_utf8_charset_in_content_type_is_left_to_feedparser() -> None:
    body = b"<rss><channel><item><title>t</title></item></channel></rss>"
    assert parse_well_formed(body, "application/rss+xml; charset=iso-8859-1") is None
    assert parse_well_formed(body, "application/rss+xml; charset=UTF-8") is not None
