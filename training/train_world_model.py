"""Train framesearch's offline model on the synthetic world and write it as an open_clip ``local-dir:``.

The model is a small open_clip CLIP (``resources/embedding/model_configs/framesearch-world.json``) trained
from scratch, on CPU, on images from :mod:`training.world`. It knows only that world's 36
captions ``"a {colour} {shape}"``: it is a stand-in that lets the product be demonstrated and its
retrieval quality measured offline, not a general model.

Run (seeded; the figures land in the model folder's ``training.json`` and ``README.md``)::

    .venv/bin/python -m training.train_world_model                  # the shipped model, ~20 min
    .venv/bin/python -m training.train_world_model --steps 200 --out var/pilot   # a pilot

Training images resemble what the encoder sees at search time (``training.examples.training_example``):
mostly patch-like crops (one whole object, radius 6-22% of the crop, sometimes parts of neighbours
at the edges), some single objects, whole frames with one large object letterboxed like the
global view, and object-free backgrounds. The loss is CLIP's symmetric contrastive loss with the
36 captions as the text side: image->text is a softmax over all 36 captions, text->image a softmax
over the batch's images in which every image of the caption's class is a positive (a batch of 64
holds repeated classes, which plain in-batch CLIP would wrongly push apart) and object-free
backgrounds are negatives for every caption.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F

import resources.embedding.weights  # noqa: F401  (registers resources/model_configs with open_clip)
from resources.embedding.crops import global_view, iter_patch_crops
from resources.embedding.patches import PatchConfig, plan_patches
from training.examples import EXAMPLE_KINDS, training_example
from training.world import CAPTIONS, CLASSES, WorldFrame, class_index, random_frame

PROVENANCE_KEY = "framesearch.provenance"
WEIGHTS_FILE = "open_clip_model.safetensors"
CONFIG_FILE = "open_clip_config.json"
SCRIPT = "training/train_world_model.py"


@dataclass
class TrainConfig:
    """Training settings; every field is also a command-line flag (``--batch-size 32``)."""

    model: str = "framesearch-world"  # open_clip architecture (a registered JSON config)
    steps: int = 2800  # optimizer steps
    batch_size: int = 64  # images per step
    lr: float = 1e-3  # peak AdamW learning rate
    warmup_steps: int = 100  # linear warm-up, then cosine decay to lr * min_lr_frac
    min_lr_frac: float = 0.05  # final learning rate as a fraction of lr
    weight_decay: float = 0.05  # AdamW decay on matrices only (not norms, biases, logit scale)
    mix: str = "0.6,0.15,0.15,0.1"  # shares of the example kinds crop, single, frame, background
    warm_mix: str = "0.2,0.5,0.2,0.1"  # the shares for the first warm_frac of the steps: shapes are
    #   learned from big objects first (on small crops alone the ViT learned colour, never shape)
    warm_frac: float = 0.4  # share of the steps that use warm_mix
    blur_prob: float = 0.3  # chance an image is softened (like the encoder's antialiased resize)
    aux_weight: float = 0.0  # weight of an auxiliary 36-way linear head on the image vectors (0: off;
    #   the head is thrown away after training)
    seed: int = 0  # seeds torch and the world's generator: the run is reproducible
    threads: int = 2  # torch CPU threads
    log_every: int = 25  # steps between log lines (and loss-curve points)
    eval_examples: int = 360  # held-out images per evaluation set (10 per class)
    eval_frames: int = 72  # 1280x720 world frames for the patch and retrieval figures (2 per class)
    eval_frame_size: tuple[int, int] = (1280, 720)  # width, height of those frames
    data_workers: int = 0  # 0: images are made inline (measured fastest on 2 cores); 1: in a worker process
    freeze_token_embedding: bool = True  # the 49,408 x width table stays at its seeded init (saves an
    #   Adam update of 6.3 M values a step; only ~15 distinct tokens are ever used, and random rows
    #   are as good an input to the text transformer as trained ones)
    out: str = "models/framesearch-world"  # the local-dir folder written


# -- data ----------------------------------------------------------------------------------------


def to_model_input(images: np.ndarray, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``(B, S, S, 3)`` uint8 -> ``(B, 3, S, S)`` normalized float32, as the encoder normalizes."""
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0  # (B, 3, S, S)
    return (pixels - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)


