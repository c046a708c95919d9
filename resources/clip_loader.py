"""Find and load OpenCLIP weights: a hub tag, a local checkpoint file, or a ``local-dir:`` folder.

Real weights and the offline test model go through the same path: :func:`load_clip` resolves
``pretrained`` to a file (the hub cache, a download, or a path given by the user) and hands it to
open_clip's own loader. Weights that :func:`save_random_weights` made carry a marker in their
safetensors header, so everything built from them can say that its embeddings are meaningless.

Run ``python -m resources.clip_loader make-tiny PATH`` to write the offline model's weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import open_clip
import torch

log = logging.getLogger(__name__)

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
TINY_MODEL = "framesearch-tiny"
RANDOM_WEIGHTS_MARKER = "framesearch.random_init"
LOCAL_DIR_PREFIX = "local-dir:"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")

# Registered at import: open_clip then knows our architectures by name, like its own.
open_clip.add_model_config(MODEL_CONFIG_DIR)


class WeightsUnavailableError(RuntimeError):
    """The configured weights cannot be loaded here; the message says why and what to set instead."""


@dataclass(frozen=True)
class LoadedClip:
    """An open_clip model in eval mode with what is needed to feed it and to name its outputs."""

    model: torch.nn.Module
    tokenizer: object
    model_id: str  # names architecture and weights; part of every stored vector's provenance
    weights_source: str  # the tag, file or folder the weights came from
    weights_random: bool  # True for weights from save_random_weights: the embeddings mean nothing
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


@dataclass(frozen=True)
class ResolvedWeights:
    """What open_clip is asked to load, and how to name it."""

    model_name: str  # open_clip model name, or 'local-dir:<folder>'
    pretrained: str | None  # a local file, a reachable hub tag, or None for a local-dir folder
    tag: str | None = None  # the hub tag these weights are, when they are one (cached or not)


def hub_reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to ``url``'s host opens within ``timeout`` seconds.

    Checked before asking open_clip to download: offline, huggingface_hub retries for ~50 s.
    """
    parsed = urlparse(url)
    host, port = parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)
    if not host:
        return False
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _fix_hint(model: str) -> str:
    return (
        "To fix: set OPENCLIP_PRETRAINED to a local checkpoint file (.safetensors/.bin/.pt) or to "
        "'local-dir:/path/to/folder', or pre-fill the Hugging Face cache on a machine with internet "
        f"(python -c \"import open_clip; open_clip.create_model('{model}', pretrained='<tag>')\"). "
        f"For an offline run with meaningless random weights: python -m resources.clip_loader "
        f"make-tiny ./var/models/tiny.safetensors, then OPENCLIP_MODEL={TINY_MODEL} "
        "OPENCLIP_PRETRAINED=./var/models/tiny.safetensors."
    )


