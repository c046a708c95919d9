"""What every benchmark does at the end: save its figures as JSON beside the printed table."""

from __future__ import annotations

import json
from pathlib import Path


def write_results(path: Path, results: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    print(f"wrote {path}")
