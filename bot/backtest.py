"""`mediabot backtest`: run an (edited) watchlist over stored items and show what would change."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

from bot.config import Config, Settings, load_watchlist, parse_duration
from bot.errors import StoreError
from bot.match import Matcher
from bot.models import Item
from bot.store import SqliteStore

MAX_SINCE = 3650 * 86400.0  # ten years: anything longer is a typo (and overflows the date arithmetic)


def run_backtest(path: Path, since: str, settings: Settings, config: Config, out: IO[str], *,
                 words: bool = False, err: IO[str] | None = None) -> int:
    """Print items the edited watchlist would match, and the difference to the version in force; with
    `words`, also the words each fuzzy term takes in those items that are not written in the file.

    The version in force is the one in MEDIABOT_WATCHLISTS_DIR. When `path` is that very file (edited in
    place, which the daemon picks up within seconds), the comparison is with what the list matched when
    each item arrived, as the store recorded it. Returns an exit code (1 usage, 2 config, 4 store)."""
    err = err or out
    problems: list[str] = []
    edited = load_watchlist(path, problems)
    if edited is None:
        for p in problems:
            print(p, file=err)
        return 2
    try:
        seconds = parse_duration(since)
        if not 0 < seconds <= MAX_SINCE:
            raise ValueError(f"{since!r} must be more than 0 and at most 3650d")
    except ValueError as exc:
        print(f"mediabot: --since: {exc}", file=err)
        return 1
    if not settings.db_path.exists():
        print(f"mediabot: no store at {settings.db_path}: nothing to backtest on (the bot stores items there as "
              "it polls; set MEDIABOT_STATE_DIR to its state directory)", file=err)
        return 4
    current = config.watchlist(edited.id)
    in_place = current is not None and _same_file(path, Path(current.source))
    cutoff = datetime.now(UTC) - timedelta(seconds=seconds)
    try:
        store = SqliteStore(settings.db_path, lock=False)
    except StoreError as exc:
        print(f"mediabot: {exc}", file=err)
        return 4
    try:
        items = list(store.items_since(cutoff))
        matched_then = store.matched_since(edited.id, cutoff) if in_place else set()
    finally:
        store.close()
    new_m = Matcher([edited])
    old_m = Matcher([current]) if current is not None and not in_place else None
    added: list[str] = []
    removed: list[str] = []
    kept = 0
    tz = settings.tz
    for it in items:
        now_hit = bool(new_m.match(it.title, it.summary))
        was_hit = it.key in matched_then if in_place else bool(old_m and old_m.match(it.title, it.summary))
        line = f"{it.published.astimezone(tz):%Y-%m-%d %H:%M} {it.source}: {it.title}"
        if now_hit and not was_hit:
            added.append(line)
        elif was_hit and not now_hit:
            removed.append(line)
        elif now_hit:
            kept += 1
    if in_place:
        against = "against what it matched when each item arrived (this file is the one in force)"
    elif current is None:
        against = (f"no watchlist {edited.id!r} is in force in {settings.watchlists_dir} (the id is the file "
                   "name), so every match is new")
    else:
        against = f"against {current.source}"
    print(f"{edited.id}: {len(items)} items stored in the last {since}; would match {kept + len(added)} "
          f"({kept} unchanged, {len(added)} new, {len(removed)} no longer), {against}; times in {settings.timezone}",
          file=out)
    for line in added:
        print(f"  + {line}", file=out)
    for line in removed:
        print(f"  - {line}", file=out)
    if words:
        print_words_taken(new_m, items, out)
    return 0


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)  # (also through symlinks and relative paths)
    except OSError:
        return False


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