def _cached_hub_file(hf_repo: str) -> str | None:
    """The weights file of a hub repo if it is already in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    for filename in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
        # HF_HUB_CACHE is read per call (huggingface_hub reads it once, at import).
        found = try_to_load_from_cache(hf_repo, filename, cache_dir=os.environ.get("HF_HUB_CACHE"))
        if isinstance(found, str):
            return found
    return None


def resolve_weights(model: str, pretrained: str) -> ResolvedWeights:
    """Map ``(OPENCLIP_MODEL, OPENCLIP_PRETRAINED)`` to what open_clip should load.

    Fails fast with :class:`WeightsUnavailableError` (and how to fix it) when the weights are not
    on this machine and their hub cannot be reached.
    """
    if not pretrained:
        raise WeightsUnavailableError(f"OPENCLIP_PRETRAINED is empty. {_fix_hint(model)}")
    if pretrained.startswith(LOCAL_DIR_PREFIX):
        folder = Path(pretrained[len(LOCAL_DIR_PREFIX) :]).expanduser()
        if not folder.is_dir():
            raise WeightsUnavailableError(f"OPENCLIP_PRETRAINED folder not found: {folder}")
        if (folder / "open_clip_config.json").is_file():
            return ResolvedWeights(f"{LOCAL_DIR_PREFIX}{folder}", None)  # open_clip reads both there
        files = sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES)
        if not files:
            raise WeightsUnavailableError(f"no weights file ({', '.join(WEIGHT_SUFFIXES)}) in {folder}")
        files.sort(key=lambda p: p.suffix != ".safetensors")
        return ResolvedWeights(model, str(files[0]))
    if model not in open_clip.list_models():
        raise WeightsUnavailableError(
            f"unknown OPENCLIP_MODEL {model!r}; known: {', '.join(sorted(open_clip.list_models())[:20])}, …"
        )
    looks_like_path = pretrained.endswith(WEIGHT_SUFFIXES) or os.sep in pretrained
    if looks_like_path or Path(pretrained).is_file():
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise WeightsUnavailableError(f"OPENCLIP_PRETRAINED file not found: {path}. {_fix_hint(model)}")
        return ResolvedWeights(model, str(path))

    tags = open_clip.list_pretrained_tags_by_model(model)
    if pretrained not in tags:
        raise WeightsUnavailableError(
            f"OPENCLIP_PRETRAINED {pretrained!r} is neither a file nor a known tag for {model} "
            f"(tags: {', '.join(tags) or 'none'}). {_fix_hint(model)}"
        )
    cfg = open_clip.get_pretrained_cfg(model, pretrained)
    hf_repo = (cfg.get("hf_hub") or "").rstrip("/")
    if hf_repo:
        cached = _cached_hub_file(hf_repo)
        if cached:
            return ResolvedWeights(model, cached, tag=pretrained)
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co") if hf_repo else cfg.get("url", "")
    if not hub_reachable(endpoint):
        raise WeightsUnavailableError(
            f"weights {model}/{pretrained} are not in the local cache and {endpoint} cannot be "
            f"reached from this machine. {_fix_hint(model)}"
        )
    return ResolvedWeights(model, pretrained, tag=pretrained)


def _file_digest(path: str) -> str:
    """Content digest of a weights file; a safetensors header is hashed in canonical key order
    because its JSON key order is not stable between writes of the same tensors."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        if path.endswith(".safetensors"):
            header_len = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(header_len))
            digest.update(json.dumps(header, sort_keys=True).encode())
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def _is_random_weights(path: str | None) -> bool:
    if not path or not path.endswith(".safetensors"):
        return False
    from safetensors import safe_open

    with safe_open(path, framework="pt") as handle:
        return (handle.metadata() or {}).get(RANDOM_WEIGHTS_MARKER) == "true"


def weights_model_id(weights: ResolvedWeights) -> str:
    """The model id of resolved weights: ``<model>/<tag>``, ``<model>/file-<digest>``,
    ``<model>/random-<digest>`` (weights from :func:`save_random_weights`) or the local-dir."""
    if weights.tag is not None:
        return f"{weights.model_name}/{weights.tag}"
    if weights.pretrained is not None:
        kind = "random" if _is_random_weights(weights.pretrained) else "file"
        return f"{weights.model_name}/{kind}-{_file_digest(weights.pretrained)}"
    return weights.model_name


def load_clip(model: str, pretrained: str, device: str | torch.device = "cpu") -> LoadedClip:
    """Load an open_clip model in fp32 and eval mode on ``device``; see :func:`resolve_weights`."""
    weights = resolve_weights(model, pretrained)
    try:
        clip, _, _ = open_clip.create_model_and_transforms(
            weights.model_name, pretrained=weights.pretrained, device=device
        )
    except Exception as exc:  # open_clip raises RuntimeError/KeyError/OSError for bad checkpoints
        raise WeightsUnavailableError(
            f"open_clip could not load {weights.model_name} with weights {weights.pretrained}: {exc}"
        ) from exc
    clip.eval()
    random = weights.tag is None and _is_random_weights(weights.pretrained)
    model_id = weights_model_id(weights)
    preprocess = open_clip.get_model_preprocess_cfg(clip)
    size = preprocess.get("size", 224)
    return LoadedClip(
        model=clip,
        tokenizer=open_clip.get_tokenizer(weights.model_name),
        model_id=model_id,
        weights_source=weights.pretrained or weights.model_name,
        weights_random=random,
        image_size=int(size[0] if isinstance(size, (tuple, list)) else size),
        mean=tuple(preprocess.get("mean", open_clip.OPENAI_DATASET_MEAN)),  # type: ignore[arg-type]
        std=tuple(preprocess.get("std", open_clip.OPENAI_DATASET_STD)),  # type: ignore[arg-type]
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


def main(argv: list[str] | None = None) -> int:
    """``make-tiny PATH [--model NAME] [--seed N]``: write random weights for offline runs."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m resources.clip_loader")
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