def soften(batch: torch.Tensor, prob: float, gen: torch.Generator) -> torch.Tensor:
    """Blur a random ``prob`` share of the images with a 3x3 binomial kernel (in place of a resize)."""
    if prob <= 0:
        return batch
    chosen = torch.rand(batch.shape[0], generator=gen) < prob  # (B,)
    if not chosen.any():
        return batch
    k = torch.tensor([1.0, 2.0, 1.0])
    kernel = (k[:, None] * k[None, :] / 16.0).expand(3, 1, 3, 3)  # (3, 1, 3, 3) depthwise
    batch = batch.clone()
    batch[chosen] = F.conv2d(F.pad(batch[chosen], (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
    return batch


def make_batch(
    size: int, count: int, rng: np.random.Generator, mix: tuple[float, ...] = (0.6, 0.15, 0.15, 0.1)
) -> tuple[np.ndarray, torch.Tensor]:
    """``count`` training examples: images ``(count, size, size, 3)`` uint8 and labels ``(count,)``;
    ``mix`` gives the shares of the kinds in ``EXAMPLE_KINDS`` (crop, single, frame, background)."""
    p = np.asarray(mix, dtype=np.float64) / sum(mix)
    kinds = [EXAMPLE_KINDS[int(k)] for k in rng.choice(len(EXAMPLE_KINDS), size=count, p=p)]
    pairs = [training_example(size, rng, kind=kind) for kind in kinds]  # type: ignore[arg-type]
    images = np.stack([image for image, _ in pairs])  # (count, size, size, 3)
    labels = torch.tensor([label for _, label in pairs], dtype=torch.long)  # (count,) -1 = no object
    return images, labels


def parse_mix(text: str) -> tuple[float, ...]:
    """``"0.6,0.15,0.15,0.1"`` -> shares of ``EXAMPLE_KINDS``."""
    mix = tuple(float(x) for x in text.split(","))
    if len(mix) != len(EXAMPLE_KINDS) or min(mix) < 0 or sum(mix) <= 0:
        raise ValueError(f"a mix gives {len(EXAMPLE_KINDS)} non-negative shares ({', '.join(EXAMPLE_KINDS)}), got {text!r}")
    return mix


class WorldBatches(torch.utils.data.IterableDataset):
    """Endless ``(images (B, S, S, 3) uint8, labels (B,))`` batches from one seeded generator.

    Iterated inline by default. A single DataLoader worker (``--data-workers 1``) gives the same
    sequence, but on 2 cores it slowed training 2.5x here (the worker and torch's two threads fight
    for the cores), so it is only worth it with cores to spare.
    """

    def __init__(self, size: int, config: TrainConfig) -> None:
        self.size, self.config = size, config

    def __iter__(self):  # type: ignore[no-untyped-def]
        torch.set_num_threads(1)
        config = self.config
        rng = np.random.default_rng(config.seed)
        warm_steps = round(config.warm_frac * config.steps)
        warm_mix, mix = parse_mix(config.warm_mix), parse_mix(config.mix)
        step = 0
        while True:
            images, labels = make_batch(self.size, config.batch_size, rng, warm_mix if step < warm_steps else mix)
            step += 1
            yield torch.from_numpy(images), labels


def batch_stream(config: TrainConfig, size: int):  # type: ignore[no-untyped-def]
    """The training batches, made in a worker process when ``config.data_workers`` is 1."""
    dataset = WorldBatches(size, config)
    if config.data_workers == 0:
        return iter(dataset)
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=1, prefetch_factor=4)
    return iter(loader)


# -- loss ----------------------------------------------------------------------------------------


def caption_contrastive_loss(
    image_vecs: torch.Tensor, text_vecs: torch.Tensor, labels: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """Symmetric CLIP loss against the full caption set (see the module docstring).

    ``image_vecs`` (B, D) and ``text_vecs`` (C, D) are unit vectors; ``labels`` (B,) are class
    indices, -1 for images without an object.
    """
    logits = logit_scale * image_vecs @ text_vecs.T  # (B, C)
    has_object = labels >= 0
    image_to_text = F.cross_entropy(logits[has_object], labels[has_object])
    present = labels[has_object].unique()  # (P,) classes in this batch
    per_caption = logits[:, present].T  # (P, B): each present caption against every image
    positive = labels[None, :] == present[:, None]  # (P, B)
    text_to_image = (
        torch.logsumexp(per_caption, dim=1) - torch.logsumexp(per_caption.masked_fill(~positive, -math.inf), dim=1)
    ).mean()
    return (image_to_text + text_to_image) / 2


# -- evaluation ----------------------------------------------------------------------------------


@torch.inference_mode()
def embed_images(model: torch.nn.Module, inputs: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """``(N, 3, S, S)`` model inputs -> ``(N, D)`` unit vectors."""
    out = [model.encode_image(inputs[i : i + batch], normalize=True) for i in range(0, len(inputs), batch)]
    return torch.cat(out) if out else torch.zeros(0, model.text_projection.shape[1])


def target_patch_index(frame: WorldFrame, plan_core: np.ndarray) -> int:
    """The patch whose core window holds the target (object 0) whole, nearest its centre."""
    x, y, w, h = frame.objects[0].box
    cx, cy = x + w / 2, y + h / 2
    core = plan_core.astype(np.float64)  # (patches, 4)
    inside = (core[:, 0] <= x) & (core[:, 1] <= y) & (core[:, 0] + core[:, 2] >= x + w) & (core[:, 1] + core[:, 3] >= y + h)
    dist = (core[:, 0] + core[:, 2] / 2 - cx) ** 2 + (core[:, 1] + core[:, 3] / 2 - cy) ** 2  # (patches,)
    dist[~inside] += 1e12  # prefer windows holding the whole target
    return int(np.argmin(dist))


@torch.inference_mode()
def evaluate(model: torch.nn.Module, tokenizer: object, config: TrainConfig, image_size: int) -> dict[str, float]:
    """Held-out figures (a generator seeded apart from training's):

    * ``acc_single`` / ``acc_crop`` / ``acc_frame``: caption top-1 over the 36 captions on single
      objects, patch-like crops and letterboxed large-object frames made like the training images;
    * ``acc_world_patch``: on small targets (radius 30-45 px) in 1280x720 world frames among 4
      distractors, cut out exactly as the encoder cuts patches (window 224, stride 112, 15% context,
      ``resize_slice``), taking the patch that holds the target whole nearest its centre;
    * ``acc_world_global``: the same frames' letterboxed global views (the small target is ~6 px);
    * ``recall10_global`` / ``recall10_patch``: text retrieval over those frames, one query per
      class, ranked by global cosine or by the best patch (MaxSim of one text vector, alpha 0);
      recall@10 = share of the frames holding the class found in the top 10, averaged over classes.
    """
    model.eval()
    rng = np.random.default_rng(config.seed + 1_000_003)
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD)
    text = model.encode_text(tokenizer(list(CAPTIONS)), normalize=True)  # (36, D)

    def accuracy(vecs: torch.Tensor, labels: list[int]) -> float:
        return float(((vecs @ text.T).argmax(1) == torch.tensor(labels)).float().mean())

    figures: dict[str, float] = {}
    for kind in ("single", "crop", "frame"):
        pairs = [training_example(image_size, rng, kind=kind) for _ in range(config.eval_examples)]  # type: ignore[arg-type]
        inputs = to_model_input(np.stack([p[0] for p in pairs]), mean, std)
        figures[f"acc_{kind}"] = accuracy(embed_images(model, inputs), [p[1] for p in pairs])

    width, height = config.eval_frame_size
    plan = plan_patches(width, height, PatchConfig())
    globals_, patches, labels, frames = [], [], [], []
    for i in range(config.eval_frames):
        frame = random_frame(width, height, rng, target=CLASSES[i % len(CLASSES)])
        pixels = torch.from_numpy(np.array(frame.image)).permute(2, 0, 1).contiguous()  # (3, H, W) uint8
        globals_.append(global_view(pixels, image_size, mean, std, "pad"))
        crops = torch.stack([c.clone() for c in iter_patch_crops(pixels, plan, image_size, mean, std, "resize_slice")])
        patches.append(embed_images(model, crops))  # (patches, D)
        labels.append(class_index(*frame.objects[0].cls))
        frames.append(frame)
    target_patch = torch.stack([p[target_patch_index(f, plan.core)] for p, f in zip(patches, frames)])  # (F, D)
    global_vecs = embed_images(model, torch.stack(globals_))  # (F, D)
    figures["acc_world_patch"] = accuracy(target_patch, labels)
    figures["acc_world_global"] = accuracy(global_vecs, labels)

    patch_scores = torch.stack([(p @ text.T).max(0).values for p in patches])  # (F, 36) best patch per caption
    global_scores = global_vecs @ text.T  # (F, 36)
    relevant = torch.tensor([[f.has_class(*c) for c in CLASSES] for f in frames])  # (F, 36)
    for name, scores in (("global", global_scores), ("patch", patch_scores)):
        top = scores.topk(min(10, len(frames)), dim=0).indices  # (10, 36)
        hits = relevant.gather(0, top).sum(0).float()  # (36,)
        per_class = hits / relevant.sum(0).clamp(min=1)
        figures[f"recall10_{name}"] = float(per_class[relevant.sum(0) > 0].mean())
    figures["recall10_chance"] = min(10, len(frames)) / len(frames)
    return {k: round(v, 4) for k, v in figures.items()}


# -- saving --------------------------------------------------------------------------------------


def cpu_name() -> str:
    """The CPU's model name as ``lscpu`` reports it."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def save_local_dir(model: torch.nn.Module, config: TrainConfig, provenance: dict[str, object]) -> Path:
    """Write ``open_clip_config.json`` and fp16 ``open_clip_model.safetensors`` (provenance in its header).

    fp16 halves the file (the 49,408-token embedding alone is 25 MB in fp32); open_clip's loader
    copies the tensors into its fp32 model.
    """
    from safetensors.torch import save_file

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    model_cfg = open_clip.get_model_config(config.model)
    size = model_cfg["vision_cfg"]["image_size"]
    open_clip_config = {
        "model_cfg": model_cfg,
        "preprocess_cfg": {
            "size": size,
            "mean": list(open_clip.OPENAI_DATASET_MEAN),
            "std": list(open_clip.OPENAI_DATASET_STD),
            "interpolation": "bicubic",
            "resize_mode": "shortest",
        },
    }
    (out / CONFIG_FILE).write_text(json.dumps(open_clip_config, indent=2) + "\n")
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    tmp = out / (WEIGHTS_FILE + ".tmp")
    save_file(state, str(tmp), metadata={"format": "pt", PROVENANCE_KEY: json.dumps(provenance, sort_keys=True)})
    tmp.chmod(0o644)
    tmp.replace(out / WEIGHTS_FILE)
    return out


def read_provenance(folder: str | Path) -> dict[str, object]:
    """The provenance stored in a model folder's weights header."""
    from safetensors import safe_open

    with safe_open(str(Path(folder) / WEIGHTS_FILE), framework="pt") as handle:
        return json.loads((handle.metadata() or {})[PROVENANCE_KEY])


# -- the card ------------------------------------------------------------------------------------


def _curve_png(history: list[dict[str, float]], path: Path, width: int = 640, height: int = 240) -> None:
    """Loss (black) and batch caption accuracy (blue) against steps, drawn with Pillow."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    left, right, top, bottom = 40, width - 10, 10, height - 25
    draw.rectangle([left, top, right, bottom], outline=(160, 160, 160))
    if len(history) >= 2:
        last = history[-1]["step"]
        peak = max(h["loss"] for h in history)
        for key, colour, span in (("loss", (0, 0, 0), peak), ("batch_acc", (30, 80, 220), 1.0)):
            points = [
                (left + (right - left) * h["step"] / last, bottom - (bottom - top) * h[key] / span) for h in history
            ]
            draw.line(points, fill=colour, width=2)
        draw.text((left, bottom + 6), f"step 0 .. {last}", fill=(0, 0, 0))
        draw.text((left + 4, top + 2), f"loss (black, 0..{peak:.2f})  batch accuracy (blue, 0..1)", fill=(0, 0, 0))
    image.save(path)


def _examples_png(path: Path, seed: int, size: int = 96) -> None:
    """An 8x4 grid of training images (shown at ``size``), one kind per row."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    rows = []
    for kind in ("crop", "crop", "single", "frame"):
        row = [Image.fromarray(training_example(size, rng, kind=kind)[0]) for _ in range(8)]
        rows.append(np.concatenate([np.asarray(im) for im in row], axis=1))
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)


def write_card(result: dict[str, object], config: TrainConfig) -> Path:
    """The model folder's README.md: what the model is, how it was made, what it scores, its limits."""
    out = Path(config.out)
    ev: dict[str, float] = result["eval"]  # type: ignore[assignment]
    prov: dict[str, object] = result["provenance"]  # type: ignore[assignment]
    cfg = open_clip.get_model_config(config.model)
    vis, txt = cfg["vision_cfg"], cfg["text_cfg"]
    _curve_png(result["history"], out / "training_curve.png")  # type: ignore[arg-type]
    _examples_png(out / "examples.png", config.seed + 7, vis["image_size"])
    text = f"""# {config.model}: a CLIP trained on framesearch's synthetic shapes world

**What it is.** A small open_clip model trained from scratch, on CPU, on images of
`training/world.py`: coloured shapes (6 colours x 6 shapes = 36 classes) on blurred, noisy,
striped backgrounds. It **knows only the 36 captions** `"a {{colour}} {{shape}}"` (colours
{", ".join(sorted({c for c, _ in CLASSES}))}; shapes {", ".join(dict.fromkeys(s for _, s in CLASSES))}).
It is **not a general model**: any other text or any real photo gives a vector without meaning.
It exists so that framesearch can be demonstrated and its retrieval quality measured offline,
on a world whose ground truth is exact.

Load it with `OPENCLIP_PRETRAINED=local-dir:models/framesearch-world` (open_clip's own
`local-dir:` layout: `open_clip_config.json` + `open_clip_model.safetensors`; the weights are
stored in fp16 and loaded into an fp32 model). The safetensors header holds its provenance under
`{PROVENANCE_KEY}`.

![training images](examples.png)

## Data

Generated on the fly, a fresh image every time (no image is seen twice), from a seeded generator
(`training_example` in `training/world.py`), at the model's {vis["image_size"]} x {vis["image_size"]} input.
The first {config.warm_frac:.0%} of the steps use the shares `{config.warm_mix}` (crop, single, frame,
background: big objects first, so that shapes are learned, not colour alone), the rest these:

| share | kind | what |
|---|---|---|
| {parse_mix(config.mix)[0] / sum(parse_mix(config.mix)):.0%} | crop | what a patch crop looks like: one whole object, radius 6-22% of the crop (a 30-45 px radius object in the 291 px padded window is 10-15%), background sized as a 720p/1080p frame's, and in half of them parts of 1-2 other objects cut by the edge |
| {parse_mix(config.mix)[1] / sum(parse_mix(config.mix)):.0%} | single | one object, radius 15-40%, on a background (the recipe of issue 10) |
| {parse_mix(config.mix)[2] / sum(parse_mix(config.mix)):.0%} | frame | a 16:9, 4:3 or square frame with one object of radius 20-40% of its height, letterboxed with open_clip's mean colour like the encoder's global view |
| {parse_mix(config.mix)[3] / sum(parse_mix(config.mix)):.0%} | background | no object: a negative for every caption |

{config.blur_prob:.0%} of the images are softened with a 3x3 blur (the encoder's antialiased resize softens crops).

## Architecture and training

| | |
|---|---|
| architecture | open_clip CLIP `{config.model}` (`resources/embedding/model_configs/{config.model}.json`) |
| image tower | ViT, {vis["image_size"]} px input, patch {vis["patch_size"]}, width {vis["width"]}, {vis["layers"]} layers, head width {vis.get("head_width", 64)} |
| text tower | width {txt["width"]}, {txt["layers"]} layers, {txt["heads"]} heads, context {txt["context_length"]}, CLIP BPE vocabulary ({txt["vocab_size"]} tokens) |
| embedding | {cfg["embed_dim"]}-d |
| parameters | {result["parameters"]:,} ({result["weights_bytes"] / 1e6:.1f} MB in fp16; the token embedding is {txt["vocab_size"] * txt["width"]:,} of them) |
| loss | CLIP's symmetric contrastive loss with the 36 captions as the text side; an image's positives are its class's caption, a caption's positives every image of its class in the batch; backgrounds are negatives only |
| optimizer | AdamW (betas 0.9/0.98, weight decay {config.weight_decay} on matrices), lr {config.lr} with {config.warmup_steps} warm-up steps then cosine to {config.lr * config.min_lr_frac:g}, gradient clip 1.0 |
| steps | {config.steps} x batch {config.batch_size} = {config.steps * config.batch_size:,} images |
| seed | {config.seed} (torch and the world's generator; `{config.threads}` torch threads) |
| time | {result["train_seconds"]} s training ({result["data_seconds"]} s making images, {result["model_seconds"]} s in the model), {result["eval_seconds"]} s evaluation, {result["total_seconds"]} s in all |
| CPU | {prov["cpu"]} (other processes shared the 2 cores at times: times vary from run to run) |
| software | torch {result["torch"]}, open_clip {result["open_clip"]}, Python {result["python"]} |

Reproduce: `.venv/bin/python -m {SCRIPT[:-3].replace("/", ".")}` (all settings are flags; the
defaults made this folder). With the same seed, thread count and software the run repeats.

![training curve](training_curve.png)

Why 112 px and patch 16 rather than issue 10's 224 px and patch 32 (same 7 x 7 tokens, same
widths and depths): trained 1,500 steps at 224/32 on this world's crop-heavy mix, the ViT learned
colour but never shape (held-out colour accuracy 0.99, shape accuracy 0.20 = chance; captions of
one colour had text cosine 0.9999), and in 300-step pilots on single objects neither calmer
backgrounds, a trainable token table, nor a supervised auxiliary head left that plateau, while
112/16 did (loss below ln 6) at ~1.7x less time per step; the big-objects-first warm mix then
let shape be learned before the crops.

## Accuracy (held-out, evaluated on the saved fp16 weights reloaded through open_clip)

Caption top-1 over the 36 captions:

| test set | accuracy (chance 0.028) |
|---|---|
| single objects ({config.eval_examples}) | {ev["acc_single"]:.3f} |
| patch-like crops ({config.eval_examples}) | {ev["acc_crop"]:.3f} |
| large objects, letterboxed frames ({config.eval_examples}) | {ev["acc_frame"]:.3f} |
| small targets (radius 30-45 px) in {config.eval_frame_size[0]}x{config.eval_frame_size[1]} world frames among 4 distractors, the encoder's patch crop holding the target ({config.eval_frames}) | {ev["acc_world_patch"]:.3f} |
| the same frames' letterboxed global views (the target is 3-6 px wide there) | {ev["acc_world_global"]:.3f} |

`caption_accuracy` in the provenance ({prov["caption_accuracy"]}) is the mean of the first three rows.

Text retrieval over those {config.eval_frames} frames (one query per class; a frame is relevant if
any of its objects has the class; recall@10 averaged over classes; computed here with the
encoder's crops in numpy/torch, not through Qdrant):

| ranking | recall@10 |
|---|---|
| global vector | {ev["recall10_global"]:.3f} |
| best patch (MaxSim, alpha 0) | {ev["recall10_patch"]:.3f} |
| chance | {ev["recall10_chance"]:.3f} |

## Limits

- Knows only this world and these 36 captions. Other words are tokens it never saw; real images
  are out of its distribution. Scores mean nothing outside the world.
- Colour names are the world's: `cyan` and `purple` are specific RGB values (see `COLOURS`).
- Small objects are found by the patch vectors, not by the global vector (table above): use
  rerank. Objects much smaller than ~6% of a patch crop were not trained on.
- Figures are from one seed and one CPU; `training.json` holds the full log.
"""
    (out / "README.md").write_text(text)
    return out / "README.md"


# -- training ------------------------------------------------------------------------------------


def lr_at(step: int, config: TrainConfig) -> float:
    """Linear warm-up to ``lr``, then cosine decay to ``lr * min_lr_frac``."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.lr * (config.min_lr_frac + (1 - config.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * progress)))


def train(config: TrainConfig, log=print) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """Train, save the local-dir folder, reload it and evaluate the saved weights; returns the figures."""
    started = time.perf_counter()
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)

    model = open_clip.create_model(config.model, pretrained=None)
    model.train()
    tokenizer = open_clip.get_tokenizer(config.model)
    image_size = open_clip.get_model_config(config.model)["vision_cfg"]["image_size"]
    tokens = tokenizer(list(CAPTIONS))  # (36, context)
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD)

    if config.freeze_token_embedding:
        model.token_embedding.weight.requires_grad_(False)
    aux_head = torch.nn.Linear(model.text_projection.shape[1], len(CLASSES))  # (D -> 36), training only
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if config.aux_weight > 0:
        trainable += [(f"aux_head.{n}", p) for n, p in aux_head.named_parameters()]
    decay = [p for n, p in trainable if p.ndim >= 2 and "logit_scale" not in n]
    no_decay = [p for n, p in trainable if p.ndim < 2 or "logit_scale" in n]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr, betas=(0.9, 0.98), eps=1e-6,
    )
    history: list[dict[str, float]] = []
    data_s = model_s = 0.0
    loss_sum = acc_sum = 0.0
    train_started = time.perf_counter()
    batches = batch_stream(config, image_size)
    for step in range(config.steps):
        t0 = time.perf_counter()
        images, labels = next(batches)  # (B, S, S, 3) uint8, (B,)
        inputs = soften(to_model_input(images.numpy(), mean, std), config.blur_prob, gen)  # (B, 3, S, S)
        t1 = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, config)
        image_feats = model.encode_image(inputs)  # (B, D)
        image_vecs = F.normalize(image_feats, dim=-1)
        text_vecs = model.encode_text(tokens, normalize=True)  # (36, D)
        scale = model.logit_scale.exp().clamp(max=100.0)
        loss = caption_contrastive_loss(image_vecs, text_vecs, labels, scale)
        if config.aux_weight > 0:
            has = labels >= 0
            loss = loss + config.aux_weight * F.cross_entropy(aux_head(image_feats[has]), labels[has])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        t2 = time.perf_counter()
        data_s, model_s = data_s + t1 - t0, model_s + t2 - t1
        with torch.no_grad():
            has = labels >= 0
            acc_sum += float((image_vecs[has] @ text_vecs.T).argmax(1).eq(labels[has]).float().mean())
        loss_sum += float(loss.detach())
        if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
            n = (step % config.log_every) + 1
            point = {
                "step": step + 1, "loss": round(loss_sum / n, 4), "batch_acc": round(acc_sum / n, 4),
                "lr": round(lr_at(step, config), 6), "logit_scale": round(float(scale.detach()), 2),
                "seconds": round(time.perf_counter() - train_started, 1),
                "data_s": round(data_s, 1), "model_s": round(model_s, 1),
            }
            history.append(point)
            loss_sum = acc_sum = 0.0
            log(json.dumps(point))
    train_seconds = time.perf_counter() - train_started

    provenance: dict[str, object] = {
        "kind": "synthetic-world",
        "description": "trained on framesearch's synthetic shapes world; knows only the 36 captions 'a {colour} {shape}'",
        "architecture": config.model,
        "steps": config.steps,
        "batch_size": config.batch_size,
        "seed": config.seed,
        "train_seconds": round(train_seconds, 1),
        "cpu": f"{cpu_name()}, {config.threads} threads",
        "script": SCRIPT,
    }
    # Evaluate the weights as saved (fp16) and reloaded through open_clip's local-dir loader.
    model.eval()
    provenance["caption_accuracy"] = None
    out = save_local_dir(model, config, provenance)
    reloaded = open_clip.create_model(f"local-dir:{out}")
    reloaded.eval()
    eval_started = time.perf_counter()
    figures = evaluate(reloaded, open_clip.get_tokenizer(f"local-dir:{out}"), config, image_size)
    eval_seconds = time.perf_counter() - eval_started
    # caption_accuracy: the mean of the three training-like held-out sets (single, crop, frame).
    provenance["caption_accuracy"] = round((figures["acc_single"] + figures["acc_crop"] + figures["acc_frame"]) / 3, 4)
    save_local_dir(model, config, provenance)  # same tensors, header now with the accuracy

    result: dict[str, object] = {
        "provenance": provenance,
        "config": dataclasses.asdict(config),
        "eval": figures,
        "train_seconds": round(train_seconds, 1),
        "data_seconds": round(data_s, 1),
        "model_seconds": round(model_s, 1),
        "eval_seconds": round(eval_seconds, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
        "parameters": sum(p.numel() for p in model.parameters()),
        "weights_bytes": (out / WEIGHTS_FILE).stat().st_size,
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "python": platform.python_version(),
        "history": history,
    }
    (out / "training.json").write_text(json.dumps(result, indent=2) + "\n")
    write_card(result, config)
    log(json.dumps({"eval": figures, "train_seconds": result["train_seconds"], "total_seconds": result["total_seconds"]}))
    return result


def parse_args(argv: list[str] | None) -> TrainConfig:
    """A flag per :class:`TrainConfig` field (``eval_frame_size`` takes two numbers)."""
    parser = argparse.ArgumentParser(prog="python -m training.train_world_model", description=__doc__.split("\n")[0])
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "eval_frame_size":
            parser.add_argument(flag, type=int, nargs=2, default=f.default)
        elif isinstance(f.default, bool):
            parser.add_argument(flag, type=lambda v: v.lower() in ("1", "true", "yes"), default=f.default)
        else:
            parser.add_argument(flag, type=type(f.default), default=f.default)
    args = vars(parser.parse_args(argv))
    args["eval_frame_size"] = tuple(args["eval_frame_size"])
    return TrainConfig(**args)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    config = parse_args(argv)
    log = lambda line: print(line, flush=True)  # noqa: E731
    log(json.dumps({"config": dataclasses.asdict(config)}))
    train(config, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
