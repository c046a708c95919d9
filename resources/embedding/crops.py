"""Turn decoded frames into the model's input tensors: one global view and many patch crops.

All functions take a frame as a ``(3, H, W)`` uint8 tensor and return normalized float32 tensors
of the model's square input size. Three ways to cut the patch crops are provided because the
fastest differs by device (measured in ``benchmarks/bench_encoder.py``):

* ``resize_slice`` - all padded boxes of one size are resized by the same factor, so the frame is
  resized (antialiased bicubic) once per box size and each crop is a slice of it. Cheapest on a
  CPU. Box corners land on the nearest pixel of the resized frame: at most half a model pixel off.
* ``roi_align`` - torchvision's bilinear ROI sampling, one kernel for every box; suited to GPUs.
* ``per_crop`` - cut each box and resize it on its own; the exact reference, slowest.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator
from typing import Literal

import torch
import torch.nn.functional as F

from resources.embedding.patches import PatchPlan

GlobalResize = Literal["pad", "squash", "crop"]
CropMethod = Literal["resize_slice", "roi_align", "per_crop"]
GLOBAL_RESIZE_MODES: tuple[str, ...] = ("pad", "squash", "crop")
CROP_METHODS: tuple[str, ...] = ("resize_slice", "roi_align", "per_crop")


def resize(pixels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Antialiased bicubic resize of ``(C, H, W)`` pixels in 0..255, returning the input's dtype.

    uint8 frames on the CPU take PyTorch's channels-last uint8 kernel: ~5 ms for 1080p -> 829p
    against ~16 ms in float32 (mean difference 0.3 grey levels).
    """
    batched = pixels[None]
    if pixels.dtype == torch.uint8 and pixels.device.type == "cpu":
        out = F.interpolate(
            batched.contiguous(memory_format=torch.channels_last),
            size=(height, width), mode="bicubic", antialias=True, align_corners=False,
        )
        return out[0].contiguous()
    out = F.interpolate(batched.float(), size=(height, width), mode="bicubic", antialias=True, align_corners=False)
    return out[0].clamp_(0.0, 255.0)  # bicubic overshoots at hard edges


def normalize(pixels: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """0..255 pixels -> the model's normalized input; ``mean``/``std`` are ``(3,)`` in 0..1 units."""
    scale = (1.0 / (255.0 * std)).view(-1, 1, 1)
    shift = (mean / std).view(-1, 1, 1)
    return pixels.float() * scale - shift


def global_view(
    frame: torch.Tensor,
    size: int,
    mean: torch.Tensor,
    std: torch.Tensor,
    mode: GlobalResize = "pad",
) -> torch.Tensor:
    """The whole frame as one ``(3, size, size)`` model input.

    ``pad`` keeps the aspect ratio and letterboxes with the mean colour (zero after normalizing),
    so the model sees every pixel; ``squash`` stretches the frame to a square; ``crop`` is
    open_clip's default (shortest side to ``size``, then a centre crop), which drops ~44% of a
    16:9 frame.
    """
    _, height, width = frame.shape
    if mode == "squash":
        return normalize(resize(frame, size, size), mean, std)
    if mode == "crop":
        ratio = size / min(height, width)
        new_h, new_w = max(size, round(height * ratio)), max(size, round(width * ratio))
        resized = resize(frame, new_h, new_w)
        top, left = (new_h - size) // 2, (new_w - size) // 2
        return normalize(resized[:, top : top + size, left : left + size], mean, std)
    if mode == "pad":
        ratio = size / max(height, width)
        new_h, new_w = max(1, round(height * ratio)), max(1, round(width * ratio))
        canvas = torch.zeros(3, size, size, device=frame.device)  # zero = the mean colour once normalized
        top, left = (size - new_h) // 2, (size - new_w) // 2
        canvas[:, top : top + new_h, left : left + new_w] = normalize(
            resize(frame, new_h, new_w), mean, std
        )
        return canvas
    raise ValueError(f"global resize mode must be one of {GLOBAL_RESIZE_MODES}, got {mode!r}")


def iter_patch_crops(
    frame: torch.Tensor,
    plan: PatchPlan,
    size: int,
    mean: torch.Tensor,
    std: torch.Tensor,
    method: CropMethod = "resize_slice",
) -> Iterator[torch.Tensor]:
    """Yield each patch's normalized ``(3, size, size)`` crop in plan order.

    ``resize_slice`` yields views into the resized frame: the caller copies them straight into
    its batch, so 144 crops of a 1080p frame (87 MB in float32) are never materialized at once.
    """
    if len(plan) == 0:
        return
    if method == "resize_slice":
        yield from _crops_resize_slice(frame, plan, size, mean, std)
    elif method == "roi_align":
        # Normalizing is affine, so it commutes with bilinear sampling: do it once on the frame.
        yield from _crops_roi_align(normalize(frame, mean, std), plan, size)
    elif method == "per_crop":
        for x, y, w, h in plan.padded.tolist():
            yield normalize(resize(frame[:, y : y + h, x : x + w], size, size), mean, std)
    else:
        raise ValueError(f"crop method must be one of {CROP_METHODS}, got {method!r}")


def boxes_by_size(plan: PatchPlan) -> dict[tuple[int, int], list[int]]:
    """Patch indices grouped by padded box ``(w, h)``; one scale usually gives one group."""
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for index, (_, _, w, h) in enumerate(plan.padded.tolist()):
        groups[(w, h)].append(index)
    return groups


def _crops_resize_slice(
    frame: torch.Tensor, plan: PatchPlan, size: int, mean: torch.Tensor, std: torch.Tensor
) -> Iterator[torch.Tensor]:
    _, height, width = frame.shape
    scaled: dict[tuple[int, int], tuple[torch.Tensor, float, float]] = {}
    for box_w, box_h in boxes_by_size(plan):
        fx, fy = size / box_w, size / box_h
        new_w, new_h = max(size, round(width * fx)), max(size, round(height * fy))
        # Normalize the resized frame, not the crops: overlapping crops hold ~4x its pixels.
        scaled[(box_w, box_h)] = normalize(resize(frame, new_h, new_w), mean, std), fx, fy
    for x, y, w, h in plan.padded.tolist():
        resized, fx, fy = scaled[(w, h)]  # (3, new_h, new_w)
        left = min(round(x * fx), resized.shape[2] - size)
        top = min(round(y * fy), resized.shape[1] - size)
        yield resized[:, top : top + size, left : left + size]


def _crops_roi_align(normalized: torch.Tensor, plan: PatchPlan, size: int) -> torch.Tensor:
    """Crops by ``roi_align`` from an already normalized ``(3, H, W)`` float frame."""
    from torchvision.ops import roi_align

    device = normalized.device
    out = torch.empty(len(plan), 3, size, size, device=device)  # (patches, 3, size, size)
    padded = torch.as_tensor(plan.padded, dtype=torch.float32, device=device)  # (patches, 4) xywh
    for (box_w, box_h), indices in boxes_by_size(plan).items():
        idx = torch.as_tensor(indices, device=device)
        xywh = padded[idx]
        rois = torch.cat([torch.zeros(len(indices), 1, device=device), xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1)
        # rois: (k, 5) = batch index, x1, y1, x2, y2. About one sample per source pixel makes the
        # bilinear average act like an area filter when shrinking.
        ratio = max(1, math.ceil(max(box_w, box_h) / size))
        out[idx] = roi_align(normalized[None], rois, output_size=(size, size), sampling_ratio=ratio, aligned=True)
    return out
