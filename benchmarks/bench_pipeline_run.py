"""What a one-video ``video_pipeline`` run costs against loading the code location.

    ./dev bench pipeline_run [--repo DIR] [--repeats 3] [--video 2]

On a throwaway DAGSTER_HOME, over the sample library (``var/samples``, made if missing), with the
checkpoints and the embedded index in a temp folder: registers the video, runs
``dagster job execute -m pipelines.definitions -j video_pipeline`` once to make it up to date, then
times, alternately and ``--repeats`` times each,

* the code location's load: a fresh ``python -c "import pipelines.definitions"`` (what every run's
  process pays before its first step), and
* a run of the up-to-date video: ``dagster job execute`` wall time (its own load included).

``--repo`` times another checkout (e.g. ``git archive <commit>`` of an older one) with this venv.
Prints the minimum and median of each, and the run minus the load: the overhead a run adds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout to time (default: this one)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--video", default="2", help="sample video id (default 2: 12 frames of 1280x720)")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(REPO))
    from pipelines.samples import ensure_sample_library

    videos = ensure_sample_library(REPO / "var" / "samples")
    with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        env = {
            **os.environ, "DAGSTER_HOME": str(home), "FRAMES_ROOT": str(videos),
            "CHECKPOINT_DIR": f"{tmp}/checkpoints", "QDRANT_PATH": f"{tmp}/qdrant", "PYTHONWARNINGS": "ignore",
        }
        env.pop("QDRANT_URL", None)
        python, dagster = str(BIN / "python"), str(BIN / "dagster")
        subprocess.run([python, "-m", "pipelines.videos", "add", args.video], cwd=args.repo, env=env, check=True, capture_output=True)
        run = [dagster, "job", "execute", "-m", "pipelines.definitions", "-j", "video_pipeline", "--tags", f'{{"dagster/partition": "{args.video}"}}']
        first = timed(run, args.repo, env)
        print(f"[bench] first run (embeds video {args.video}): {first:.1f} s")
        load, runs = [], []
        for _ in range(args.repeats):
            load.append(timed([python, "-c", "import pipelines.definitions"], args.repo, env))
            runs.append(timed(run, args.repo, env))
    print(f"[bench] code location load: min {min(load):.1f} s, median {statistics.median(load):.1f} s ({len(load)} times)")
    print(f"[bench] up-to-date one-video run: min {min(runs):.1f} s, median {statistics.median(runs):.1f} s")
    print(f"[bench] run - load: {min(runs) - min(load):.1f} s (minimums); load average now {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
