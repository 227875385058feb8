"""Generated feeds for the benchmarks, and a loopback feed server that runs in its own process.

Contains no business logic. Every feed is deterministic: feed `i` at window offset `o` carries the
items with sequence numbers o .. o+49 (newest first), RSS 2.0 for most feeds and Atom for every
fifth, multilingual text (de/en/ru/uk/ko) with some HTML and entities, and about one item in
twenty carrying phrases from the shipped watchlists. The server keeps a per-feed offset and an
ETag per body; its mode (`etag` or `ignore`) decides whether If-None-Match is honoured.
"""

from __future__ import annotations

import asyncio
import email.utils
import multiprocessing
import random
import socket
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

ITEMS_PER_FEED = 50

# Pseudo-words per script, Zipf-distributed like news text: a few very common words and a long tail,
# so that near-duplicate lookup sees realistic posting lists (a 35-word vocabulary makes every item
# look like every other).
_SYLLABLES = {
    "de": [
        "ba", "be", "bi", "bo", "bu", "da", "de", "di", "do", "ka", "ke", "ki", "ko", "la", "le", "li", "lo",
        "ma", "me", "mi", "mo", "na", "ne", "ni", "no", "ra", "re", "ri", "ro", "sa", "se", "si", "so", "ta",
        "te", "ti", "to", "ung", "ei", "au", "ch", "sch", "st", "er", "en",
    ],
    "en": [
        "ba", "be", "bi", "bo", "bu", "da", "de", "di", "do", "ka", "ke", "ki", "ko", "la", "le", "li", "lo",
        "ma", "me", "mi", "mo", "na", "ne", "ni", "no", "ra", "re", "ri", "ro", "sa", "se", "si", "so", "ta",
        "te", "ti", "to", "th", "ing", "ea", "ou", "er",
    ],
    "ru": [
        "ба", "бе", "би", "бо", "бу", "да", "де", "ди", "до", "ка", "ке", "ки", "ко", "ла", "ле", "ли", "ло",
        "ма", "ме", "ми", "мо", "на", "не", "ни", "но", "ра", "ре", "ри", "ро", "са", "се", "си", "со", "та",
        "те", "ти", "то", "ст", "ов", "ий", "ая",
    ],
    "uk": [
        "ба", "бе", "бі", "бо", "бу", "да", "де", "ді", "до", "ка", "ке", "кі", "ко", "ла", "ле", "лі", "ло",
        "ма", "ме", "мі", "мо", "на", "не", "ні", "но", "ра", "ре", "рі", "ро", "са", "се", "сі", "со", "та",
        "те", "ті", "то", "ст", "ів", "ий", "їх",
    ],
    "ko": [
        "가", "나", "다", "라", "마", "바", "사", "아", "자", "차", "카", "타", "파",
        "하", "고", "노", "도", "로", "모", "보",
        "소", "오", "조", "호", "기", "니", "디", "리", "미", "비", "시", "이", "지", "한", "국", "정", "부", "장",
    ],
}
_VOCAB_SIZE = 5000


def _vocab(lang: str) -> tuple[list[str], list[float]]:
    rnd = random.Random(lang)
    sylls = _SYLLABLES[lang]
    words: dict[str, None] = {}
    while len(words) < _VOCAB_SIZE:
        words["".join(rnd.choice(sylls) for _ in range(rnd.randint(2, 4)))] = None
    weights: list[float] = []
    total = 0.0
    for rank in range(1, _VOCAB_SIZE + 1):
        total += 1.0 / rank
        weights.append(total)
    return list(words), weights


_WORDS = {lang: _vocab(lang) for lang in _SYLLABLES}


def _pick(rnd: random.Random, lang: str, k: int) -> list[str]:
    words, cum = _WORDS[lang]
    return rnd.choices(words, cum_weights=cum, k=k)


