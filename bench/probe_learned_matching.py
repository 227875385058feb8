"""Would a model learned from the labelled corpus generalise to later held-back sets better than the rules?
A probe, not a feature.

    .venv/bin/python bench/probe_learned_matching.py [--block 8] [--threshold 0.5]

Forward chaining, in the order the held-back sets were written: for each block of sets (holdout13 onwards,
`--block` sets at a time), a logistic regression is trained on everything written before the block (the
tuning part, the first held-back part and the earlier sets) and scored on the block. Three models per
watchlist:
- words: the folded, stemmed words of the headline and of the teaser (kept apart);
- words+rules: the same, plus the watchlist's groups found in the headline and in the lead (each group
  as a one-group watchlist through the shipped matcher) and whether the watchlist's rules fire;
- rules AND model: the rules, vetoed where words+rules scores below the threshold.
Pure Python (no new dependency); labels as `eval_matching.py` scores them (blind readers for the treaty
and Kursk lists).

Caveat: the rules are today's lists, which were revised after most of these sets were measured, so the
rules' figures (and the words+rules model, which sees their decision) lean favourable on every block but
the sets measured after the lists were last changed. The words-only model has no such lean.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.eval_matching import BLIND_SETS, CORPUS, READINGS, _f1, _pr, _tally, corpus_rows, reader_labels  # noqa: E402
from bot.config import Rule, Watchlist, load_config  # noqa: E402
from bot.match import Matcher, stem  # noqa: E402
from bot.text import fold, words  # noqa: E402

FIRST_BLOCKED = 13  # the sets before this one were few and small; they only ever train
EPOCHS, RATE, L2, MIN_COUNT = 15, 0.1, 1e-4, 3


def group_probes(wl: Watchlist, exclusions: bool = False) -> list[Watchlist]:
    """One watchlist per group of `wl` (matches when the group does), and one per group in the headline; with
    `exclusions`, the list's exclusions veto them as they veto the list."""
    out = []
    for g in wl.groups:
        one = replace(wl, id=f"g:{g}", groups={g: wl.groups[g]}, rules=(Rule(groups=(g,)),),
                      exclude=wl.exclude if exclusions else ())
        out += [one, replace(one, id=f"t:{g}", rules=(Rule(groups=(g,), title=(g,)),))]
    return out


def features(rows: list[dict[str, Any]], wl: Watchlist, shipped: Matcher) -> list[tuple[set[str], set[str], bool]]:
    """(words, words + groups + rule decision, rules fire) per row."""
    probes = Matcher(group_probes(wl))
    out = []
    for row in rows:
        title, summary = row["title"], row.get("summary", "")
        bag = {"t:" + stem(w) for w in words(fold(title))} | {"s:" + stem(w) for w in words(fold(summary))}
        fired = any(m.watchlist == wl.id for m in shipped.match(title, summary))
        extra = {m.watchlist for m in probes.match(title, summary)} | ({"RULES"} if fired else set())
        out.append((bag, bag | extra, fired))
    return out


class Logistic:
    """L2-regularised logistic regression over sparse binary features, by stochastic gradient descent."""

    def __init__(self, data: list[tuple[set[str], bool]]) -> None:
        counts = Counter(f for feats, _ in data for f in feats)
        self.vocab = {f for f, n in counts.items() if n >= MIN_COUNT}
        self.w: dict[str, float] = defaultdict(float)
        self.b = 0.0
        data = list(data)
        rnd = random.Random(1)
        for _ in range(EPOCHS):
            rnd.shuffle(data)
            for feats, y in data:
                grad = self.prob(feats) - y
                self.b -= RATE * grad
                for f in feats:
                    if f in self.vocab:
                        self.w[f] -= RATE * (grad + L2 * self.w[f])

    def prob(self, feats: set[str]) -> float:
        z = self.b + sum(self.w[f] for f in feats if f in self.vocab)
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))


def pr(counts: list[int]) -> str:
    p, r = _pr(*counts)
    return f"{p:.3f}/{r:.3f} F1 {_f1(p, r):.3f}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--block", type=int, default=8, help="held-back sets per block")
    ap.add_argument("--threshold", type=float, default=0.5, help="model probability that counts as a match")
    args = ap.parse_args()
    rows = corpus_rows(sorted(CORPUS.glob("matching*.jsonl")), {label: reader_labels(label) for label in READINGS})
    config = load_config(ROOT / "watchlists")
    shipped = Matcher(config.watchlists)
    rank = {p: i for i, p in enumerate(["tune", "holdout", *BLIND_SETS])}  # the order the parts were written in
    later = BLIND_SETS[BLIND_SETS.index(f"holdout{FIRST_BLOCKED}"):]
    chunks = [later[i : i + args.block] for i in range(0, len(later), args.block)]
    print(f"{len(rows)} items; blocks: {', '.join(f'{c[0]}-{c[-1][7:]}' for c in chunks)}; "
          f"threshold {args.threshold}; P/R per block, then over all blocks")
    for wl in config.watchlists:
        feats = features(rows, wl, shipped)
        total: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        print(wl.id)
        for chunk in chunks:
            first = rank[chunk[0]]
            train = [i for i, r in enumerate(rows) if rank[r["part"]] < first]
            test = [i for i, r in enumerate(rows) if r["part"] in chunk]
            bag_model = Logistic([(feats[i][0], wl.id in rows[i]["labels"]) for i in train])
            full_model = Logistic([(feats[i][1], wl.id in rows[i]["labels"]) for i in train])
            counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
            for i in test:
                want = wl.id in rows[i]["labels"]
                full = full_model.prob(feats[i][1]) >= args.threshold
                for name, got in (("rules", feats[i][2]), ("words", bag_model.prob(feats[i][0]) >= args.threshold),
                                  ("words+rules", full), ("rules AND model", feats[i][2] and full)):
                    _tally(counts[name], got, want)
            for name, c in counts.items():
                total[name] = [a + b for a, b in zip(total[name], c, strict=True)]
            print(f"  {chunk[0]}-{chunk[-1][7:]:3} ({len(test):4} items, {len(train):4} to learn from)  " +
                  "  ".join(f"{name} {pr(c)}" for name, c in counts.items()))
        print("  all blocks" + " " * 33 + "  ".join(f"{name} {pr(c)}" for name, c in total.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
