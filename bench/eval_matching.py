"""Precision, recall and F1 of the shipped watchlists on the labelled corpus (tune and holdout parts).

    .venv/bin/python bench/eval_matching.py [--errors tune|holdout] [--labels readers|writers]

The holdout parts are never used for tuning: only look at their errors after a change is final.
holdout = the held-back part of matching.jsonl; holdoutN = matching_holdoutN.jsonl, held-back sets
written later by someone who had not seen the watchlists (found by name); held = all of them together.

The russia-dprk-treaty and kursk-front labels are scored as most of their blind readers gave them
(`treaty_readers.jsonl`, `kursk_readers.jsonl`), not as the one writer of each item did: where "the cooperation
around it" ends, and whether a story that names Kursk is about the war there, is read differently by different
careful readers, so each item's label is the majority of five readings (the dprk-troops label too, where blind
readers read it: holdout40 to 43). `--labels writers` scores against the writers' labels instead; the summary prints
both.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._corpus import read_jsonl  # noqa: E402
from bot.config import load_config  # noqa: E402
from bot.match import Matcher  # noqa: E402

CORPUS = ROOT / "bench" / "corpus"
BLIND_SET = re.compile(r"matching_(holdout\d+)\.jsonl")  # a later held-back set, reported under its name
BLIND_SETS = sorted((m.group(1) for p in CORPUS.glob("matching_holdout*.jsonl") if (m := BLIND_SET.fullmatch(p.name))),
                    key=lambda name: int(name[len("holdout"):]))


TREATY = "russia-dprk-treaty"
KURSK = "kursk-front"
TROOPS = "dprk-troops"

# Blind readers (`<label>_readers.jsonl`: one line per reading, {"id", "reader", "<field>": bool, "unsure"}). An
# item's label is the majority of its primary readings. Treaty: F and G read every held-back item, T and U the
# tuning items that name both countries, alert on the treaty list or carry the writers' label, and J, K and L all
# of those items again, tuning and held-back mixed in each reader's batch (so a reader's leaning weighs on both
# parts alike); H and V broke ties when only two readings existed; E read two sets as a pilot and is not counted.
# Kursk: M, N, O, P and Q read every item that names Kursk or Sudzha, carries the writers' label or alerts on the
# list, tuning and held-back mixed. Troops: R, S, W, X and Y read every item of holdout40 to 43 (the other items keep
# the writers' label, which the earlier second readers A-D confirmed almost fully).
READINGS = {
    TREATY: ("treaty_readers.jsonl", "treaty", {"F", "G", "T", "U", "J", "K", "L"}, ("H", "V")),
    KURSK: ("kursk_readers.jsonl", "kursk", {"M", "N", "O", "P", "Q"}, ()),
    TROOPS: ("troops_readers.jsonl", "troops", {"R", "S", "W", "X", "Y"}, ()),
}


def reader_labels(label: str) -> dict[str, bool]:
    """Item id -> has the label, as most of its blind readers decided."""
    name, field, primary, tie_breakers = READINGS[label]
    votes: dict[str, dict[str, bool]] = defaultdict(dict)
    for o in read_jsonl(CORPUS / name):
        votes[o["id"]][o["reader"]] = o[field]
    out = {}
    for item, v in votes.items():
        yes = sum(v[r] for r in primary if r in v)
        no = sum(not v[r] for r in primary if r in v)
        if yes != no:
            out[item] = yes > no
        elif yes and (third := next((r for r in tie_breakers if r in v), None)):
            out[item] = v[third]
    return out


def corpus_rows(paths: Iterable[Path], readers: dict[str, dict[str, bool]] | None) -> list[dict[str, Any]]:
    """Every item of these corpus files with its `part` (tune, holdout, or a later held-back set by name, reported
    apart) and its `writer_labels`; its `labels` are the blind readers' majority where they read it (the writers'
    labels when `readers` is None)."""
    rows = []
    for path in paths:
        blind = BLIND_SET.fullmatch(path.name)
        for row in read_jsonl(path):
            row["part"] = blind.group(1) if blind else row["split"]
            row["writer_labels"] = list(row.get("labels", []))
            if readers is not None:
                row["labels"] = [x for x in row["writer_labels"] if x not in readers or row["id"] not in readers[x]]
                row["labels"] += [x for x in readers if readers[x].get(row["id"])]
            rows.append(row)
    return rows


def _tally(counts: list[int], got: bool, want: bool) -> str | None:
    """Count one item into [tp, fp, fn]; "FP" or "FN" when it was an error."""
    if got and want:
        counts[0] += 1
    elif got or want:
        counts[1 if got else 2] += 1
        return "FP" if got else "FN"
    return None


def _pr(tp: int, fp: int, fn: int) -> tuple[float, float]:
    """Precision and recall (1.0 when there is nothing to count)."""
    return tp / (tp + fp) if tp + fp else 1.0, tp / (tp + fn) if tp + fn else 1.0


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", type=Path, nargs="+",
                    default=sorted(CORPUS.glob("matching*.jsonl")))
    ap.add_argument("--watchlists", type=Path, default=ROOT / "watchlists")
    ap.add_argument("--errors", choices=["tune", "holdout", *BLIND_SETS],
                    help="list false positives/negatives of a part")
    ap.add_argument("--labels", choices=["readers", "writers"], default="readers",
                    help="the treaty and Kursk labels as the blind readers gave them (default) or as the writers did")
    args = ap.parse_args()
    readers = {label: reader_labels(label) for label in READINGS}
    config = load_config(args.watchlists)
    matcher = Matcher(config.watchlists)
    ids = [w.id for w in config.watchlists]
    rows = corpus_rows(args.corpus, readers if args.labels == "readers" else None)
    # counts[part][watchlist] = [tp, fp, fn]; other[label][part] = the list against the other labels
    counts: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0, 0]))
    other: dict[str, dict[str, list[int]]] = {label: defaultdict(lambda: [0, 0, 0]) for label in readers}
    errors: list[str] = []
    for row in rows:
        got = {m.watchlist for m in matcher.match(row["title"], row.get("summary", ""))}
        want = set(row.get("labels", []))
        for label, read in readers.items():
            alt = (label in row["writer_labels"]) if args.labels == "readers" else read.get(row["id"])
            if alt is not None:
                _tally(other[label][row["part"]], label in got, alt)
        for wl in ids:
            kind = _tally(counts[row["part"]][wl], wl in got, wl in want)
            if kind and args.errors == row["part"]:
                errors.append(f"{kind} {wl:19} {row['id']} [{row['lang']}] {row['title']} | {row.get('summary', '')}")
    for label, read in readers.items():
        print(f"{label} label: {'blind readers' if args.labels == 'readers' else 'writers'} "
              f"({sum(1 for r in rows if r['id'] in read)} items read)")
    print(f"corpus: {len(rows)} items ({sum(1 for r in rows if r.get('labels'))} with labels, "
          f"{sum(1 for r in rows if not r.get('labels'))} negatives)")
    print(f"{'part':8} {'watchlist':20} {'P':>6} {'R':>6} {'F1':>6}   tp  fp  fn")
    held = ["holdout"] + [p for p in BLIND_SETS if any(r["part"] == p for r in rows)]
    for wl in ids:  # all held-back sets together
        counts["held"][wl] = [sum(counts[p][wl][k] for p in held) for k in range(3)]
    parts = ["tune", *held] + (["held"] if len(held) > 1 else [])
    worst: dict[str, float] = {}
    for part in parts:
        for wl in ids:
            tp, fp, fn = counts[part][wl]
            p, r = _pr(tp, fp, fn)
            print(f"{part:8} {wl:20} {p:6.3f} {r:6.3f} {_f1(p, r):6.3f} {tp:4} {fp:3} {fn:3}")
            worst[part] = min(worst.get(part, 1.0), p / 0.95, r / 0.90)
    for part in parts[1:]:
        name = {"held": "all held-back sets"}.get(part, part)
        print(f"{name}: targets (P >= 0.95, R >= 0.90 per watchlist)", "met" if worst[part] >= 1.0 else "NOT met")
    for label in (x for x in readers if x in ids and readers[x]):
        o = other[label]
        o["held"] = [sum(o[p][k] for p in held) for k in range(3)]
        print(f"{label} against the {'writers' if args.labels == 'readers' else 'blind readers'}' labels:")
        for part in parts:
            p, r = _pr(*o[part])
            print(f"  {part:9} P {p:.3f} R {r:.3f}  tp {o[part][0]} fp {o[part][1]} fn {o[part][2]}")
    second_reader(rows, ids)
    for e in errors:
        print(e)
    return 0


def second_reader(rows: list[dict[str, Any]], ids: list[str]) -> None:
    """How far careful readers agree: second readers labelled held-back items blind (text only, the three
    definitions only). Their labels scored against the corpus's show how much of the target is label
    judgement, not matching. Reader A read 220 items of the first five sets, reader B all of holdout8 and 9,
    reader C all of holdout10, reader D all of holdout11."""
    corpus = {r["id"]: set(r.get("labels", [])) for r in rows}
    every = read_jsonl(CORPUS / "second_reader.jsonl")
    for reader in sorted({o.get("reader", "A") for o in every}):
        other = [o for o in every if o.get("reader", "A") == reader and o["id"] in corpus]
        if not other:
            continue
        same = sum(set(o["labels"]) == corpus[o["id"]] for o in other)
        print(f"second reader {reader}, {len(other)} held-back items labelled blind: identical labels on {same}; "
              f"their P/R against the corpus labels:")
        for wl in ids:
            c = [0, 0, 0]
            for o in other:
                _tally(c, wl in o["labels"], wl in corpus[o["id"]])
            p, r = _pr(*c)
            print(f"  {wl:20} {p:6.3f} {r:6.3f}")


if __name__ == "__main__":
    raise SystemExit(main())
