"""The labelled corpus the quality figures rest on is well-formed: a broken line, a reused id or a
held-back item filed under tuning would silently change what `bench/eval_matching.py` reports."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "bench" / "corpus"
LABELS = {"dprk-troops", "kursk-front", "russia-dprk-treaty"}
LANGS = {"de", "en", "ru", "uk", "ko"}
FIELDS = ("id", "lang", "title", "summary", "labels", "split", "source_url", "event", "published")


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_matching_corpus_items_are_complete_unique_and_in_the_right_part() -> None:
    files = sorted(CORPUS.glob("matching*.jsonl"))
    assert len(files) > 10
    seen: dict[str, str] = {}
    for path in files:
        held_back = re.fullmatch(r"matching_holdout\d+\.jsonl", path.name) is not None
        tuning = path.name.startswith("matching_extra")
        for row in _rows(path):
            where = f"{path.name} {row.get('id')}"
            assert all(row.get(f) not in (None, "") for f in FIELDS if f != "labels"), where
            assert row["id"] not in seen, f"{where}: id also in {seen.get(row['id'])}"
            seen[row["id"]] = path.name
            assert row["lang"] in LANGS, where
            assert set(row["labels"]) <= LABELS, where
            assert row["source_url"].startswith(("http://", "https://")), where
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d)?Z", row["published"]), where
            if held_back:
                assert row["split"] == "holdout", where
            elif tuning:
                assert row["split"] == "tune", where
            else:
                assert row["split"] in ("tune", "holdout"), where


def test_second_reader_labels_only_held_back_items() -> None:
    held = {row["id"] for path in CORPUS.glob("matching*.jsonl") for row in _rows(path) if row["split"] == "holdout"}
    second = _rows(CORPUS / "second_reader.jsonl")
    assert second
    for row in second:
        assert row["id"] in held, row["id"]
        assert set(row["labels"]) <= LABELS, row["id"]


def _readers(name: str, field: str, keys: Callable[[dict[str, Any]], tuple[str, ...]],
             known: set[str]) -> dict[tuple[str, ...], set[str]]:
    """Who read each item (or pair) of a blind-readings file; every reading names known items, holds booleans,
    and no reader reads the same thing twice."""
    readers: dict[tuple[str, ...], set[str]] = {}
    for row in _rows(CORPUS / name):
        key = keys(row)
        assert set(key) <= known, row
        assert isinstance(row[field], bool) and isinstance(row["unsure"], bool), row
        assert row["reader"] not in readers.setdefault(key, set()), f"{key} read twice by {row['reader']}"
        readers[key].add(row["reader"])
    return readers


def _item(row: dict[str, Any]) -> tuple[str, ...]:
    return (row["id"],)


def test_every_held_back_item_has_five_blind_treaty_readings() -> None:
    # eval_matching scores the treaty list against the majority of these readings; an item without them would
    # quietly fall back to the writer's label, and an even number of readings could tie.
    split = {row["id"]: row["split"] for path in CORPUS.glob("matching*.jsonl") for row in _rows(path)}
    readers = _readers("treaty_readers.jsonl", "treaty", _item, set(split))
    for item, part in split.items():
        v = readers.get((item,), set())
        if part == "holdout":
            assert {"F", "G", "J", "K", "L"} <= v, item
        elif "T" in v or "U" in v:
            assert {"T", "U", "J", "K", "L"} <= v, item


def test_every_kursk_reading_has_its_five_readers() -> None:
    known = {row["id"] for path in CORPUS.glob("matching*.jsonl") for row in _rows(path)}
    readers = _readers("kursk_readers.jsonl", "kursk", _item, known)
    assert readers and all(v == {"M", "N", "O", "P", "Q"} for v in readers.values())


def test_every_troop_reading_has_its_five_readers() -> None:
    known = {row["id"] for path in CORPUS.glob("matching*.jsonl") for row in _rows(path)}
    readers = _readers("troops_readers.jsonl", "troops", _item, known)
    assert readers and all(v == {"R", "S", "W", "X", "Y"} for v in readers.values())


def test_every_dedup_pair_has_five_readings_of_items_that_exist() -> None:
    ids = {row["id"] for name in ("dedup.jsonl", "dedup_sameday.jsonl") for row in _rows(CORPUS / name)}
    pairs = _readers("dedup_readers.jsonl", "same", lambda row: (row["a"], row["b"]), ids)
    assert pairs and all(v == {"R1", "R2", "R3", "R4", "R5"} for v in pairs.values())
