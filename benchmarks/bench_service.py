"""Search service latency per endpoint over a large synthetic index, with the encoder's share.

    ./dev bench service                     # 100,000 frames, ViT-B-32 (random weights), uvicorn
    ./dev bench service --frames 20000 --model framesearch-tiny

Builds (or reuses, with --keep) an embedded index of synthetic 512-d frames through the real
per-video sync, starts the real app under uvicorn on 127.0.0.1, and sends requests one at a time
with httpx: text, text + rerank, image upload (a 224x224 query: one patch), image upload + rerank,
image upload of a 1280x720 query + rerank (66 query patches), and hybrid-free endpoints only
(hybrid and /search/image need S3). Reports p50/p99 of the client-side latency and the share of
the server's time spent in the encoder (``durations_ms.encode`` / ``duration_ms``).
"""

from __future__ import annotations

import argparse
import io
import shutil
import socket
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_index import DIM, FRAMES_PER_VIDEO, Needles, load  # noqa: E402
from benchmarks.common import write_results  # noqa: E402
from resources.embedding.encoder import EncoderConfig, FrameEncoder  # noqa: E402
from resources.embedding.model_files import save_random_weights  # noqa: E402
from resources.vector_index import VectorIndex  # noqa: E402
from resources.vector_index.schema import IndexSchema  # noqa: E402


def jpeg(width: int, height: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).resize((width, height), Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--path", type=Path, default=Path("var/bench/service-index"))
    parser.add_argument("--keep", action="store_true", help="keep (and reuse) the index on disk")
    parser.add_argument("--out", type=Path, default=Path("var/bench/service.json"))
    args = parser.parse_args(argv)

    weights = Path("var/bench/models") / f"{args.model}-random.safetensors"
    if not weights.is_file():
        save_random_weights(weights, args.model)
    encoder = FrameEncoder.load(EncoderConfig(model=args.model, pretrained=str(weights)))
    if encoder.info.embed_dim != DIM:
        raise SystemExit(f"{args.model} has {encoder.info.embed_dim}-d vectors; the synthetic index is {DIM}-d")
    schema = IndexSchema("frames_bench", DIM)
    built = (args.path / schema.collection / "edge_config.json").is_file()
    if not built:
        shutil.rmtree(args.path, ignore_errors=True)
        print(f"building an index of {args.frames:,} synthetic frames ...", flush=True)
        with VectorIndex.open(schema, path=args.path) as index:
            load(index, args.frames // FRAMES_PER_VIDEO, Needles(args.frames, count=0, per_target=1), np.empty((args.frames, DIM), np.float32))
            index.optimize()

    import uvicorn

    from search_service.app import create_app  # imported late: it reads the environment
    from search_service.config import ServiceSettings

    app = create_app(ServiceSettings(checkpoint_dir=str(args.path / "no-checkpoints")), encoder=encoder,
                     open_index=lambda dim: VectorIndex.open(schema, path=args.path))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    client = httpx.Client(timeout=120)
    while True:
        try:
            if client.get(f"{base}/healthz").status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.1)

    small, hd = jpeg(224, 224, 1), jpeg(1280, 720, 2)
    cases = {
        "POST /search/text": lambda i: client.post(f"{base}/search/text", json={"query": f"a red car number {i}", "top_k": 10}),
        "POST /search/text (rerank)": lambda i: client.post(f"{base}/search/text", json={"query": f"a red car number {i}", "top_k": 10, "rerank": True}),
        "POST /search/image/upload 224x224": lambda i: client.post(f"{base}/search/image/upload", files={"file": ("q.jpg", small)}, data={"top_k": "10"}),
        "POST /search/image/upload 224x224 (rerank)": lambda i: client.post(f"{base}/search/image/upload", files={"file": ("q.jpg", small)}, data={"top_k": "10", "rerank": "true"}),
        "POST /search/image/upload 1280x720 (rerank)": lambda i: client.post(f"{base}/search/image/upload", files={"file": ("q.jpg", hd)}, data={"top_k": "10", "rerank": "true"}),
        "GET /healthz": lambda i: client.get(f"{base}/healthz"),
    }
    results: dict[str, object] = {"frames": args.frames, "model": encoder.info.model_id, "precision": encoder.info.precision}
    print(f"\n{args.frames:,} frames, {encoder.info.model_id} ({encoder.info.precision}), {args.requests} requests each, one at a time")
    print(f"{'endpoint':44s} {'p50 ms':>8s} {'p99 ms':>8s} {'encoder share':>14s}")
    for name, send in cases.items():
        send(-1)  # warm-up
        times, shares = [], []
        n = args.requests if "1280" not in name else max(5, args.requests // 6)
        for i in range(n):
            started = time.perf_counter()
            response = send(i)
            times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.text
            body = response.json()
            if "durations_ms" in body:
                shares.append(body["durations_ms"].get("encode", 0.0) / body["duration_ms"])
        p50, p99 = float(np.percentile(times, 50)), float(np.percentile(times, 99))
        share = float(np.mean(shares)) if shares else 0.0
        results[name] = {"p50_ms": p50, "p99_ms": p99, "encoder_share": share, "requests": n}
        print(f"{name:44s} {p50:8.1f} {p99:8.1f} {share * 100:13.0f}%")
    server.should_exit = True
    thread.join(10)
    if not args.keep:
        shutil.rmtree(args.path, ignore_errors=True)
    write_results(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
