"""Encoder throughput against this machine's matmul roofline, measured side by side in one run.

    ./dev bench encoder            # ViT-B-32 (random weights) and the tiny model
    ./dev bench encoder --quick    # fewer repetitions
    ./dev bench encoder --models ViT-B-32,models/framesearch-world,models/framesearch-world-rn

Prints, per model: global images/s, patch crops/s and 1080p frames/s at the seed's patch
defaults (end to end from decoded frames: crop extraction included) - with crops and with
``PATCH_MODE=dense`` (one pass per frame), the model passes each takes - the model's FLOPs per
image, this machine's best GEMM FLOP/s in the precision the encoder runs in, and the ratio
``FLOPs x images/s / GEMM FLOP/s``. Also times the three crop-extraction methods on a 1080p
frame. Random weights: the figures measure speed only; the vectors mean nothing.

FLOPs are counted with PyTorch's FlopCounterMode with the fused MultiheadAttention fast path
switched off: under the fast path the counter misses the attention projections and reports
5.9 instead of 8.7 GFLOP for ViT-B-32.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import write_results  # noqa: E402
from resources.embedding.crops import CROP_METHODS, iter_patch_crops  # noqa: E402
from resources.embedding.encoder import EncoderConfig, FrameEncoder  # noqa: E402
from resources.embedding.model_files import save_random_weights  # noqa: E402
from resources.embedding.offline import offline_config  # noqa: E402
from resources.embedding.patches import PatchConfig, plan_patches  # noqa: E402
from resources.embedding.precision import PRECISIONS  # noqa: E402
from resources.embedding.weights import TINY_MODEL  # noqa: E402


def frame_1080p(seed: int) -> torch.Tensor:
    """A structured 1920x1080 frame (gradients and blocks), as decoded uint8."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:1080, 0:1920]
    pixels = np.stack([xs / 1920 * 255, ys / 1080 * 255, np.full_like(xs, 100.0)], -1)
    for _ in range(40):
        x, y = rng.integers(0, 1800), rng.integers(0, 1000)
        pixels[y : y + rng.integers(20, 300), x : x + rng.integers(20, 300)] = rng.integers(0, 256, 3)
    return torch.from_numpy(np.clip(pixels, 0, 255).astype(np.uint8)).permute(2, 0, 1).contiguous()


def gemm_flops(dtype: torch.dtype, seconds: float) -> float:
    """Best FLOP/s of torch matmul over square and transformer-shaped GEMMs in ``dtype``."""
    best = 0.0
    for m, k, n in ((2048, 2048, 2048), (4096, 4096, 4096), (3200, 768, 3072), (3200, 3072, 768)):
        a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        a @ b
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            a @ b
            count += 1
        best = max(best, 2 * m * k * n * count / (time.perf_counter() - start))
    return best


def model_flops(encoder: FrameEncoder) -> float:
    """FLOPs of one image forward pass (attention projections included)."""
    size = encoder.image_size
    x = torch.zeros(1, 3, size, size, dtype=encoder.dtype)
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            encoder.model.encode_image(x)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return float(counter.get_total_flops())


def rate(work: int, fn) -> tuple[float, float]:
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    return work / seconds, seconds


def bench_crops(frame: torch.Tensor, repeats: int) -> dict[str, float]:
    """Milliseconds to cut the 1080p frame's patches, per method (best of ``repeats``)."""
    plan = plan_patches(1920, 1080, PatchConfig())
    mean, std = torch.tensor([0.48, 0.46, 0.41]), torch.tensor([0.27, 0.26, 0.28])
    buffer = torch.empty(len(plan), 3, 224, 224)  # reused, as the encoder reuses its batch
    out = {}
    for method in CROP_METHODS:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            for index, crop in enumerate(iter_patch_crops(frame, plan, 224, mean, std, method)):
                buffer[index].copy_(crop)
            times.append(time.perf_counter() - start)
        out[method] = min(times) * 1000
    image = Image.fromarray(frame.permute(1, 2, 0).numpy())
    start = time.perf_counter()
    for x, y, w, h in plan.padded.tolist():
        image.crop((x, y, x + w, y + h)).resize((224, 224), Image.Resampling.BICUBIC)
    out["pil_crop_resize (reference)"] = (time.perf_counter() - start) * 1000
    return out


