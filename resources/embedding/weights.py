"""Find and load OpenCLIP weights: a hub tag, a local checkpoint file, or a ``local-dir:`` folder.

Real weights and the offline test model go through the same path: :func:`load_clip` resolves
``pretrained`` to a file (the hub cache, a download, or a path given by the user) and hands it to
open_clip's own loader. Every load also says what the weights *are* (:class:`Provenance`):
``random`` (from :func:`save_random_weights`, marked in the safetensors header: embeddings mean
nothing, for unit tests), ``synthetic-world`` (the small model trained here on the synthetic shapes
world, described by its header's ``framesearch.provenance`` key; see :func:`save_model_dir`) or
``pretrained`` (a hub tag, or a file that records nothing about itself).

Run ``python -m resources.embedding.model_files make-tiny PATH`` to write random weights for tests.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import open_clip
import torch

# Private, but open_clip is pinned (==3.3.0): the digest and provenance of a local-dir folder must
# come from the very file open_clip loads from it, so we ask its own chooser rather than guess.
from open_clip.factory import _find_checkpoint_in_dir

log = logging.getLogger(__name__)

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
TINY_MODEL = "framesearch-tiny"
RANDOM_WEIGHTS_MARKER = "framesearch.random_init"
PROVENANCE_KEY = "framesearch.provenance"  # safetensors header key: JSON {"kind", "description", ...}
WEIGHT_KINDS = ("random", "synthetic-world", "pretrained")
LOCAL_DIR_CONFIG = "open_clip_config.json"
LOCAL_DIR_WEIGHTS = "open_clip_model.safetensors"
LOCAL_DIR_PREFIX = "local-dir:"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")

# Registered at import: open_clip then knows our architectures by name, like its own.
open_clip.add_model_config(MODEL_CONFIG_DIR)


class WeightsUnavailableError(RuntimeError):
    """The configured weights cannot be loaded here; the message says why and what to set instead."""


@dataclass(frozen=True)
class Provenance:
    """What a model's weights are and what they know, in words a person reads in logs and health."""

    kind: str  # one of WEIGHT_KINDS: random | synthetic-world | pretrained (hub tag / unknown file)
    description: str  # one sentence: where the weights come from and what they know
    # Further facts as the file records them (steps, seed, caption_accuracy, ...); not compared.
    details: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def random(self) -> bool:
        return self.kind == "random"

    def as_dict(self) -> dict[str, Any]:
        """``{"kind", "description", **details}``: the shape of the header key, JSON-ready."""
        return {**self.details, "kind": self.kind, "description": self.description}

    @classmethod
    def from_header(cls, text: str, source: str) -> Provenance:
        """Parse a ``framesearch.provenance`` header value; ``source`` names the file in errors."""
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise WeightsUnavailableError(f"{source}: header key {PROVENANCE_KEY} is not JSON ({exc})") from None
        if not isinstance(record, dict):
            raise WeightsUnavailableError(f"{source}: header key {PROVENANCE_KEY} must be a JSON object, got {text[:80]!r}")
        kind, description = record.pop("kind", None), record.pop("description", None)
        if kind not in WEIGHT_KINDS or not isinstance(description, str) or not description:
            raise WeightsUnavailableError(
                f"{source}: header key {PROVENANCE_KEY} needs kind in {WEIGHT_KINDS} and a description, "
                f"got kind={kind!r}, description={description!r}"
            )
        return cls(kind, description, record)


RANDOM_PROVENANCE = Provenance(
    "random", "random (untrained) weights for unit tests: the embeddings carry no meaning"
)


@dataclass(frozen=True)
class LoadedClip:
    """An open_clip model in eval mode with what is needed to feed it and to name its outputs."""

    model: open_clip.CLIP  # encode_image / encode_text
    tokenizer: Callable[[list[str]], torch.Tensor]  # texts -> (texts, context) token ids
    model_id: str  # names architecture and weights; part of every stored vector's provenance
    weights_source: str  # the tag, file or folder the weights came from
    provenance: Provenance  # what the weights are and what they know
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def weights_random(self) -> bool:
        """True for weights from save_random_weights: the embeddings mean nothing."""
        return self.provenance.random