# Phrases that the shipped watchlists match (dprk-troops, kursk-front, russia-dprk-treaty).
_HOT = {
    "de": ("Nordkoreanische Soldaten in der Region Kursk entsandt", "Nordkorea liefert Munition an Russland",
           "Kim Jong Un und Putin: Vertrag über umfassende strategische Partnerschaft"),
    "en": ("North Korean troops deployed to Kursk region", "North Korea sends artillery shells to Russia",
           "Russia and North Korea ratify comprehensive strategic partnership treaty"),
    "ru": ("Северокорейские военные в Курской области", "КНДР поставляет снаряды России",
           "Договор о всеобъемлющем стратегическом партнерстве России и КНДР"),
    "uk": ("Північнокорейські солдати на Курщині", "Північна Корея постачає снаряди Росії",
           "Договір про стратегічне партнерство Росії та КНДР"),
    "ko": ("북한군 병사 쿠르스크 파병", "북한 러시아에 포탄 지원", "북러 포괄적 전략적 동반자 조약 비준"),
}
_LANGS = tuple(_WORDS)


def feed_lang(i: int) -> str:
    """The language of generated feed `i`."""
    return _LANGS[i % len(_LANGS)]


def is_atom(i: int) -> bool:
    """Every fifth generated feed is Atom, the rest RSS 2.0."""
    return i % 5 == 4


def _item_text(i: int, seq: int) -> tuple[str, str]:
    rnd = random.Random(i * 1_000_003 + seq)
    lang = feed_lang(i)
    title = " ".join(_pick(rnd, lang, rnd.randint(6, 10)))
    body_words = _pick(rnd, lang, rnd.randint(35, 50))
    if rnd.random() < 0.05:
        hot = rnd.choice(_HOT[lang])
        title = f"{hot}: {title}"
        body_words.insert(rnd.randint(0, len(body_words)), hot)
    text = " ".join(body_words)
    style = rnd.random()
    if style < 0.3:
        summary = f"<p>{text[:80]} &amp; <b>{text[80:120]}</b></p><p>{text[120:]}</p>"
    elif style < 0.5:
        summary = f"{text} &#8211; {seq} &quot;{lang}&quot;"
    else:
        summary = text
    return f"{title.capitalize()} #{seq}", summary


def _xml_escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_feed(i: int, offset: int, t0: datetime) -> bytes:
    """Feed `i` with items offset .. offset+49, newest first; item `seq` is dated t0 + 3 min × seq."""
    lang = feed_lang(i)
    base = f"https://news{i}.example/{lang}"
    parts: list[str] = []
    seqs = range(offset + ITEMS_PER_FEED - 1, offset - 1, -1)
    if is_atom(i):
        parts.append('<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom" '
                     f'xml:lang="{lang}"><title>Feed {i}</title><id>{base}/</id>'
                     f'<link href="{base}/"/><updated>{t0.isoformat()}</updated>')
        for seq in seqs:
            title, summary = _item_text(i, seq)
            when = (t0 + timedelta(minutes=3 * seq)).isoformat().replace("+00:00", "Z")
            parts.append(f'<entry><title>{_xml_escape(title)}</title><link href="{base}/a/{seq}.html"/>'
                         f"<id>tag:news{i}.example,2026:{seq}</id><updated>{when}</updated>"
                         f'<summary type="html">{_xml_escape(summary)}</summary></entry>')
        parts.append("</feed>")
    else:
        parts.append('<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel>'
                     f"<title>Feed {i}</title><link>{base}/</link><language>{lang}</language>"
                     f"<description>Generated feed {i}</description>")
        for seq in seqs:
            title, summary = _item_text(i, seq)
            when = email.utils.format_datetime(t0 + timedelta(minutes=3 * seq))
            desc = f"<![CDATA[{summary}]]>" if seq % 2 else _xml_escape(summary)
            guid = (f'<guid isPermaLink="false">news{i}-{seq}</guid>' if i % 3 else
                    f"<guid>{base}/a/{seq}.html</guid>")
            parts.append(f"<item><title>{_xml_escape(title)}</title><link>{base}/a/{seq}.html</link>"
                         f"{guid}<pubDate>{when}</pubDate><description>{desc}</description></item>")
        parts.append("</channel></rss>")
    return "".join(parts).encode("utf-8")


