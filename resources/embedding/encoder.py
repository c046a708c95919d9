"""The OpenCLIP frame encoder shared by the pipeline and the search service.

A frame becomes one global vector (the whole frame, letterboxed by default) and one vector per
planned patch; a text becomes one vector. Vectors are L2-normalized float32 and do not depend
on how inputs were batched (fp32: within 1e-5). Crops of many frames are streamed through the
model in batches of ``batch_size`` so memory stays bounded whatever the number of frames.
One encoder serves many threads (the search service's request threads): each call batches in a
buffer of its own, so concurrent calls give exactly what they give alone.

Typical use::

    encoder = FrameEncoder.load(EncoderConfig(model="ViT-B-32", pretrained="laion2b_s34b_b79k"))
    [frame] = encoder.encode_frames([image], PatchConfig())
    frame.global_vector.shape   # (512,)
    frame.patch_vectors.shape   # (144, 512) for a 1920x1080 frame at the defaults
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from resources.embedding.crops import CROP_METHODS, GLOBAL_RESIZE_MODES, CropMethod, GlobalResize, global_view, iter_patch_crops
from resources.embedding.dense import frame_region_vectors
from resources.embedding.patches import PatchConfig, PatchPlan, plan_patches
from resources.embedding.precision import PRECISIONS, resolve_device, resolve_precision
from resources.embedding.weights import (
    LoadedClip,
    Provenance,
    load_clip,
)
from resources.frame_sources.images import image_to_tensor

log = logging.getLogger(__name__)

Frame = torch.Tensor | Image.Image  # a (3, H, W) uint8 tensor or an RGB Pillow image
_MAX_IDLE_BUFFERS = 4  # batch buffers kept between calls (each batch_size x 3 x S x S)


class EncoderError(RuntimeError):
    """The model produced unusable output (non-finite or zero vectors)."""


@dataclass(frozen=True)
class EncoderConfig:
    """Encoder settings; the env var named on each field configures it (see ``resources.settings``)."""

    model: str = "ViT-B-32"  # OPENCLIP_MODEL: open_clip architecture name
    pretrained: str = "laion2b_s34b_b79k"  # OPENCLIP_PRETRAINED: hub tag, file path or local-dir:
    batch_size: int = 64  # BATCH_SIZE: images per forward pass
    device: str = "auto"  # OPENCLIP_DEVICE: auto | cpu | cuda | cuda:N
    precision: str = "auto"  # OPENCLIP_PRECISION: auto | fp32 | bf16 | fp16
    global_resize: str = "pad"  # GLOBAL_RESIZE_MODE: pad | squash | crop (open_clip's default)
    crop_method: str = "auto"  # PATCH_CROP_METHOD: auto | resize_slice | roi_align | per_crop
    min_cosine: float = 0.999  # low precision is kept only if it agrees with fp32 this closely

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"BATCH_SIZE must be >= 1, got {self.batch_size}")
        if self.global_resize not in GLOBAL_RESIZE_MODES:
            raise ValueError(f"GLOBAL_RESIZE_MODE must be one of {GLOBAL_RESIZE_MODES}, got {self.global_resize!r}")
        if self.crop_method not in ("auto", *CROP_METHODS):
            raise ValueError(f"PATCH_CROP_METHOD must be auto or one of {CROP_METHODS}, got {self.crop_method!r}")
        if self.precision not in ("auto", *PRECISIONS):
            raise ValueError(f"OPENCLIP_PRECISION must be auto or one of {tuple(PRECISIONS)}, got {self.precision!r}")


@dataclass(frozen=True)
class EncoderInfo:
    """What was loaded, for logs, health checks and the provenance of stored vectors."""

    model_id: str
    embed_dim: int
    image_size: int
    device: str
    precision: str
    weights_random: bool  # provenance.kind == "random": the embeddings mean nothing
    weights_source: str
    provenance: Provenance  # what the weights are and what they know
    global_resize: str
    crop_method: str
    precision_check_cosine: float | None  # min cosine of low precision vs fp32 on probe inputs


@dataclass
class FrameEmbedding:
    """One frame's vectors: ``global_vector`` (dim,) and ``patch_vectors`` (patches, dim)."""

    global_vector: np.ndarray
    patch_vectors: np.ndarray
    plan: PatchPlan