@dataclass(frozen=True)
class ResolvedWeights:
    """What open_clip is asked to load, and how to name it."""

    model_name: str  # open_clip model name, or 'local-dir:<folder>'
    pretrained: str | None  # a local file, a reachable hub tag, or None for a local-dir folder
    tag: str | None = None  # the hub tag these weights are, when they are one (cached or not)
    weights_file: str | None = None  # the local file whose tensors are loaded, when there is one

    @property
    def display_name(self) -> str:
        """The architecture's name for ids: the model name, or a local-dir folder's own name."""
        if self.model_name.startswith(LOCAL_DIR_PREFIX):
            return Path(self.model_name[len(LOCAL_DIR_PREFIX) :]).name
        return self.model_name


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
        "Offline, the main job and the service fall back to the bundled synthetic-world model "
        "(models/framesearch-world; OFFLINE_MODEL_DIR); to use it directly: "
        "OPENCLIP_PRETRAINED=local-dir:models/framesearch-world."
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
        if (folder / LOCAL_DIR_CONFIG).is_file():
            # open_clip reads both there; without a weights file it would build the model with
            # random weights and only log it, so a folder without one is refused here.
            found = _find_checkpoint_in_dir(folder)
            if found is None:
                raise WeightsUnavailableError(f"{folder} has {LOCAL_DIR_CONFIG} but no weights file (.safetensors/.bin/.pth)")
            return ResolvedWeights(f"{LOCAL_DIR_PREFIX}{folder}", None, weights_file=found)
        files = sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES)
        if not files:
            raise WeightsUnavailableError(f"no weights file ({', '.join(WEIGHT_SUFFIXES)}) in {folder}")
        files.sort(key=lambda p: p.suffix != ".safetensors")
        return ResolvedWeights(model, str(files[0]), weights_file=str(files[0]))
    if model not in open_clip.list_models():
        raise WeightsUnavailableError(
            f"unknown OPENCLIP_MODEL {model!r}; known: {', '.join(sorted(open_clip.list_models())[:20])}, …"
        )
    looks_like_path = pretrained.endswith(WEIGHT_SUFFIXES) or os.sep in pretrained
    if looks_like_path or Path(pretrained).is_file():
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise WeightsUnavailableError(f"OPENCLIP_PRETRAINED file not found: {path}. {_fix_hint(model)}")
        return ResolvedWeights(model, str(path), weights_file=str(path))

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
            return ResolvedWeights(model, cached, tag=pretrained, weights_file=cached)
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


def read_provenance(path: str | None) -> Provenance | None:
    """What a weights file says about itself in its safetensors header: the random marker, or a
    ``framesearch.provenance`` record; None when it says nothing (or is not a safetensors file)."""
    if not path or not path.endswith(".safetensors"):
        return None
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt") as handle:
            header = handle.metadata() or {}
    except Exception as exc:  # safetensors raises its own SafetensorError for a damaged header
        raise WeightsUnavailableError(f"cannot read the safetensors header of {path}: {exc}") from exc
    if header.get(RANDOM_WEIGHTS_MARKER) == "true":
        return RANDOM_PROVENANCE
    if PROVENANCE_KEY in header:
        return Provenance.from_header(header[PROVENANCE_KEY], path)
    return None


def weights_provenance(weights: ResolvedWeights) -> Provenance:
    """What resolved weights are: a hub tag's published weights, or what their file records."""
    if weights.tag is not None:
        return Provenance("pretrained", f"open_clip's published weights {weights.display_name}/{weights.tag}")
    recorded = read_provenance(weights.weights_file)
    if recorded is not None:
        return recorded
    return Provenance("pretrained", f"weights from {weights.weights_file}; the file records no provenance")


def weights_model_id(weights: ResolvedWeights) -> str:
    """The model id of resolved weights: ``<model>/<tag>``; ``<model>/random-<digest>`` (weights
    from :func:`save_random_weights`); ``<model>/<digest>`` for a file that records its provenance
    (the synthetic-world model: ``framesearch-world/<digest>``); ``<model>/file-<digest>`` for one
    that does not. ``<model>`` is the ``architecture`` the provenance records if it does (so the id
    does not depend on where the folder lies), else the model name or a local-dir folder's name."""
    if weights.tag is not None:
        return f"{weights.model_name}/{weights.tag}"
    assert weights.weights_file is not None  # resolve_weights sets it whenever there is no tag
    recorded = read_provenance(weights.weights_file)
    prefix = "file-" if recorded is None else "random-" if recorded.random else ""
    architecture = recorded.details.get("architecture") if recorded is not None else None
    name = architecture if isinstance(architecture, str) and architecture else weights.display_name
    return f"{name}/{prefix}{_file_digest(weights.weights_file)}"


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
    model_id = weights_model_id(weights)
    preprocess = open_clip.get_model_preprocess_cfg(clip)
    size = preprocess.get("size", 224)
    return LoadedClip(
        model=clip,
        tokenizer=open_clip.get_tokenizer(weights.model_name),
        model_id=model_id,
        weights_source=weights.pretrained or weights.model_name,  # a local-dir folder: 'local-dir:<folder>'
        provenance=weights_provenance(weights),
        image_size=int(size[0] if isinstance(size, (tuple, list)) else size),
        mean=tuple(preprocess.get("mean", open_clip.OPENAI_DATASET_MEAN)),
        std=tuple(preprocess.get("std", open_clip.OPENAI_DATASET_STD)),
    )
