"""``python -m resources.generations`` (``./dev generations``): plan, status, cut-over, rollback.

Reads the deployment's settings from the environment - QDRANT_URL / QDRANT_PATH / QDRANT_API_KEY /
QDRANT_COLLECTION (the base collection), CHECKPOINT_DIR, and for ``plan`` the model and patch
settings of the generation to prepare (OPENCLIP_MODEL, OPENCLIP_PRETRAINED, PATCH_*, ...):

    OPENCLIP_MODEL=ViT-B-16 ./dev generations plan     # prints the env a backfill of it needs
    ./dev generations status                           # active, previous, each one's coverage
    ./dev generations cut-over g1a2b3c4d5e             # once it covers the active one (--force)
    ./dev generations rollback
"""

from __future__ import annotations

import argparse
import json
import sys

from resources.embedding.encoder import FrameEncoder
from resources.generations.deployment import base_generation, checkpoint_root, opener, pointer_for, status
from resources.generations.records import generation_for
from resources.generations.switch import SwitchRefused, cut_over, rollback, save_record
from resources.settings import encoder_config_from_env, index_settings_from_env, patch_config_from_env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="generations", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("plan", help="record the generation of the configured model and settings; print the env that fills it")
    commands.add_parser("status", help="the active generation, the previous one, and every generation's coverage of the active")
    cut = commands.add_parser("cut-over", help="make a generation the active one")
    cut.add_argument("generation")
    cut.add_argument("--force", action="store_true", help="switch even if it does not cover the active generation")
    commands.add_parser("rollback", help="make the previous generation active again")
    args = parser.parse_args(argv)

    settings = index_settings_from_env()
    root = checkpoint_root()
    pointer = pointer_for(settings)
    try:
        if args.command == "plan":
            config, patch = encoder_config_from_env(), patch_config_from_env()
            dim = FrameEncoder.load(config).info.embed_dim
            generation = generation_for(config, patch, settings.collection, root, embed_dim=dim)
            save_record(generation)
            print(f"# generation {generation.name}: {generation.model} ({generation.pretrained}), patches {patch.fingerprint()}, {dim}-d")
            print("# fill it with a pipeline run or backfill under this environment, then cut over:")
            for name, value in generation.env().items():
                print(f"export {name}={value}")
        elif args.command == "cut-over":
            state = cut_over(pointer, base_generation(settings), args.generation, opener(settings), force=args.force)
            print(f"active: {state.active} (previous: {state.previous})")
        elif args.command == "rollback":
            state = rollback(pointer)
            print(f"active: {state.active} (previous: {state.previous})")
        else:
            print(json.dumps(status(pointer, root, settings), indent=2))
    except SwitchRefused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
