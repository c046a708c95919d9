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

# The trainer's parts: config (settings), batches (data), evaluation (held-out figures),
# model_card (the folder's README); this module holds the loss, saving and the training loop.
import argparse
import dataclasses
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F

import resources.embedding.weights  # noqa: F401  (registers resources/embedding/model_configs with open_clip)
from training.batches import batch_stream, soften, to_model_input
from training.config import CONFIG_FILE, PROVENANCE_KEY, SCRIPT, WEIGHTS_FILE, TrainConfig
from training.evaluation import evaluate
from training.model_card import write_card
from training.world import CAPTIONS, CLASSES

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


# -- training ------------------------------------------------------------------------------------


def lr_at(step: int, config: TrainConfig) -> float:
    """Linear warm-up to ``lr``, then cosine decay to ``lr * min_lr_frac``."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.lr * (config.min_lr_frac + (1 - config.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * progress)))


def train(config: TrainConfig, log: Callable[[str], object] = print) -> dict[str, object]:
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
