"""Alert payloads -> Telegram messages (HTML parse mode) and terminal text. Pure.

Every piece of feed text is escaped, so a title with `<`, `&` or markup never breaks a message,
and a message never exceeds Telegram's 4096 characters.
"""

from __future__ import annotations

import contextlib
import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from rapidfuzz import fuzz

from bot.dedup import item_words
from bot.text import fold, shorten

MAX_MESSAGE = 4096
SUMMARY_CHARS = 300
_SAME_HEADLINE = 80  # rapidfuzz ratio of folded headlines at or above which a copy may add nothing to show
_RUBRIC = re.compile(r"^[^:]{1,40}:\s+")  # "Ukraine-Krieg: ", "Selenskyj: " before a headline
_HEADLINES = 3  # other outlets' headlines shown under an alert (the latest ones)


@dataclass(frozen=True, slots=True)
class Button:
    """An inline button: opens `url`, or sends `callback` data back to the bot."""

    label: str
    url: str | None = None
    callback: str | None = None


@dataclass(frozen=True, slots=True)
class Rendered:
    """A message ready to send: HTML, its plain-text twin (fallback), and inline buttons."""

    html: str
    plain: str
    buttons: tuple[Button, ...] = ()
    thread: int | None = None  # a forum supergroup's topic to post in (None: the General topic)


_LABELS = {
    "de": {"open": "Artikel öffnen", "mute": "Watchlist 24 h stumm", "also": "auch", "terms": "Treffer",
           "digest": "Zusammenfassung", "stories": "Meldungen", "more": "weitere",
           "list_gone": "Die Watchlist {name} ({id}), die Sie abonniert haben, bieten die Admins nicht mehr an "
                        "(entfernt oder umbenannt): von ihr kommt nichts, bis sie wieder da ist. Ihr Abo bleibt; "
                        "/list zeigt, was es gibt, /unsubscribe {id} beendet es.",
           "list_back": "Die Watchlist {name} ({id}) ist wieder da; Ihr Abo gilt wieder."},
    "en": {"open": "Open article", "mute": "Mute watchlist 24 h", "also": "also", "terms": "matched",
           "digest": "Digest", "stories": "stories", "more": "more",
           "list_gone": "The admins no longer offer the watchlist {name} ({id}) you subscribed to (removed or "
                        "renamed): nothing comes from it until it is back. Your subscription stays; /list shows "
                        "what there is, /unsubscribe {id} ends it.",
           "list_back": "The watchlist {name} ({id}) is back; your subscription holds again."},
}


def labels(lang: str) -> Mapping[str, str]:
    """UI words in the chat's language (German by default)."""
    return _LABELS.get(lang[:2], _LABELS["de"])


# What quote() keeps as it is besides letters and digits: the delimiters of a URL, and % (already encoded).
_URL_SAFE = "!#$%&'()*+,/:;=?@[]~-._"


def _e(value: str) -> str:
    return html.escape(value, quote=True)


def safe_url(url: str) -> str | None:
    """The link as Telegram takes it in a button and an href, or None. Telegram refuses the whole message
    for a URL with a space or other unencoded character, or a host without a dot (an intranet name), so
    those are percent-encoded or left out: the alert still goes, without its link."""
    url = url.strip()
    if not url.startswith(("https://", "http://")) or len(url) >= 2000:
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        netloc = parts.netloc
        if not netloc.isascii():  # an IDN host as punycode; the user part and port as they are
            user, at, _ = netloc.rpartition("@")
            port = f":{parts.port}" if parts.port is not None else ""
            netloc = f"{quote(user, safe=_URL_SAFE)}{at}{host.encode('idna').decode('ascii')}{port}"
    except (ValueError, UnicodeError):
        return None
    if "." not in host and ":" not in host:
        return None
    url = urlunsplit((parts.scheme, netloc, *(quote(x, safe=_URL_SAFE) for x in parts[2:])))
    return url if len(url) < 2000 else None


