"""Story folding quality on the duplicate corpus, and the cost of one check with 100,000 items indexed.

    .venv/bin/python bench/eval_dedup.py [--errors] [--index-size 100000]

Runs on dedup.jsonl and dedup_sameday.jsonl (near-misses hours from the story they resemble), then
checks precision again on the matching corpus, whose events are labelled independently.

precision = share of folds that join two items of the same story;
recall = share of items whose story already appeared earlier (same language) that were folded.
Targets: precision >= 0.98, recall >= 0.85, one check <= 1 ms with 100,000 items in the window.

"Same story" is, by default, what most of five blind readers said (`dedup_readers.jsonl`): for each later
item and the first item of its story in that language, and for each same-day near-miss and the story it
resembles, would a journalist who has the first alert want a second one? A later item the majority calls
news of its own becomes a story of its own; a near-miss the majority calls the same story joins it.
`--labels writers` keeps the stories as the corpus writer grouped them; both are printed.
"""

from __future__ import annotations

import argparse
import random
import string
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._corpus import read_jsonl  # noqa: E402
from bot.dedup import SIMILARITY_THRESHOLD, StoryIndex, item_from_record  # noqa: E402


def reader_stories(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with each item's story as most of the blind pair readers decided it."""
    votes: dict[tuple[str, str], list[bool]] = {}
    for o in read_jsonl(ROOT / "bench" / "corpus" / "dedup_readers.jsonl"):
        votes.setdefault((o["a"], o["b"]), []).append(o["same"])
    by_later: dict[str, list[tuple[str, list[bool]]]] = {}
    for (a, b), v in votes.items():
        by_later.setdefault(b, []).append((a, v))
    story = {r["id"]: r["story"] for r in rows}
    out = []
    for r in rows:
        new = dict(r)
        for a, v in by_later.get(r["id"], []):
            if 2 * sum(v) == len(v):
                continue
            same = 2 * sum(v) > len(v)
            if same and story[a] != r["story"]:
                new["story"] = story[a]  # a near-miss the readers call the same story
            elif not same and story[a] == r["story"]:
                new["story"] = f"{r['story']}/{r['id']}"  # a later report the readers call news of its own
        out.append(new)
    return out


def quality(rows: list[dict[str, Any]], show: bool, threshold: float = SIMILARITY_THRESHOLD,
            quiet: bool = False) -> tuple[float, float]:
    index = StoryIndex(threshold=threshold)
    story_of = {r["id"]: r["story"] for r in rows}
    seen: set[tuple[str, str]] = set()
    folds = correct = should = folded_right = 0
    by_kind: dict[str, list[int]] = {}
    for r in rows:
        item = item_from_record(r)
        dup = index.check(item, r["id"])
        key = (r["story"], (r.get("lang") or "")[:2])
        earlier = key in seen
        seen.add(key)
        if earlier:
            should += 1
            by_kind.setdefault(r.get("kind", "?"), [0, 0])[1] += 1
        if dup is not None:
            folds += 1
            if story_of[dup] == r["story"]:
                correct += 1
                if earlier:
                    folded_right += 1
                    by_kind[r.get("kind", "?")][0] += 1
            elif show:
                other = next(x["title"] for x in rows if x["id"] == dup)
                print(f"WRONG MERGE {r['id']} -> {dup}: {r['title']!r} | {other!r}")
        elif earlier and show:
            print(f"MISSED      {r['id']} ({r['story']}, {r.get('kind')}): {r['title']!r}")
    precision = correct / folds if folds else 1.0
    recall = folded_right / should if should else 1.0
    if quiet:
        return precision, recall
    print(f"dedup corpus: {len(rows)} items, {len(set(story_of.values()))} stories, {should} later copies; "
          f"{folds} folds, {correct} right")
    print(f"precision {precision:.3f} (target >= 0.98), recall {recall:.3f} (target >= 0.85)")
    for kind, (got, total) in sorted(by_kind.items()):
        print(f"  recall on {kind} copies: {got}/{total} = {got / total:.2f}")
    return precision, recall


def cross_event(paths: list[Path], threshold: float = SIMILARITY_THRESHOLD) -> tuple[int, int]:
    """A second precision check on independent data: the matching corpus has many different events with
    the same actors, often on the same day; any fold between two of its events is a wrong merge."""
    rows = read_jsonl(*paths)
    rows.sort(key=lambda r: r.get("published", ""))
    index = StoryIndex(threshold=threshold)
    event = {r["id"]: r["event"] for r in rows}
    folds = wrong = 0
    for r in rows:
        dup = index.check(item_from_record({**r, "link": r.get("link") or f"https://example.org/{r['id']}"}), r["id"])
        if dup is not None:
            folds += 1
            wrong += event[dup] != r["event"]
    return folds, wrong


def speed(rows: list[dict[str, Any]], size: int) -> None:
    rng = random.Random(3)
    vocab = list({w for r in rows for w in (r["title"] + " " + r.get("summary", "")).split()})
    index = StoryIndex(window=10 * 86400)
    now = datetime(2025, 1, 1, tzinfo=UTC)
    start = time.perf_counter()
    for i in range(size):
        words = rng.choices(vocab, k=35) + ["".join(rng.choices(string.ascii_lowercase, k=8)) for _ in range(5)]
        index.add(i, " ".join(words[:10]), " ".join(words[10:]), rng.choice(["de", "en", "ru"]),
                  now - timedelta(seconds=rng.randint(0, 40 * 3600)))
    built = time.perf_counter() - start
    probes = [item_from_record(r) for r in rows]
    start = time.perf_counter()
    n = 0
    for _ in range(5):
        for it in probes:
            index.nearest(it.title, it.summary, it.lang, now)
            n += 1
    per = (time.perf_counter() - start) / n * 1000
    print(f"index of {size:,} items built in {built:.1f} s; one check: {per:.3f} ms (target <= 1 ms)")


def main() -> int:
    ap = argparse.ArgumentParser()
    corpus = ROOT / "bench" / "corpus"
    ap.add_argument("--corpus", type=Path, nargs="+", default=[corpus / "dedup.jsonl", corpus / "dedup_sameday.jsonl"])
    ap.add_argument("--errors", action="store_true")
    ap.add_argument("--index-size", type=int, default=100_000)
    ap.add_argument("--labels", choices=["readers", "writers"], default="readers",
                    help="same story as most blind readers said (default) or as the writer grouped the items")
    args = ap.parse_args()
    written = read_jsonl(*args.corpus)
    written.sort(key=lambda r: r.get("published", ""))
    read = reader_stories(written)
    rows = read if args.labels == "readers" else written
    print(f"stories: {'as most blind readers said' if args.labels == 'readers' else 'as the writer grouped them'} "
          f"({sum(a['story'] != b['story'] for a, b in zip(read, written, strict=True))} items moved by the readers)")
    quality(rows, args.errors)
    p, r = quality(written if args.labels == "readers" else read, False, quiet=True)
    print(f"  with the stories {'as the writer grouped them' if args.labels == 'readers' else 'as the readers said'}: "
          f"precision {p:.3f}, recall {r:.3f}")
    matching = sorted(corpus.glob("matching*.jsonl"))
    folds, wrong = cross_event(matching)
    print(f"matching corpus as a second precision check: {folds} folds, {wrong} across different events")
    print("the trade-off (threshold: dedup precision / recall; matching-corpus folds / wrong):")
    for t in (0.30, 0.35, 0.40, 0.44, 0.50):
        p, r = quality(rows, False, threshold=t, quiet=True)
        f, w = cross_event(matching, threshold=t)
        mark = "  <- shipped" if abs(t - SIMILARITY_THRESHOLD) < 1e-9 else ""
        print(f"  {t:.2f}: {p:.3f} / {r:.3f}; {f} / {w}{mark}")
    if args.index_size:
        speed(rows, args.index_size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