# --------------------------------------------------------------------------- the server process


class _FeedServer:
    def __init__(self, n_feeds: int, t0: datetime) -> None:
        self.n = n_feeds
        self.t0 = t0
        self.offsets = [0] * n_feeds
        self.honour_etag = True
        self.cache: dict[int, tuple[bytes, str]] = {}
        self.requests = 0
        self.not_modified = 0

    def body(self, i: int) -> tuple[bytes, str]:
        hit = self.cache.get(i)
        if hit is None:
            off = self.offsets[i]
            hit = (render_feed(i, off, self.t0), f'"f{i}-o{off}"')
            self.cache[i] = hit
        return hit

    def control(self, query: dict[str, list[str]]) -> bytes:
        """`/_ctl?etag=1|0&shift=N&every=K`: honour ETags or not; shift every K-th feed's window by N
        items (K=1: all feeds). `shift2` shifts the odd feeds by another amount."""
        if "etag" in query:
            self.honour_etag = query["etag"][0] == "1"
        shift = int(query.get("shift", ["0"])[0])
        shift_odd = int(query.get("shift_odd", [str(shift)])[0])
        every = int(query.get("every", ["1"])[0])
        if shift:
            for i in range(0, self.n, every):
                self.offsets[i] += shift_odd if i % 2 else shift
                self.cache.pop(i, None)
        if "prerender" in query:
            for i in range(self.n):
                self.body(i)
        out = f"requests={self.requests} not_modified={self.not_modified}".encode()
        self.requests = self.not_modified = 0
        return out

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                target = lines[0].split(" ")[1]
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                parts = urlsplit(target)
                status, body, extra = "200 OK", b"", ""
                if parts.path == "/_ctl":
                    body = self.control(parse_qs(parts.query))
                    ctype = "text/plain"
                elif parts.path.startswith("/f/"):
                    self.requests += 1
                    i = int(parts.path[3:].split(".")[0])
                    body, etag = self.body(i)
                    ctype = "application/atom+xml" if is_atom(i) else "application/rss+xml"
                    extra = f"ETag: {etag}\r\n"
                    if self.honour_etag and headers.get("if-none-match") == etag:
                        status, body = "304 Not Modified", b""
                        self.not_modified += 1
                else:
                    status, body, ctype = "404 Not Found", b"not found", "text/plain"
                writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {ctype}; charset=utf-8\r\n"
                             f"Content-Length: {len(body)}\r\n{extra}\r\n".encode("latin-1") + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def _serve(sock: socket.socket, n_feeds: int, t0_ts: float) -> None:
    server = _FeedServer(n_feeds, datetime.fromtimestamp(t0_ts, UTC))

    async def main() -> None:
        srv = await asyncio.start_server(server.handle, sock=sock, backlog=2048)
        async with srv:
            await srv.serve_forever()

    asyncio.run(main())


class ServerProcess:
    """The feed server in a child process (so it does not compete with the bot for the GIL)."""

    def __init__(self, n_feeds: int, t0: datetime) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(2048)
        self.port = self.sock.getsockname()[1]
        ctx = multiprocessing.get_context("fork")
        self.proc = ctx.Process(target=_serve, args=(self.sock, n_feeds, t0.timestamp()), daemon=True)

    def start(self) -> ServerProcess:
        self.proc.start()
        return self

    def url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.port}/f/{i}.xml"

    def control(self, **params: int) -> str:
        """Change the server's mode; returns (and resets) its request counters."""
        import httpx

        query = "&".join(f"{k}={v}" for k, v in params.items())
        for _ in range(50):
            try:
                return httpx.get(f"http://127.0.0.1:{self.port}/_ctl?{query}", timeout=60).text
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("feed server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.join(5)
        self.sock.close()
