"""Reading the labelled corpus files (JSON Lines) for the evaluation scripts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_jsonl(*paths: Path) -> list[dict[str, Any]]:
    """Every object of these files in order; a missing file reads as empty."""
    return [json.loads(line) for path in paths if path.exists()
            for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
