"""Held-out figures of a world model: caption accuracy on each kind of image, on the encoder's own
patch crops of small targets, and text retrieval over world frames by global and by patch vectors."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import open_clip
import torch

from resources.embedding.crops import global_view, iter_patch_crops
from resources.embedding.patches import PatchConfig, plan_patches
from training.batches import to_model_input
from training.config import TrainConfig
from training.examples import nearest_window, training_example, windows_holding
from training.world import CAPTIONS, CLASSES, WorldFrame, class_index, random_frame


@torch.inference_mode()
def embed_images(model: open_clip.CLIP, inputs: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """``(N, 3, S, S)`` model inputs -> ``(N, D)`` unit vectors."""
    out = [model.encode_image(inputs[i : i + batch], normalize=True) for i in range(0, len(inputs), batch)]
    return torch.cat(out) if out else torch.zeros(0, model.text_projection.shape[1])


def target_patch_index(frame: WorldFrame, plan_core: np.ndarray) -> int:
    """The patch whose core window holds the target (object 0) whole, nearest its centre (the
    nearest of all windows when none holds it whole)."""
    box = frame.objects[0].box
    holding = windows_holding(plan_core, box)
    return nearest_window(plan_core, box, holding if holding.any() else np.ones(len(plan_core), bool))


@torch.inference_mode()
def evaluate(model: open_clip.CLIP, tokenizer: Callable[[list[str]], torch.Tensor], config: TrainConfig, image_size: int) -> dict[str, float]:
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
        pairs = [training_example(image_size, rng, kind=kind) for _ in range(config.eval_examples)]
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