def render_alert(payload: Mapping[str, Any], *, watchlist_name: str, tz: tzinfo, lang: str = "de",
                 also: Sequence[tuple[str, str]] = (), mutable: bool = True) -> Rendered:
    """One alert: bold linked title, source and time, watchlist and terms, a short summary, and the
    other outlets that carried the story (`also`: outlet and headline). A later copy whose headline
    says something else is shown with it, so a loosely folded report is visible, not hidden. `mutable`:
    offer the "mute 24 h" button (only where it works: a chat subscribed to the list itself)."""
    words = labels(lang)
    title = str(payload.get("title") or "")
    link = safe_url(str(payload.get("link") or ""))
    source = str(payload.get("source") or "")
    when = _published(payload, tz, "%d.%m.%Y %H:%M %Z")
    terms = [str(t) for t in payload.get("terms") or []]
    summary = shorten(str(payload.get("summary") or ""), SUMMARY_CHARS)
    if summary and title and summary.startswith(title):
        summary = shorten(summary[len(title):].lstrip(" .:-–"), SUMMARY_CHARS)
    meta = " · ".join(x for x in (source, when) if x)
    watch = f"{watchlist_name} — {words['terms']}: {', '.join(terms[:8])}" if terms else watchlist_name
    names, other_headlines = _other_outlets(title, source, also, _HEADLINES)
    also_line = f"{words['also']}: {', '.join(names[:12])}" + (
        f" (+{len(names) - 12} {words['more']})" if len(names) > 12 else ""
    ) if names else ""

    def build(title_limit: int, summary_text: str) -> tuple[str, str]:
        t = shorten(title, title_limit)
        head = f'<b><a href="{_e(link)}">{_e(t)}</a></b>' if link else f"<b>{_e(t)}</b>"
        parts_html = [head, _e(meta), f"🔎 {_e(watch)}"]
        parts_plain = [t, meta, f"🔎 {watch}"]
        if summary_text:
            parts_html.append(_e(summary_text))
            parts_plain.append(summary_text)
        if also_line:
            parts_html.append(f"➕ {_e(also_line)}")
            parts_plain.append(f"➕ {also_line}")
        for line in other_headlines:
            parts_html.append(f"↳ {_e(line)}")
            parts_plain.append(f"↳ {line}")
        if link:
            parts_plain.append(link)
        return "\n".join(p for p in parts_html if p), "\n".join(p for p in parts_plain if p)

    text_html, text_plain = build(500, summary)
    if len(text_html) > MAX_MESSAGE:  # escaped entities can grow text ~5x; cut until it fits
        text_html, text_plain = build(300, shorten(summary, 200))
        limit = MAX_MESSAGE
        while len(text_html) > MAX_MESSAGE and limit > 50:
            limit //= 2
            text_html, text_plain = build(limit, "")
    buttons: list[Button] = []
    if link:
        buttons.append(Button(words["open"], url=link))
    if payload.get("watchlist") and mutable:
        buttons.append(Button(words["mute"], callback=f"mute:{payload['watchlist']}"))
    return Rendered(text_html, text_plain[:MAX_MESSAGE], tuple(buttons))


def _other_outlets(title: str, source: str, sources: Sequence[tuple[str, str]], headlines: int
                   ) -> tuple[list[str], list[str]]:
    """(the other outlets that carried a story, each once; up to `headlines` of their headlines that say
    something else than `title`, each once, as "outlet: headline", the latest last). `sources` is the
    story's list as the store keeps it: (outlet, headline), the lead's own entry without a headline."""
    names = list(dict.fromkeys(name for name, _ in sources if name != source))
    lead = _plain_figures(title)
    own = (fold(lead), _headline_words(lead), fold(_RUBRIC.sub("", lead)))
    shown: dict[str, str] = {}  # a headline past its rubric -> its line
    for name, headline in sources:
        plain = _plain_figures(headline)
        if headline and not _adds_nothing(plain, *own):
            shown.setdefault(fold(_RUBRIC.sub("", plain)), f"{name}: {shorten(headline, 120)}")
    return names, list(shown.values())[-headlines:]


_THOUSANDS = re.compile(r"(?<=\d)[.,\u202f\u00a0 ](?=\d{3}\b)")


def _plain_figures(headline: str) -> str:
    """Figures without thousands separators: "3.000 Soldaten" and "3000 Soldaten" say the same."""
    return _THOUSANDS.sub("", headline) if any(ch.isdigit() for ch in headline) else headline


def _headline_words(headline: str) -> frozenset[str]:
    """A headline's stemmed words past a rubric ("Ukraine-Krieg: ")."""
    return item_words(_RUBRIC.sub("", headline), "")[1]


def _adds_nothing(headline: str, lead_folded: str, lead_words: frozenset[str], lead_core: str) -> bool:
    """A copy's headline is not shown under the alert when it is the lead's with small edits: nearly the
    same characters and, past a rubric, the same words; or the lead's headline under a rubric of the
    copy's own ("Staatsbesuch in Nordkorea: " + the agency headline, too long a rubric for the first
    test). A headline that swaps a word ("... aus Kursk abgezogen" / "... zurück in Kursk") says
    something else, and a report folded into the story by mistake must stay visible."""
    if fuzz.ratio(fold(headline), lead_folded) >= _SAME_HEADLINE and _headline_words(headline) == lead_words:
        return True
    return bool(lead_core) and fold(_RUBRIC.sub("", headline)) == lead_core


def render_notice(text: str) -> Rendered:
    """A plain notice (admin messages): escaped, bounded."""
    text = shorten(text, 3500)
    return Rendered(_e(text), text)


def _published(payload: Mapping[str, Any], tz: tzinfo, fmt: str) -> str:
    """When a story was published, in `tz` as `fmt`; "" when the payload has no (readable) date."""
    if payload.get("published"):
        with contextlib.suppress(TypeError, ValueError):
            return datetime.fromisoformat(str(payload["published"])).astimezone(tz).strftime(fmt)
    return ""


_DIGEST_ROOM = MAX_MESSAGE - 200  # the heading line and "… +N more" take the rest


