"""What every benchmark does at the end: save its figures as JSON beside the printed table."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Iterable
from pathlib import Path


def write_results(path: Path, results: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    print(f"wrote {path}")


def stop_processes(processes: Iterable[subprocess.Popen | None]) -> None:
    """Stop servers the benchmark started with ``start_new_session=True``: SIGTERM to each one's
    process group, SIGKILL after 60 s, then SIGKILL to what is left of the group - dagster-daemon's
    code servers outlive both the daemon and a SIGTERM to their group."""
    for process in processes:
        if process is None or process.poll() is not None:
            continue
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):  # the group is gone: nothing left over
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
