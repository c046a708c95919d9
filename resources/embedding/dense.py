"""Single-pass region vectors (``PATCH_MODE=dense``): one model pass per frame, not one per window.

In the default ``crops`` mode every planned window is cut out, resized to the model's input and
encoded on its own: a 1080p frame costs 144 passes. Here the whole frame is resized once by the
factor that brings a padded window to the model's input size (the factor ``crops`` uses too, so a
window covers as many feature cells as a crop does), the image tower runs once over it, and each
window's vector is read from the shared feature map:

* **ResNet towers** (open_clip ``ModifiedResNet``): the trunk's stride-32 feature map is sampled
  under each window with ``roi_align`` to the attention pool's own grid, and the model's real
  attention pool turns each sample into a vector. The pool, its positional embedding and its
  projection are the ones the crops go through; only the trunk's view differs (its receptive field
  sees past the window's edge, where a crop sees zero padding). A window that *is* the whole input
  gives exactly the crop's vector (tested).
* **ViT towers** (open_clip ``VisionTransformer``): ClearCLIP's training-free last block
  (Lan et al., ECCV 2024): the positional embedding is interpolated to the frame's token grid, the
  last block keeps only its attention, with query-query similarity, no residual and no MLP; every
  token then goes through ``ln_post`` and ``proj``, and a window's vector is the mean of its tokens.
  This route is **unverified on pretrained weights here** (none can be fetched on this machine);
  its code path is tested for shape, determinism and batch independence only.

Only the window's *vector* changes; the plan (boxes, counts, payloads) is the same as ``crops``,
so checkpoints, the index and MaxSim are untouched. The mode is part of the patch fingerprint, so
switching it re-embeds.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from open_clip.modified_resnet import ModifiedResNet
from open_clip.transformer import ResidualAttentionBlock, VisionTransformer
from torch import nn

from resources.embedding.crops import boxes_by_size, normalize, resize
from resources.embedding.patches import PatchPlan


class DenseUnsupportedError(ValueError):
    """The model's image tower has no single-pass region route."""


def tower_kind(visual: nn.Module) -> str:
    """``"resnet"`` or ``"vit"`` for the towers this module knows; raises for any other."""
    if isinstance(visual, ModifiedResNet):
        return "resnet"
    if isinstance(visual, VisionTransformer):
        if visual.attn_pool is not None or visual.proj is None:
            raise DenseUnsupportedError("PATCH_MODE=dense does not support ViTs with attentional pooling (CoCa)")
        return "vit"
    raise DenseUnsupportedError(f"PATCH_MODE=dense supports open_clip ResNet and ViT towers, not {type(visual).__name__}")