def _digest_line(p: Mapping[str, Any], names: Mapping[str, str], tz: tzinfo = UTC,
                 dated: bool = False) -> tuple[str, str]:
    """One story of a digest: (HTML, plain text), with the time it was published (`tz`; the pager
    measures in UTC: the same length), and its date when the digest spans days."""
    title = shorten(str(p.get("title") or ""), 160)
    link = safe_url(str(p.get("link") or ""))
    source = str(p.get("source") or "")
    wl = names.get(str(p.get("watchlist") or ""), str(p.get("watchlist") or ""))
    when = _published(p, tz, "%d.%m. %H:%M " if dated else "%H:%M ")
    item_html = f'• {when}<a href="{_e(link)}">{_e(title)}</a>' if link else f"• {when}{_e(title)}"
    item_html += f" <i>({_e(source)}; {_e(wl)})</i>"
    return item_html, f"• {when}{title} ({source}; {wl}) {link or ''}".rstrip()


def _digest_copies(p: Mapping[str, Any], also: Sequence[tuple[str, str]], lang: str) -> list[str]:
    """The lines under a digest's story for the other outlets that carried it (plain text): what an alert
    shows as "also" and "↳", so a digest reader learns of a copy with a headline of its own too."""
    names, headlines = _other_outlets(str(p.get("title") or ""), str(p.get("source") or ""), also, 2)
    lines = []
    if names:
        more = f" (+{len(names) - 6} {labels(lang)['more']})" if len(names) > 6 else ""
        lines.append(f"   ➕ {', '.join(names[:6])}{more}")
    return lines + [f"   ↳ {line}" for line in headlines]


def digest_dated(entries: Sequence[Mapping[str, Any]], tz: tzinfo) -> bool:
    """Do a digest's stories fall on more than one local day? Then each line shows its date."""
    return len({_published(p, tz, "%Y-%m-%d") for p in entries} - {""}) > 1


def digest_order(entries: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """A digest's stories oldest first, as they were published (they were held in the order their feeds
    answered), undated ones last."""
    return sorted(entries, key=lambda p: (not p.get("published"), str(p.get("published") or "")))


def digest_pages(entries: Sequence[Mapping[str, Any]], names: Mapping[str, str] | None = None,
                 dated: bool = False) -> list[list[Mapping[str, Any]]]:
    """Split a digest's stories into as many messages as they need, so none is left out (`dated`: as
    the lines will be rendered, with their dates)."""
    pages: list[list[Mapping[str, Any]]] = []
    page: list[Mapping[str, Any]] = []
    size = 0
    for p in entries:
        cost = len(_digest_line(p, names or {}, dated=dated)[0]) + 1
        if page and size + cost > _DIGEST_ROOM:
            pages.append(page)
            page, size = [], 0
        page.append(p)
        size += cost
    return [*pages, page] if page else pages


def render_digest(entries: Sequence[Mapping[str, Any]], *, heading: str, tz: tzinfo, lang: str = "de",
                  names: Mapping[str, str] | None = None, total: int | None = None, dated: bool = False,
                  also: Mapping[int, Sequence[tuple[str, str]]] | None = None) -> Rendered:
    """Several held alerts as one compact message: one line per story, oldest first, with the outlets
    that also carried it (`also`: story id -> outlets and headlines, as for an alert) while room is left.
    `total`: the stories of the whole digest when it is paged ("Digest (1/2) — 21 stories"). (The router
    pages a long digest with `digest_pages`; the "+N more" here only guards against a page that still
    overflows.)"""
    words = labels(lang)
    names = names or {}
    zone = _published(entries[0], tz, "%Z") if entries else ""
    count = f"{total or len(entries)} {words['stories']}" + (f" · {zone}" if zone else "")
    lines_html = [f"<b>{_e(heading)}</b> — {_e(count)}"]
    lines_plain = [f"{heading} — {count}"]
    stories = []
    size = len(lines_html[0])
    for p in entries:
        item_html, item_plain = _digest_line(p, names, tz, dated)
        if size + len(item_html) + 1 > MAX_MESSAGE - 80:
            break
        stories.append((p, item_html, item_plain))
        size += len(item_html) + 1
    shown = len(stories)
    for p, item_html, item_plain in stories:  # every story first; the other outlets while room is left
        lines_html.append(item_html)
        lines_plain.append(item_plain)
        story = p.get("story_id")
        for extra in _digest_copies(p, also.get(story, ()), lang) if also and isinstance(story, int) else ():
            if size + len(_e(extra)) + 1 > MAX_MESSAGE - 80:
                break
            lines_html.append(_e(extra))
            lines_plain.append(extra)
            size += len(_e(extra)) + 1
    if shown < len(entries):
        rest = f"… +{len(entries) - shown} {words['more']}"
        lines_html.append(_e(rest))
        lines_plain.append(rest)
    return Rendered("\n".join(lines_html), "\n".join(lines_plain)[:MAX_MESSAGE])
