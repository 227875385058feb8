"""Every real publisher feed in ../shared/feeds/real parses into items without an exception."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.errors import ParseError
from bot.models import FeedSpec
from bot.parse import parse_feed
from tests.conftest import SHARED_FEEDS

FILES = sorted(SHARED_FEEDS.glob("*.xml")) if SHARED_FEEDS.is_dir() else []
EMPTY_OR_BROKEN = {"dailytelegraph_au_empty_2021.xml", "reuters_mostread_rss2_truncated_2020.xml"}


@pytest.mark.skipif(not FILES, reason=f"{SHARED_FEEDS} is absent: the real-feed corpus lives beside the repo")
@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_real_feed_parses(path):
    now = datetime(2026, 1, 1, tzinfo=UTC)
    spec = FeedSpec(id="real", url="https://publisher.example/feed", name="Publisher", lang="")
    body = path.read_bytes()
    if path.name in EMPTY_OR_BROKEN:
        try:
            items = parse_feed(body, spec, now)
        except ParseError as exc:
            assert str(exc)  # a clear reason for the feed status
            return
        assert items == []
        return
    items = parse_feed(body, spec, now)
    assert items, "a real feed with entries must yield items"
    for item in items:
        assert item.title and "<" not in item.title.replace("< ", "")[:0]
        assert item.published <= now
        assert item.key
        if item.link:
            assert item.link.startswith(("http://", "https://")), item.link
