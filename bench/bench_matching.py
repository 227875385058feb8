"""Matching throughput: shipped watchlists and 100 generated watchlists of 50 terms, vs a naive loop.

    .venv/bin/python bench/bench_matching.py [--items 20000] [--runs 5]

The stream: real publisher items from ../shared/feeds/real with 10% on-topic corpus items, each with a
few random words (unseen names/numbers for the per-word cache). Also reported: an all-on-topic stream.
One core (the matcher is single-threaded Python); CPU time, not wall time.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import string
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rapidfuzz import fuzz  # noqa: E402

from bot.config import Rule, Term, Watchlist, load_config  # noqa: E402
from bot.match import Matcher  # noqa: E402


def make_items(n: int, rng: random.Random, topical_share: float = 0.1, fresh: int = 1) -> list[tuple[str, str]]:
    """A stream like a real poll: general news from the real publisher feeds in ../shared (when present),
    with `topical_share` of items from the labelled corpus; `fresh` random words per item stand for the
    names and numbers a per-word cache has not seen yet (news vocabularies add roughly one new word per
    35-word item once warm, by Heaps' law; 3 is a pessimistic stream)."""
    rows = [json.loads(line) for line in (ROOT / "bench" / "corpus" / "matching.jsonl").read_text().splitlines()]
    topical = [(r["title"], r["summary"]) for r in rows]
    general: list[tuple[str, str]] = []
    real = ROOT.parent / "shared" / "feeds" / "real"
    if real.is_dir():
        from datetime import UTC, datetime

        from bot.errors import ParseError
        from bot.models import FeedSpec
        from bot.parse import parse_feed

        spec = FeedSpec(id="b", url="https://example.org/", name="b", lang="")
        for path in sorted(real.glob("*.xml")):
            try:
                parsed = parse_feed(path.read_bytes(), spec, datetime.now(UTC))
            except ParseError:
                continue
            general += [(it.title, it.summary[:400]) for it in parsed]
    else:
        print("note: ../shared/feeds/real is absent; using only the topical corpus (a pessimistic stream)")
        topical_share = 1.0
    items = []
    for _ in range(n):
        title, summary = rng.choice(topical) if rng.random() < topical_share or not general else rng.choice(general)
        words = summary.split()
        for _ in range(min(fresh, len(words))):
            words[rng.randrange(len(words))] = "".join(rng.choices(string.ascii_letters, k=rng.randint(4, 11)))
        items.append((title, " ".join(words)))
    return items


def generated_watchlists(rng: random.Random, count: int = 100, terms: int = 50) -> list[Watchlist]:
    out = []
    for i in range(count):
        groups = {}
        for g in range(5):
            groups[f"g{g}"] = tuple(
                Term("".join(rng.choices(string.ascii_lowercase, k=rng.randint(5, 12))))
                for _ in range(terms // 5)
            )
        out.append(Watchlist(id=f"gen{i}", name=f"gen{i}", description="generated", groups=groups,
                             rules=(Rule(("g0", "g1")), Rule(("g2", "g3", "g4")))))
    return out


def run(matcher: Matcher, items: list[tuple[str, str]]) -> float:
    start = time.process_time()
    for title, summary in items:
        matcher.match(title, summary)
    return len(items) / (time.process_time() - start)


def naive(terms: list[str], items: list[tuple[str, str]]) -> float:
    start = time.process_time()
    for title, summary in items:
        text = f"{title} {summary}".lower()
        hits = 0
        for term in terms:
            hits += fuzz.partial_ratio(term, text) >= 88
    return len(items) / (time.process_time() - start)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=20000)
    ap.add_argument("--fresh-words", type=int, default=1, help="unseen words per item (default 1)")
    ap.add_argument("--runs", type=int, default=5, help="steady-state runs; the median is reported")
    ap.add_argument("--watchlists", type=Path, default=ROOT / "watchlists", help="watchlist folder to time")
    args = ap.parse_args()
    rng = random.Random(7)
    items = make_items(args.items, rng, fresh=args.fresh_words)
    dense = make_items(min(args.items, 5000), random.Random(8), topical_share=1.0)
    shipped = load_config(args.watchlists).watchlists
    shipped_terms = [s.lower() for w in shipped for g in w.groups.values() for t in g for s in t.spellings]
    m = Matcher(shipped)
    cold = run(m, items)
    # Steady state: the same vocabulary with fresh random words, over several streams. This 2-core machine
    # varies by about 10% from run to run, so the median of the runs is reported with their range.
    rates = sorted(run(m, make_items(args.items, random.Random(11 + k), fresh=args.fresh_words))
                   for k in range(args.runs))
    rate = statistics.median(rates)
    pessimistic = run(m, make_items(args.items, random.Random(99), fresh=3))
    print(f"shipped watchlists ({len(shipped)} lists, {len(shipped_terms)} spellings): {rate:,.0f} items/s "
          f"steady state, median of {len(rates)} runs ({rates[0]:,.0f}-{rates[-1]:,.0f}; target >= 50,000); "
          f"{cold:,.0f} from a cold start; {pessimistic:,.0f} with 3 unseen words per item")
    dense_rate = run(Matcher(shipped), dense)
    print(f"  same, on a stream of only on-topic corpus items (worst case): {dense_rate:,.0f} items/s")
    gen = generated_watchlists(rng)
    gen_terms = [t.term for w in gen for g in w.groups.values() for t in g]
    rate_gen = run(Matcher(gen), items)
    print(f"100 generated watchlists x 50 terms ({len(gen_terms)} terms): {rate_gen:,.0f} items/s "
          "(target >= 10,000)")
    sample = items[: max(200, args.items // 50)]
    n1 = naive(shipped_terms[:56], sample)
    print(f"naive partial_ratio loop, 56 terms: {n1:,.0f} items/s")
    n2 = naive(shipped_terms, sample)
    print(f"naive partial_ratio loop, {len(shipped_terms)} terms (the shipped lists): {n2:,.0f} items/s")
    n3 = naive(gen_terms, sample[:100])
    print(f"naive partial_ratio loop, {len(gen_terms)} terms (generated): {n3:,.0f} items/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
