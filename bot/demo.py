"""`mediabot demo`: the real pipeline on bundled sample feeds served from a loopback HTTP server.

The sample feeds (bot/demo_data, written by us) carry `{{ago:25m}}` placeholders that are turned
into dates relative to now when served, so the catch-up window behaves as with a live feed.
"""

from __future__ import annotations

import email.utils
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path

from bot.config import parse_duration
from bot.models import FeedSpec

DEMO_FEEDS = (
    ("demo-de", "de-nachrichten.xml", "Demo-Nachrichten", "de"),
    ("demo-en", "en-world.xml", "Demo World News", "en"),
    ("demo-mix", "ru-ua-ko.xml", "Demo RU/UA/KO", ""),
    ("demo-zeitung", "de-zeitung.xml", "Demo-Zeitung", "de"),  # an agency copy: folds into one alert
)
_PLACEHOLDER = re.compile(r"\{\{(iso:)?ago:([0-9.]+[smhdw]?)\}\}")


def render_template(text: str, now: datetime) -> str:
    """Replace `{{ago:2h}}` (RFC 822) and `{{iso:ago:2h}}` (RFC 3339) with dates before `now`."""

    def sub(m: re.Match[str]) -> str:
        when = now - timedelta(seconds=parse_duration(m.group(2)))
        return when.isoformat().replace("+00:00", "Z") if m.group(1) else email.utils.format_datetime(when)

    return _PLACEHOLDER.sub(sub, text)


def demo_document(name: str) -> str:
    """The text of one bundled sample feed."""
    return resources.files("bot").joinpath("demo_data", name).read_text(encoding="utf-8")


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        name = self.path.lstrip("/").split("?")[0]
        if name not in {f for _, f, _, _ in DEMO_FEEDS}:
            self.send_error(404)
            return
        body = render_template(demo_document(name), datetime.now(UTC)).encode("utf-8")
        self.send_response(200)
        ctype = "application/atom+xml" if b"<feed" in body[:400] else "application/rss+xml"
        self.send_header("Content-Type", f"{ctype}; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        return


@contextmanager
def serve_demo_feeds() -> Iterator[list[FeedSpec]]:
    """Start the loopback feed server; yield FeedSpecs pointing at it; stop it afterwards."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, name="demo-feeds", daemon=True)
    thread.start()
    port = server.server_address[1]
    try:
        yield [
            FeedSpec(id=fid, url=f"http://127.0.0.1:{port}/{fname}", name=name, lang=lang, allow_private=True)
            for fid, fname, name, lang in DEMO_FEEDS
        ]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def shipped_watchlists_dir() -> Path:
    """The watchlists shipped with the package (wheel), or the repository's `watchlists/`."""
    packaged = Path(str(resources.files("bot").joinpath("_watchlists")))
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "watchlists"
