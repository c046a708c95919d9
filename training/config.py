"""The trainer's settings and the names of the files it writes."""

from __future__ import annotations

from dataclasses import dataclass

PROVENANCE_KEY = "framesearch.provenance"
WEIGHTS_FILE = "open_clip_model.safetensors"
CONFIG_FILE = "open_clip_config.json"
SCRIPT = "training/train_world_model.py"


@dataclass
class TrainConfig:
    """Training settings; every field is also a command-line flag (``--batch-size 32``)."""

    model: str = "framesearch-world"  # open_clip architecture (a registered JSON config)
    steps: int = 2000  # optimizer steps
    batch_size: int = 64  # images per step
    lr: float = 1e-3  # peak AdamW learning rate
    warmup_steps: int = 100  # linear warm-up, then cosine decay to lr * min_lr_frac
    min_lr_frac: float = 0.05  # final learning rate as a fraction of lr
    weight_decay: float = 0.05  # AdamW decay on matrices only (not norms, biases, logit scale)
    mix: str = "0.2,0.1,0.15,0.05,0.5"  # shares of the example kinds crop, single, frame, background,
    #   planned (the planner's own windows of whole frames, with hard negatives)
    warm_mix: str = "0.2,0.5,0.2,0.1,0"  # the shares for the first warm_frac of the steps: shapes are
    #   learned from big objects first (on small crops alone the ViT learned colour, never shape)
    warm_frac: float = 0.35  # share of the steps that use warm_mix
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


