"""Manage the ``videos`` partitions from the command line (the sensor does this by itself).

    python -m pipelines.videos add 1 2 3     # register videos 1, 2 and 3
    python -m pipelines.videos list
    python -m pipelines.videos discover      # register every video the frame source lists

Uses the Dagster instance of ``$DAGSTER_HOME``, like ``dagster dev`` and the CLI.
"""

from __future__ import annotations

import argparse
import sys

import dagster as dg

from assets.videos import VIDEOS_PARTITIONS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.videos", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="register video ids as partitions")
    add.add_argument("video_ids", nargs="+", type=int)
    sub.add_parser("list", help="print the registered video ids")
    sub.add_parser("discover", help="register every video the configured frame source lists")
    args = parser.parse_args(argv)

    instance = dg.DagsterInstance.get()
    known = set(instance.get_dynamic_partitions(VIDEOS_PARTITIONS))
    if args.command == "list":
        print("\n".join(sorted(known, key=int)))
        return 0
    if args.command == "discover":
        from pipelines.definitions import defs

        source = (defs.resources or {})["frames"].source()
        ids = [listing.video_id for listing in source.list_videos()]
    else:
        ids = args.video_ids
    new = [str(i) for i in ids if str(i) not in known]
    instance.add_dynamic_partitions(VIDEOS_PARTITIONS, new)
    print(f"registered {len(new)} new video(s): {' '.join(new) or '-'} ({len(known) + len(new)} in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