def bench_model(encoder: FrameEncoder, frames: list[torch.Tensor], global_frames: int) -> dict[str, float]:
    patch_config = PatchConfig()
    plans = [plan_patches(1920, 1080, patch_config) for _ in frames]
    encoder.encode_frames(frames[:1], PatchConfig(max_patches=encoder.config.batch_size))  # warm-up
    many = [frames[i % len(frames)] for i in range(global_frames)]
    global_rate, _ = rate(global_frames, lambda: encoder.encode_global(many))
    crops = sum(len(p) for p in plans)
    crop_rate, _ = rate(crops, lambda: encoder.encode_patches(frames, plans))
    encoder.timings = type(encoder.timings)()
    frame_rate, seconds = rate(len(frames), lambda: encoder.encode_frames(frames, patch_config))
    images = len(frames) + crops
    dense_config = replace(patch_config, mode="dense")
    encoder.encode_frames(frames[:1], dense_config)  # warm-up of the full-frame shapes
    before = encoder.timings.images
    dense_rate, _ = rate(len(frames), lambda: encoder.encode_frames(frames, dense_config))
    dense_passes = (encoder.timings.images - before) / len(frames)  # global view + one per window size
    return {
        "frames_1080p_per_s_dense": dense_rate,
        "passes_per_1080p_frame": 1 + crops / len(frames),
        "passes_per_1080p_frame_dense": dense_passes,
        "global_images_per_s": global_rate,
        "patch_crops_per_s": crop_rate,
        "frames_1080p_per_s": frame_rate,
        "images_per_s_end_to_end": images / seconds,
        "crop_share": encoder.timings.crop_s / seconds,
        "patches_per_1080p_frame": crops / len(frames),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--models", default=f"ViT-B-32,{TINY_MODEL}")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--out", type=Path, default=Path("var/bench/encoder.json"))
    args = parser.parse_args(argv)

    frames_n, global_n = (1, 32) if args.quick else (3, 96)
    frames = [frame_1080p(seed) for seed in range(frames_n)]
    weights_dir = Path("var/bench/models")
    results: dict[str, object] = {"threads": torch.get_num_threads(), "torch": torch.__version__}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; random weights (speed only)")

    crops = bench_crops(frames[0], 3 if args.quick else 5)
    results["crop_ms_1080p"] = crops
    print("\ncrop extraction, 1080p frame, 144 padded 292x292 boxes -> 224x224:")
    for method, ms in crops.items():
        print(f"  {method:28s} {ms:8.1f} ms")

    gemm_cache: dict[str, float] = {}
    for model in args.models.split(","):
        if Path(model).is_dir():  # an open_clip local-dir folder such as models/framesearch-world
            encoder = FrameEncoder.load(offline_config(EncoderConfig(precision=args.precision), Path(model)))
            model = Path(model).name
        else:
            weights = weights_dir / f"{model}-random.safetensors"
            if not weights.is_file():
                save_random_weights(weights, model)
            encoder = FrameEncoder.load(EncoderConfig(model=model, pretrained=str(weights), precision=args.precision))
        precision = encoder.info.precision
        if precision not in gemm_cache:
            gemm_cache[precision] = gemm_flops(PRECISIONS[precision], 1.0 if args.quick else 2.0)
        flops = model_flops(encoder)
        figures = bench_model(encoder, frames, global_n)
        ratio = flops * figures["images_per_s_end_to_end"] / gemm_cache[precision]
        figures.update(
            gflops_per_image=flops / 1e9,
            gemm_gflops=gemm_cache[precision] / 1e9,
            roofline_ratio=ratio,
            precision=precision,
            precision_check_cosine=encoder.info.precision_check_cosine,
        )
        results[model] = figures
        print(f"\n{model} ({precision}, batch {encoder.config.batch_size}, {flops / 1e9:.3f} GFLOP/image):")
        print(f"  global images/s          {figures['global_images_per_s']:9.1f}")
        print(f"  patch crops/s            {figures['patch_crops_per_s']:9.1f}")
        print(f"  1080p frames/s           {figures['frames_1080p_per_s']:9.3f}  ({figures['patches_per_1080p_frame']:.0f} patches + 1 global each)")
        print(f"  1080p frames/s, dense    {figures['frames_1080p_per_s_dense']:9.3f}  (PATCH_MODE=dense: {figures['passes_per_1080p_frame_dense']:.0f} "
              f"model passes a frame against {figures['passes_per_1080p_frame']:.0f}; x{figures['frames_1080p_per_s_dense'] / figures['frames_1080p_per_s']:.1f})")
        print(f"  crop extraction share    {figures['crop_share'] * 100:8.1f} %")
        print(f"  GEMM peak ({precision})       {figures['gemm_gflops']:9.1f} GFLOP/s")
        print(f"  roofline ratio           {ratio * 100:8.1f} %  (GFLOP/image x images/s / GEMM GFLOP/s, end to end)")

    print()
    write_results(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