@torch.inference_mode()
def frame_region_vectors(
    visual: nn.Module, frame: torch.Tensor, plan: PatchPlan, size: int, mean: torch.Tensor, std: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor:
    """Vectors (not normalized) of every planned patch of one ``(3, H, W)`` uint8 frame: ``(patches, dim)``.

    One pass of the tower per padded box size (one per scale), at the factor that makes that box
    ``size`` pixels, as the ``resize_slice`` crops do.
    """
    tower_kind(visual)  # raises early for an unsupported tower
    _, height, width = frame.shape
    out: torch.Tensor | None = None
    for (box_w, box_h), indices in boxes_by_size(plan).items():
        new_w, new_h = max(size, round(width * size / box_w)), max(size, round(height * size / box_h))
        pixels = _pad_to_multiple(normalize(resize(frame, new_h, new_w), mean, std), _tower_stride(visual, size))
        pixels = pixels.to(dtype)[None]
        fx, fy = new_w / width, new_h / height
        xywh = torch.as_tensor(plan.padded[indices], dtype=torch.float32)
        boxes = torch.stack([xywh[:, 0] * fx, xywh[:, 1] * fy, (xywh[:, 0] + xywh[:, 2]) * fx, (xywh[:, 1] + xywh[:, 3]) * fy], dim=1)
        vectors = region_vectors(visual, pixels, boxes, size)
        if out is None:
            out = torch.empty(len(plan), vectors.shape[1], dtype=vectors.dtype, device=vectors.device)
        out[torch.as_tensor(indices, device=out.device)] = vectors.to(out.dtype)
    assert out is not None, "a plan always holds at least one patch"
    return out


@torch.inference_mode()
def region_vectors(visual: nn.Module, pixels: torch.Tensor, boxes: torch.Tensor, input_size: int) -> torch.Tensor:
    """Vectors (not normalized) of ``boxes`` in one normalized frame, from one pass of the tower.

    ``pixels`` is ``(1, 3, H, W)`` in the model's dtype, already resized so that a window spans
    about ``input_size`` pixels; ``boxes`` is ``(k, 4)`` float32 ``x0, y0, x1, y1`` in those pixels.
    Returns ``(k, dim)``.
    """
    if isinstance(visual, ModifiedResNet):
        return _resnet_regions(visual, pixels, boxes, input_size)
    if isinstance(visual, VisionTransformer):
        return _vit_regions(visual, pixels, boxes)
    raise DenseUnsupportedError(f"PATCH_MODE=dense supports open_clip ResNet and ViT towers, not {type(visual).__name__}")


def _resnet_regions(visual: ModifiedResNet, pixels: torch.Tensor, boxes: torch.Tensor, input_size: int) -> torch.Tensor:
    from torchvision.ops import roi_align

    features = visual.layer4(visual.layer3(visual.layer2(visual.layer1(visual.stem(pixels)))))  # (1, C, h, w)
    pool = visual.attnpool
    grid = math.isqrt(pool.positional_embedding.shape[0] - 1)  # the pool's spatial side (input / 32)
    stride = input_size / grid  # input pixels per feature cell (32)
    rois = torch.cat([torch.zeros(len(boxes), 1, device=boxes.device), boxes], dim=1).to(pixels.device)
    # One sample per cell the bin spans: a bin of exactly one cell samples its centre, so a window
    # that is the whole input reproduces the crop's features exactly.
    bin_cells = float((boxes[:, 2:] - boxes[:, :2]).max()) / stride / grid
    sampled = roi_align(
        features.float(), rois.float(), output_size=(grid, grid), spatial_scale=1.0 / stride,
        sampling_ratio=max(1, math.ceil(bin_cells - 1e-6)), aligned=True,
    )  # (k, C, grid, grid)
    return pool(sampled.to(features.dtype))


def _vit_regions(visual: VisionTransformer, pixels: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    patch_h, patch_w = _pair(visual.patch_size)
    rows, cols = pixels.shape[2] // patch_h, pixels.shape[3] // patch_w  # whole patches (padded)
    x = visual.conv1(pixels)  # (1, width, rows, cols)
    x = x.flatten(2).transpose(1, 2)  # (1, rows*cols, width)
    cls = visual.class_embedding.to(x.dtype).view(1, 1, -1)
    x = torch.cat([cls, x], dim=1) + _interpolated_positions(visual.positional_embedding, rows, cols).to(x.dtype)
    x = visual.ln_pre(x)
    blocks = visual.transformer.resblocks
    for block in blocks[:-1]:
        x = block(x)
    tokens = _clearclip_block(blocks[-1], x)[0, 1:]  # (rows*cols, width)
    tokens = visual.ln_post(tokens) @ visual.proj  # (rows*cols, dim)
    grid = tokens.view(rows, cols, -1)
    out = []
    for x0, y0, x1, y1 in boxes.tolist():
        c0, r0 = int(x0 // patch_w), int(y0 // patch_h)
        c1, r1 = max(c0 + 1, math.ceil(x1 / patch_w)), max(r0 + 1, math.ceil(y1 / patch_h))
        region = grid[min(r0, rows - 1) : min(r1, rows), min(c0, cols - 1) : min(c1, cols)]
        out.append(region.float().mean(dim=(0, 1)))
    return torch.stack(out)


def _clearclip_block(block: ResidualAttentionBlock, x: torch.Tensor) -> torch.Tensor:
    """ClearCLIP's last block: query-query attention over ``ln_1(x)``, no residual, no MLP."""
    attn = block.attn
    if not isinstance(attn, nn.MultiheadAttention):
        raise DenseUnsupportedError(f"PATCH_MODE=dense needs torch's MultiheadAttention in the last block, not {type(attn).__name__}")
    heads, width = attn.num_heads, x.shape[-1]
    h = block.ln_1(x)
    q_w, _, v_w = attn.in_proj_weight.split(width)
    q_b, _, v_b = attn.in_proj_bias.split(width)
    q = F.linear(h, q_w, q_b)
    v = F.linear(h, v_w, v_b)
    b, n, _ = q.shape
    q = q.view(b, n, heads, -1).transpose(1, 2)
    v = v.view(b, n, heads, -1).transpose(1, 2)
    out = F.scaled_dot_product_attention(q, q, v)  # (b, heads, n, head_dim): q attends to q
    return attn.out_proj(out.transpose(1, 2).reshape(b, n, width))


def _interpolated_positions(positions: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """The class position plus the patch positions resampled (bicubic) to a ``rows x cols`` grid."""
    side = math.isqrt(positions.shape[0] - 1)
    cls, grid = positions[:1], positions[1:].float().reshape(1, side, side, -1).permute(0, 3, 1, 2)
    if (rows, cols) != (side, side):
        grid = F.interpolate(grid, size=(rows, cols), mode="bicubic", align_corners=False)
    return torch.cat([cls.float(), grid.permute(0, 2, 3, 1).reshape(rows * cols, -1)])[None]


def _tower_stride(visual: nn.Module, size: int) -> int:
    """Input pixels per cell of the tower's last feature map (32 for a ResNet; the ViT's patch)."""
    if isinstance(visual, ModifiedResNet):
        return size // math.isqrt(visual.attnpool.positional_embedding.shape[0] - 1)
    assert isinstance(visual, VisionTransformer)
    return max(_pair(visual.patch_size))


def _pad_to_multiple(pixels: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad (the mean colour, once normalized) the bottom and right edges to whole feature
    cells: otherwise the tower's strided layers drop the last partial cell, and the windows flush
    with those edges would be sampled past the feature map."""
    _, height, width = pixels.shape
    return F.pad(pixels, (0, -width % multiple, 0, -height % multiple))


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))
