"""Write model files: random (meaningless) weights for unit tests, and a model folder in open_clip's
``local-dir:`` layout with its provenance in the weights' header (the trainer's output).

Run ``python -m resources.embedding.model_files make-tiny PATH`` to write random weights for tests.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import open_clip
import torch

from resources.embedding.weights import (
    LOCAL_DIR_CONFIG,
    LOCAL_DIR_WEIGHTS,
    PROVENANCE_KEY,
    RANDOM_WEIGHTS_MARKER,
    TINY_MODEL,
    Provenance,
)


def save_random_weights(path: str | Path, model: str = TINY_MODEL, seed: int = 0) -> Path:
    """Write randomly initialized weights of ``model`` to a marked ``.safetensors`` file.

    Deterministic in ``seed``. Loaded through :func:`load_clip` like any real checkpoint.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"random weights are written as .safetensors, got {path}")
    torch.manual_seed(seed)
    clip = open_clip.create_model(model, pretrained=None)
    state = {name: tensor.contiguous() for name, tensor in clip.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp), metadata={RANDOM_WEIGHTS_MARKER: "true", "model": model, "seed": str(seed)})
    tmp.replace(path)  # atomic: a reader never sees half a file
    return path


def save_model_dir(
    path: str | Path,
    model_cfg: Mapping[str, Any],
    state_dict: Mapping[str, torch.Tensor],
    provenance: Mapping[str, Any] | Provenance,
    preprocess_cfg: Mapping[str, Any] | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write a model in open_clip's ``local-dir:`` layout, its provenance in the weights' header.

    ``path/open_clip_config.json`` holds ``{"model_cfg", "preprocess_cfg"}`` (default preprocessing:
    open_clip's mean/std at the vision tower's image size) and ``path/open_clip_model.safetensors``
    the tensors, floating ones cast to ``dtype`` if given (fp16 halves the file; loading casts them
    back to the model's fp32), with ``framesearch.provenance`` = ``provenance`` as JSON. The folder's
    name becomes the architecture's name in model ids. Load it with
    ``load_clip(<any>, "local-dir:<path>")``.
    """
    from safetensors.torch import save_file

    record = provenance.as_dict() if isinstance(provenance, Provenance) else dict(provenance)
    text = json.dumps(record, sort_keys=True)
    Provenance.from_header(text, str(path))  # refuse a record the loader would refuse
    if "vision_cfg" not in model_cfg or "text_cfg" not in model_cfg or "embed_dim" not in model_cfg:
        raise ValueError("model_cfg needs embed_dim, vision_cfg and text_cfg (an open_clip architecture)")
    if preprocess_cfg is None:
        preprocess_cfg = {
            "size": model_cfg["vision_cfg"].get("image_size", 224),
            "mean": list(open_clip.OPENAI_DATASET_MEAN),
            "std": list(open_clip.OPENAI_DATASET_STD),
        }
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {
        name: (tensor.to(dtype) if dtype is not None and tensor.is_floating_point() else tensor).detach().cpu().contiguous()
        for name, tensor in state_dict.items()
    }
    config = {"model_cfg": dict(model_cfg), "preprocess_cfg": dict(preprocess_cfg)}
    # Weights first, each file replaced atomically: a reader never sees half a file.
    weights_tmp = folder / f"{LOCAL_DIR_WEIGHTS}.tmp"
    save_file(tensors, str(weights_tmp), metadata={PROVENANCE_KEY: text})
    weights_tmp.replace(folder / LOCAL_DIR_WEIGHTS)
    config_tmp = folder / f"{LOCAL_DIR_CONFIG}.tmp"
    config_tmp.write_text(json.dumps(config, indent=2) + "\n")
    config_tmp.replace(folder / LOCAL_DIR_CONFIG)
    return folder


def main(argv: list[str] | None = None) -> int:
    """``make-tiny PATH [--model NAME] [--seed N]``: write random weights for unit tests."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m resources.embedding.model_files")
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("make-tiny", help="write random (meaningless) weights to a .safetensors file")
    make.add_argument("path")
    make.add_argument("--model", default=TINY_MODEL)
    make.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    written = save_random_weights(args.path, args.model, args.seed)
    print(f"wrote RANDOM (untrained) weights for {args.model} to {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
