"""Which veto or headline requirement of a watchlist's rules would a search change, and does the change hold
on sets the search never saw? A probe for the list's maintainer, not a feature.

    .venv/bin/python bench/probe_rule_search.py WATCHLIST [--test-from holdout52] [--min-gain 3] [--rounds 8]
        [--watchlists DIR]

Greedy: in each round every single toggle is tried (a group added to or removed from a rule's `unless_title`
or `unless_any`, or one of the rule's own groups added to or removed from its `title`), and the one that
raises F1 most on the training items is kept, as long as it moves at least `--min-gain` items. Training
items: the tuning part and the held-back sets before `--test-from`; the sets from there on are only scored,
after each round, so the figures show whether what the search found generalises. Labels as
`eval_matching.py` scores them. Which groups an item has (in the headline, in what the list reads) comes
from one-group watchlists through the shipped matcher, so the probe's decisions are the matcher's; NEAR
rules keep their distance test as the matcher applies it.

It proposes; a change goes into the YAML by hand, with a comment an admin can read and a test.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.eval_matching import BLIND_SETS, CORPUS, READINGS, _f1, _pr, _tally, corpus_rows, reader_labels  # noqa: E402
from bench.probe_learned_matching import group_probes  # noqa: E402
from bot.config import Rule, Watchlist, load_config  # noqa: E402
from bot.match import Matcher  # noqa: E402

FIELDS = ("unless_title", "unless_any", "title")


@dataclass(frozen=True)
class Seen:
    """What one item offers a watchlist's rules."""

    present: frozenset[str]  # groups in what the list reads (exclusions applied)
    titled: frozenset[str]  # groups in the headline
    near_ok: tuple[bool, ...]  # per rule: its NEAR test holds (True for rules without one)
    want: bool
    train: bool


def probes(wl: Watchlist) -> list[Watchlist]:
    """The one-group watchlists (exclusions applied) and one per NEAR rule, without vetoes."""
    return group_probes(wl, exclusions=True) + [replace(wl, id=f"n:{i}", rules=(Rule(groups=r.groups, near=r.near),))
                                                for i, r in enumerate(wl.rules) if r.near is not None]


def holds(rule: dict[str, Any], item: Seen) -> bool:
    return (item.near_ok[rule["index"]] and rule["groups"] <= item.present and rule["title"] <= item.titled
            and not (rule["unless"] and rule["unless"] <= item.present)
            and not rule["unless_any"] & item.present and not rule["unless_title"] & item.titled)


def counts(rules: list[dict[str, Any]], items: list[Seen], train: bool) -> tuple[int, int, int]:
    tally = [0, 0, 0]
    for item in items:
        if item.train == train:
            _tally(tally, any(holds(r, item) for r in rules), item.want)
    return tally[0], tally[1], tally[2]


def f1(c: tuple[int, int, int]) -> float:
    return _f1(*_pr(*c))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("watchlist")
    ap.add_argument("--test-from", default=BLIND_SETS[-6] if len(BLIND_SETS) >= 6 else BLIND_SETS[-1],
                    choices=BLIND_SETS, help="the first held-back set the search does not train on")
    ap.add_argument("--min-gain", type=int, default=3, help="items a kept toggle must move (found + false alerts)")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--watchlists", type=Path, default=ROOT / "watchlists")
    args = ap.parse_args()

    watchlists = load_config(args.watchlists).watchlists
    wl = next((w for w in watchlists if w.id == args.watchlist), None)
    if wl is None:
        print(f"no watchlist {args.watchlist!r}", file=sys.stderr)
        return 2
    shipped, probe = Matcher(watchlists), Matcher(probes(wl))
    test_sets = set(BLIND_SETS[BLIND_SETS.index(args.test_from):])
    rows = corpus_rows(sorted(CORPUS.glob("matching*.jsonl")), {label: reader_labels(label) for label in READINGS})
    rules = _editable(wl)
    items, mismatches = [], 0
    for row in rows:
        title, summary = row["title"], row.get("summary", "")
        hit = {m.watchlist for m in probe.match(title, summary)}
        item = Seen(frozenset(g for g in wl.groups if f"g:{g}" in hit),
                    frozenset(g for g in wl.groups if f"t:{g}" in hit),
                    tuple(r.near is None or f"n:{i}" in hit for i, r in enumerate(wl.rules)),
                    wl.id in row["labels"], row["part"] not in test_sets)
        items.append(item)
        mismatches += any(holds(r, item) for r in rules) != any(
            m.watchlist == wl.id for m in shipped.match(title, summary))
    print(f"{wl.id}: {sum(i.train for i in items)} training items, {len(items) - sum(i.train for i in items)} "
          f"test items ({args.test_from} on); probe decisions differing from the matcher's: {mismatches}")
    train, test = counts(rules, items, True), counts(rules, items, False)
    print(f"shipped: train tp/fp/fn {train} F1 {f1(train):.4f}; test {test} F1 {f1(test):.4f}")
    for n in range(args.rounds):
        best: tuple[float, tuple[int, int, int], str, list[dict[str, Any]]] | None = None
        for i, rule in enumerate(rules):
            for field in FIELDS:
                for g in sorted(wl.groups):
                    if (field == "title") != (g in rule["groups"]):
                        continue
                    new = [dict(r) for r in rules]
                    new[i] = dict(rule, **{field: rule[field] ^ {g}})
                    c = counts(new, items, True)
                    if f1(c) > f1(train) and (best is None or f1(c) > best[0]):
                        sign = "-" if g in rule[field] else "+"
                        change = f"rule {i} ({', '.join(sorted(rule['groups']))}): {field} {sign}{g}"
                        best = (f1(c), c, change, new)
        if best is None or abs(best[1][0] - train[0]) + abs(best[1][1] - train[1]) < args.min_gain:
            print("no further toggle moves enough items")
            break
        _, c, change, rules = best
        t = counts(rules, items, False)
        print(f"round {n + 1}: {change}\n  train {train} -> {c}, F1 {f1(train):.4f} -> {f1(c):.4f}; "
              f"test {test} -> {t}, F1 {f1(test):.4f} -> {f1(t):.4f}")
        train, test = c, t
    return 0


def _editable(wl: Watchlist) -> list[dict[str, Any]]:
    return [{"index": i, "groups": set(r.groups), "title": set(r.title), "unless": set(r.unless),
             "unless_any": set(r.unless_any), "unless_title": set(r.unless_title)} for i, r in enumerate(wl.rules)]


if __name__ == "__main__":
    sys.exit(main())
