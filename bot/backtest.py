"""`mediabot backtest`: run an (edited) watchlist over stored items and show what would change."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

from bot.config import Config, Settings, load_watchlist, parse_duration
from bot.match import Matcher
from bot.models import Item
from bot.store import SqliteStore


def run_backtest(path: Path, since: str, settings: Settings, config: Config, out: IO[str], *,
                 words: bool = False) -> int:
    """Print items the edited watchlist would match, and the difference to the version in force; with
    `words`, also the words each fuzzy term takes in those items that are not written in the file."""
    problems: list[str] = []
    edited = load_watchlist(path, problems)
    if edited is None:
        for p in problems:
            print(p, file=out)
        return 2
    try:
        seconds = parse_duration(since)
    except ValueError as exc:
        print(f"--since: {exc}", file=out)
        return 1
    current = next((w for w in config.watchlists if w.id == edited.id), None)
    new_m = Matcher([edited])
    old_m = Matcher([current]) if current is not None else None
    store = SqliteStore(settings.db_path, lock=False)
    try:
        items = list(store.items_since(datetime.now(UTC) - timedelta(seconds=seconds)))
    finally:
        store.close()
    added: list[str] = []
    removed: list[str] = []
    kept = 0
    for it in items:
        now_hit = bool(new_m.match(it.title, it.summary))
        was_hit = bool(old_m.match(it.title, it.summary)) if old_m else False
        line = f"{it.published:%Y-%m-%d %H:%M} {it.source}: {it.title}"
        if now_hit and not was_hit:
            added.append(line)
        elif was_hit and not now_hit:
            removed.append(line)
        elif now_hit:
            kept += 1
    print(f"{edited.id}: {len(items)} stored items since {since}; would match {kept + len(added)} "
          f"({kept} unchanged, {len(added)} new, {len(removed)} no longer)", file=out)
    for line in added:
        print(f"  + {line}", file=out)
    for line in removed:
        print(f"  - {line}", file=out)
    if words:
        print_words_taken(new_m, items, out)
    return 0


_WORDS_SHOWN = 12  # per term, the most frequent first


def print_words_taken(matcher: Matcher, items: Sequence[Item], out: IO[str]) -> None:
    """Words a fuzzy term takes without being spelled so: inflections and compounds as meant, and the
    surprises (Putin -> "putting") that are worth an exact term."""
    taken = matcher.words_taken((it.title, it.summary) for it in items)
    terms = f"{len(taken)} term" + ("" if len(taken) == 1 else "s")
    print(f"words the fuzzy terms take in these items without being written so ({terms}; a wrong one is "
          f"fixed with mode: exact and the forms as aliases):", file=out)
    for (_, term), counts in sorted(taken.items(), key=lambda kv: (kv[0][1].line, kv[0][1].term)):
        shown = ", ".join(f"{w} ×{n}" for w, n in counts.most_common(_WORDS_SHOWN))
        more = f", … {len(counts) - _WORDS_SHOWN} more" if len(counts) > _WORDS_SHOWN else ""
        print(f"  line {term.line} {term.term}: {shown}{more}", file=out)
