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
from typing import Literal

import torch
import torch.nn.functional as F

from resources.patches import PatchPlan

GlobalResize = Literal["pad", "squash", "crop"]
CropMethod = Literal["resize_slice", "roi_align", "per_crop"]
GLOBAL_RESIZE_MODES: tuple[str, ...] = ("pad", "squash", "crop")
CROP_METHODS: tuple[str, ...] = ("resize_slice", "roi_align", "per_crop")


def _resize(pixels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Antialiased bicubic resize of ``(C, H, W)`` or ``(N, C, H, W)`` float pixels, kept in 0..255."""
    batched = pixels if pixels.dim() == 4 else pixels[None]
    out = F.interpolate(
        batched.float(), size=(height, width), mode="bicubic", antialias=True, align_corners=False
    )
    out = out.clamp_(0.0, 255.0)  # bicubic overshoots at hard edges
    return out if pixels.dim() == 4 else out[0]


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
        return normalize(_resize(frame, size, size), mean, std)
    if mode == "crop":
        ratio = size / min(height, width)
        new_h, new_w = max(size, round(height * ratio)), max(size, round(width * ratio))
        resized = _resize(frame, new_h, new_w)
        top, left = (new_h - size) // 2, (new_w - size) // 2
        return normalize(resized[:, top : top + size, left : left + size], mean, std)
    if mode == "pad":
        ratio = size / max(height, width)
        new_h, new_w = max(1, round(height * ratio)), max(1, round(width * ratio))
        canvas = torch.zeros(3, size, size, device=frame.device)  # zero = the mean colour once normalized
        top, left = (size - new_h) // 2, (size - new_w) // 2
        canvas[:, top : top + new_h, left : left + new_w] = normalize(
            _resize(frame, new_h, new_w), mean, std
        )
        return canvas
    raise ValueError(f"global resize mode must be one of {GLOBAL_RESIZE_MODES}, got {mode!r}")


def patch_crops(
    frame: torch.Tensor,
    plan: PatchPlan,
    size: int,
    mean: torch.Tensor,
    std: torch.Tensor,
    method: CropMethod = "resize_slice",
) -> torch.Tensor:
    """The plan's padded boxes cut from ``frame`` and resized to ``(patches, 3, size, size)``."""
    if len(plan) == 0:
        return torch.empty(0, 3, size, size, device=frame.device)
    if method == "resize_slice":
        crops = _crops_resize_slice(frame, plan, size)
    elif method == "roi_align":
        crops = _crops_roi_align(frame, plan, size)
    elif method == "per_crop":
        crops = torch.stack(
            [_resize(frame[:, y : y + h, x : x + w], size, size) for x, y, w, h in plan.padded.tolist()]
        )
    else:
        raise ValueError(f"crop method must be one of {CROP_METHODS}, got {method!r}")
    return normalize(crops, mean, std)


def _boxes_by_size(plan: PatchPlan) -> dict[tuple[int, int], list[int]]:
    """Patch indices grouped by padded box ``(w, h)``; one scale usually gives one group."""
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for index, (_, _, w, h) in enumerate(plan.padded.tolist()):
        groups[(w, h)].append(index)
    return groups


def _crops_resize_slice(frame: torch.Tensor, plan: PatchPlan, size: int) -> torch.Tensor:
    _, height, width = frame.shape
    out = torch.empty(len(plan), 3, size, size, device=frame.device)  # (patches, 3, size, size)
    boxes = plan.padded.tolist()
    for (box_w, box_h), indices in _boxes_by_size(plan).items():
        fx, fy = size / box_w, size / box_h
        new_w, new_h = max(size, round(width * fx)), max(size, round(height * fy))
        resized = _resize(frame, new_h, new_w)  # (3, new_h, new_w)
        for index in indices:
            x, y = boxes[index][0], boxes[index][1]
            left = min(round(x * fx), new_w - size)
            top = min(round(y * fy), new_h - size)
            out[index] = resized[:, top : top + size, left : left + size]
    return out


def _crops_roi_align(frame: torch.Tensor, plan: PatchPlan, size: int) -> torch.Tensor:
    from torchvision.ops import roi_align

    pixels = frame[None].float()  # (1, 3, H, W)
    out = torch.empty(len(plan), 3, size, size, device=frame.device)
    padded = torch.as_tensor(plan.padded, dtype=torch.float32, device=frame.device)  # (patches, 4)
    for (box_w, box_h), indices in _boxes_by_size(plan).items():
        idx = torch.as_tensor(indices, device=frame.device)
        xywh = padded[idx]
        rois = torch.cat(
            [torch.zeros(len(indices), 1, device=frame.device), xywh[:, :2], xywh[:, :2] + xywh[:, 2:]],
            dim=1,
        )  # (k, 5): batch index, x1, y1, x2, y2
        # Sampling about one point per source pixel makes the bilinear average act like an area filter.
        ratio = max(1, math.ceil(max(box_w, box_h) / size))
        out[idx] = roi_align(pixels, rois, output_size=(size, size), sampling_ratio=ratio, aligned=True)
    return out