@dataclass
class EncoderTimings:
    """Seconds spent since the encoder was created, split by stage."""

    crop_s: float = 0.0  # global views and patch crops: resizing, slicing, normalizing
    model_s: float = 0.0  # forward passes, including host/device copies
    images: int = 0  # model inputs encoded (global views + patch crops + dense frame passes)
    texts: int = 0


def _probe_images(size: int, count: int = 4) -> torch.Tensor:
    """Deterministic structured inputs (gradients, stripes, noise) for the precision check."""
    gen = torch.Generator().manual_seed(1234)
    ramp = torch.linspace(0, 255, size)
    images = [
        torch.stack([ramp.expand(size, size), ramp.expand(size, size).T, 255 - ramp.expand(size, size)]),
        ((torch.arange(size) // 8 % 2) * 255.0).expand(3, size, size).clone(),
    ]
    while len(images) < count:
        images.append(torch.rand(3, size, size, generator=gen) * 255)
    return torch.stack(images[:count])  # (count, 3, size, size) in 0..255


class FrameEncoder:
    """Encodes frames (global view + patches) and texts with one OpenCLIP model."""

    def __init__(self, clip: LoadedClip, config: EncoderConfig, device: torch.device) -> None:
        self.config = config
        self.device = device
        self.tokenizer = clip.tokenizer
        self.image_size = clip.image_size
        self._mean = torch.tensor(clip.mean, dtype=torch.float32, device=device)
        self._std = torch.tensor(clip.std, dtype=torch.float32, device=device)
        # EncoderConfig validated both names; here they become the crop module's literal types.
        self.global_resize = cast(GlobalResize, config.global_resize)
        auto: CropMethod = "roi_align" if device.type == "cuda" else "resize_slice"
        self.crop_method: CropMethod = auto if config.crop_method == "auto" else cast(CropMethod, config.crop_method)
        self.timings = EncoderTimings()
        # Idle batch buffers. A call takes one for itself and gives it back when done, so request
        # threads never write into each other's batches (issue 9: one shared buffer mixed the
        # vectors of concurrent queries), and steady state allocates nothing.
        self._idle_buffers: list[torch.Tensor] = []
        self._lock = threading.Lock()  # guards the idle buffers and the timings counters

        self.model = clip.model
        self.dtype = torch.float32
        precision, check = "fp32", None
        wanted = resolve_precision(config.precision, device)
        if wanted != "fp32":
            precision, check = self._adopt_low_precision(PRECISIONS[wanted], wanted)
        with torch.inference_mode():
            probe = self.model.encode_image(torch.zeros(1, 3, self.image_size, self.image_size, device=device, dtype=self.dtype))
        self.info = EncoderInfo(
            model_id=clip.model_id,
            embed_dim=int(probe.shape[-1]),
            image_size=self.image_size,
            device=str(device),
            precision=precision,
            weights_random=clip.weights_random,
            weights_source=clip.weights_source,
            provenance=clip.provenance,
            global_resize=config.global_resize,
            crop_method=self.crop_method,
            precision_check_cosine=check,
        )
        if clip.weights_random:
            log.warning("encoder %s uses RANDOM weights: its embeddings carry no meaning", clip.model_id)
        else:
            log.info("encoder %s: %s weights, %s", clip.model_id, clip.provenance.kind, clip.provenance.description)

    @classmethod
    def load(cls, config: EncoderConfig = EncoderConfig()) -> FrameEncoder:
        """Load the configured model; raises ``WeightsUnavailableError`` with a fix when it cannot."""
        device = resolve_device(config.device)
        return cls(load_clip(config.model, config.pretrained, device=device), config, device)

    # -- precision ---------------------------------------------------------------------------

    @torch.inference_mode()
    def _adopt_low_precision(self, dtype: torch.dtype, name: str) -> tuple[str, float | None]:
        """Switch to ``dtype`` if it reproduces fp32 embeddings (cosine >= min_cosine), else stay."""
        probe = (_probe_images(self.image_size).to(self.device) / 255.0 - self._mean.view(1, -1, 1, 1)) / self._std.view(1, -1, 1, 1)
        tokens = self.tokenizer(["a photo of a dog", "a red car parked on a city street at night"]).to(self.device)
        reference = torch.cat([self.model.encode_image(probe), self.model.encode_text(tokens)]).float()
        candidate_model = copy.deepcopy(self.model).to(dtype)
        candidate = torch.cat(
            [candidate_model.encode_image(probe.to(dtype)), candidate_model.encode_text(tokens)]
        ).float()
        cosine = float(F.cosine_similarity(reference, candidate, dim=-1).min())
        if cosine >= self.config.min_cosine:
            self.model, self.dtype = candidate_model, dtype
            return name, cosine
        log.warning(
            "%s embeddings differ from fp32 (min cosine %.5f < %.4f): keeping fp32", name, cosine, self.config.min_cosine
        )
        return "fp32", cosine

    # -- model calls -------------------------------------------------------------------------

    def _finish(self, vectors: torch.Tensor) -> np.ndarray:
        vectors = vectors.float()
        norms = vectors.norm(dim=-1, keepdim=True)
        if not torch.isfinite(vectors).all() or (norms == 0).any():
            raise EncoderError("the model produced non-finite or zero vectors; check the weights")
        return (vectors / norms).cpu().numpy().astype(np.float32, copy=False)

    @torch.inference_mode()
    def _encode_pixels(self, batches: Iterable[torch.Tensor]) -> np.ndarray:
        """Batches ``(b, 3, S, S)`` from :meth:`_batches` -> unit vectors ``(sum b, dim)``."""
        outputs = []
        for batch in batches:
            start = time.perf_counter()
            outputs.append(self._finish(self.model.encode_image(batch)))
            with self._lock:
                self.timings.model_s += time.perf_counter() - start
                self.timings.images += len(batch)
        if not outputs:
            return np.zeros((0, self.info.embed_dim), dtype=np.float32)
        return np.concatenate(outputs)

    def _batches(self, images: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
        """Copy ``(3, S, S)`` inputs into batches of ``batch_size`` (the last one smaller).

        The batches are views of one buffer in the model's dtype, reused batch after batch: a fresh
        38 MB tensor per batch costs ~20 ms of page faults on the CPU, more than slicing a 1080p
        frame's crops. The buffer belongs to this call until the generator ends (concurrent calls
        each hold their own), and is kept for reuse afterwards.
        """
        size = self.config.batch_size
        buffer = self._take_buffer()
        try:
            count, started = 0, time.perf_counter()
            for image in images:  # producing the images (resize, slice, normalize) is timed as crop_s
                buffer[count].copy_(image)
                count += 1
                if count == size:
                    self._add_crop_time(time.perf_counter() - started)
                    yield buffer
                    count, started = 0, time.perf_counter()
            if count:
                self._add_crop_time(time.perf_counter() - started)
                yield buffer[:count]
        finally:
            self._give_back(buffer)

    def _take_buffer(self) -> torch.Tensor:
        with self._lock:
            if self._idle_buffers:
                return self._idle_buffers.pop()
        size = self.config.batch_size
        return torch.empty(size, 3, self.image_size, self.image_size, device=self.device, dtype=self.dtype)

    def _give_back(self, buffer: torch.Tensor) -> None:
        with self._lock:
            # Keep as many as ran at once, up to a few: more concurrent calls than cores gain nothing.
            if len(self._idle_buffers) < _MAX_IDLE_BUFFERS:
                self._idle_buffers.append(buffer)

    def _add_crop_time(self, seconds: float) -> None:
        with self._lock:
            self.timings.crop_s += seconds

    def _as_tensor(self, frame: Frame) -> torch.Tensor:
        tensor = image_to_tensor(frame) if isinstance(frame, Image.Image) else frame
        if tensor.dim() != 3 or tensor.shape[0] != 3 or tensor.dtype != torch.uint8:
            raise ValueError(f"a frame must be an RGB image or a (3, H, W) uint8 tensor, got {tuple(tensor.shape)} {tensor.dtype}")
        return tensor.to(self.device)

    # -- public API --------------------------------------------------------------------------

    def encode_global(self, frames: Sequence[Frame]) -> np.ndarray:
        """Global vectors of whole frames: ``(frames, dim)``."""
        views = (
            global_view(self._as_tensor(f), self.image_size, self._mean, self._std, self.global_resize)
            for f in frames
        )
        return self._encode_pixels(self._batches(views))

    def encode_patches(self, frames: Sequence[Frame], plans: Sequence[PatchPlan]) -> list[np.ndarray]:
        """Patch vectors per frame, ``[(patches_i, dim), ...]``, each plan in its own mode.

        ``crops`` plans: every window is one model input, and the crops of all frames share
        batches. ``dense`` plans: one pass of the image tower per frame (resources.embedding.dense).
        """
        if len(frames) != len(plans):
            raise ValueError(f"{len(frames)} frames but {len(plans)} patch plans")
        result: list[np.ndarray] = [np.zeros((0, self.info.embed_dim), dtype=np.float32)] * len(plans)
        crop_items = [i for i, plan in enumerate(plans) if plan.mode == "crops" and len(plan)]
        crops = (
            crop
            for i in crop_items
            for crop in iter_patch_crops(self._as_tensor(frames[i]), plans[i], self.image_size, self._mean, self._std, self.crop_method)
        )
        vectors = self._encode_pixels(self._batches(crops))
        bounds = np.cumsum([0] + [len(plans[i]) for i in crop_items])
        for n, i in enumerate(crop_items):
            result[i] = vectors[bounds[n] : bounds[n + 1]]
        for i, plan in enumerate(plans):
            if plan.mode == "dense" and len(plan):
                result[i] = self._encode_dense(self._as_tensor(frames[i]), plan)
        return result

    def _encode_dense(self, frame: torch.Tensor, plan: PatchPlan) -> np.ndarray:
        start = time.perf_counter()
        vectors = frame_region_vectors(self.model.visual, frame, plan, self.image_size, self._mean, self._std, self.dtype)
        out = self._finish(vectors)
        with self._lock:
            self.timings.model_s += time.perf_counter() - start
            self.timings.images += len({(int(w), int(h)) for w, h in plan.padded[:, 2:]})  # one pass per box size
        return out

    def encode_frames(
        self, frames: Sequence[Frame], patch_config: PatchConfig, plans: Sequence[PatchPlan] | None = None
    ) -> list[FrameEmbedding]:
        """Global and patch vectors of each frame, patches planned with ``patch_config`` unless
        the caller already planned them (``plans``)."""
        tensors = [self._as_tensor(f) for f in frames]
        if plans is None:
            plans = [plan_patches(t.shape[2], t.shape[1], patch_config) for t in tensors]
        global_vectors = self.encode_global(tensors)
        patch_vectors = self.encode_patches(tensors, plans)
        return [FrameEmbedding(g, p, plan) for g, p, plan in zip(global_vectors, patch_vectors, plans)]

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Text vectors ``(texts, dim)``; texts longer than the model's context are truncated."""
        outputs = []
        for start in range(0, len(texts), self.config.batch_size):
            tokens = self.tokenizer(list(texts[start : start + self.config.batch_size])).to(self.device)
            began = time.perf_counter()
            outputs.append(self._finish(self.model.encode_text(tokens)))
            with self._lock:
                self.timings.model_s += time.perf_counter() - began
                self.timings.texts += len(tokens)
        if not outputs:
            return np.zeros((0, self.info.embed_dim), dtype=np.float32)
        return np.concatenate(outputs)
