"""Issue 22: a model switch without downtime. A library embedded with model A is searched without a
pause while model B's generation is filled beside it; a cut-over (refused while B does not cover A)
answers from B, a rollback from A again - on an embedded index (pointer file) and on a Qdrant server
(collection aliases). A client polling all the while sees no error and no empty result."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from qdrant_client import QdrantClient
from starlette.testclient import TestClient

from resources.checkpoints.format import published_path
from resources.checkpoints.video_embedding import embed_video
from resources.embedding.encoder import EncoderConfig, FrameEncoder
from resources.embedding.model_files import save_random_weights
from resources.embedding.patches import PatchConfig
from resources.embedding.weights import TINY_MODEL
from resources.frame_sources import LocalFolderSource
from resources.generations import (
    BASE,
    AliasPointer,
    FilePointer,
    Generation,
    GenerationPointer,
    SwitchRefused,
    cut_over,
    generation_for,
    rollback,
    save_record,
)
from resources.vector_index import VectorIndex
from resources.vector_index.follower import sync_checkpoint
from resources.vector_index.schema import IndexSchema
from search_service.app import create_app
from search_service.config import ServiceSettings
from tests.assets.test_videos import write_video

BASE_COLLECTION = "frames_gen"


class Backend:
    """One index backend as the pipeline, the service and the switch command each reach it."""

    def __init__(self, kind: str, root: Path) -> None:
        self.kind = kind
        self.client = QdrantClient(":memory:") if kind == "server" else None
        self.path = root / "qdrant"

    def open(self, collection: str, dim: int) -> VectorIndex:
        schema = IndexSchema(collection, dim)
        if self.client is not None:
            return VectorIndex.open(schema, client=self.client)
        return VectorIndex.open(schema, path=self.path, lock_timeout_s=10.0)

    def pointer(self) -> GenerationPointer:
        return AliasPointer(self.client, BASE_COLLECTION) if self.client is not None else FilePointer(self.path, BASE_COLLECTION)


def embed_and_sync(backend: Backend, encoder: FrameEncoder, generation: Generation, videos: Path, video_ids: list[int]) -> None:
    source = LocalFolderSource(videos)
    store = Path(generation.checkpoint_dir)
    with backend.open(generation.collection, encoder.info.embed_dim) as index:
        for video_id in video_ids:
            embed_video(video_id, source.manifest(video_id), source, encoder, store, PatchConfig())
            sync_checkpoint(index, video_id, published_path(store, video_id))


def serving_app(backend: Backend, encoder: FrameEncoder, root: str) -> TestClient:
    """The service on the base collection, following ``backend``'s pointer; a TestClient to enter."""
    app = create_app(
        ServiceSettings(checkpoint_dir=root, follow_interval_s=0.1), encoder=encoder,
        open_index=lambda dim: backend.open(BASE_COLLECTION, dim), pointer=backend.pointer(),
        open_generation=lambda generation, dim: backend.open(generation.collection, dim),
    )
    return TestClient(app)


def wait_ready(client: TestClient) -> None:
    deadline = time.monotonic() + 30
    while client.get("/healthz").status_code != 200:  # start-up: the index opens
        assert time.monotonic() < deadline
        time.sleep(0.05)


class Poller:
    """Searches as fast as it can in a thread; records every answer's status and video ids."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.answers: list[tuple[int, frozenset[int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            response = self.client.post("/search/text", json={"query": "a frame", "top_k": 20})
            videos = frozenset(h["video_id"] for h in response.json().get("results", [])) if response.status_code == 200 else frozenset()
            self.answers.append((response.status_code, videos))

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def wait_for(self, check: Callable[[frozenset[int]], bool], what: str, timeout_s: float = 60.0) -> None:
        seen = len(self.answers)
        deadline = time.monotonic() + timeout_s
        while not (len(self.answers) > seen and check(self.answers[-1][1])):
            assert time.monotonic() < deadline, f"timed out waiting for {what}; last answers {self.answers[-3:]}"
            time.sleep(0.05)


@pytest.mark.parametrize("kind", ["embedded", "server"])
def test_switch_and_rollback_without_downtime(kind: str, tmp_path: Path, tiny_encoder: FrameEncoder) -> None:
    videos, root = tmp_path / "videos", str(tmp_path / "checkpoints")
    for video_id in (1, 2, 3):
        write_video(videos, video_id, frames=2, seed=video_id)
    backend = Backend(kind, tmp_path)
    patches = PatchConfig()
    base = generation_for(tiny_encoder.config, patches, BASE_COLLECTION, root, name=BASE, embed_dim=64)
    embed_and_sync(backend, tiny_encoder, base, videos, [1, 2])  # model A serves videos 1 and 2

    # Model B: the same architecture with other weights, so its generation is another.
    weights_b = save_random_weights(tmp_path / "b.safetensors", TINY_MODEL, seed=1)
    encoder_b = FrameEncoder.load(EncoderConfig(model=TINY_MODEL, pretrained=str(weights_b), batch_size=16, precision="fp32"))
    next_gen = generation_for(encoder_b.config, patches, BASE_COLLECTION, root, embed_dim=64)
    assert next_gen.name != BASE and next_gen.collection == f"{BASE_COLLECTION}_{next_gen.name}"
    save_record(next_gen)

    with serving_app(backend, tiny_encoder, root) as client:
        wait_ready(client)
        with Poller(client) as poller:
            switch_and_roll_back(client, poller, backend, base, next_gen, encoder_b, tiny_encoder, videos)
    statuses = [status for status, _ in poller.answers]
    assert set(statuses) == {200}, [a for a in poller.answers if a[0] != 200][:5]
    assert all(videos for _, videos in poller.answers), "an empty result during the switch"
    assert len(poller.answers) > 20


def switch_and_roll_back(
    client: TestClient, poller: Poller, backend: Backend, base: Generation, next_gen: Generation,
    encoder_b: FrameEncoder, encoder_a: FrameEncoder, videos: Path,
) -> None:
    switch_open = lambda generation: backend.open(generation.collection, generation.embed_dim)  # noqa: E731
    poller.wait_for(lambda v: v == {1, 2}, "model A's answers")
    health = client.get("/healthz").json()
    assert health["generation"]["serving"] == BASE and health["config"]["collection"] == BASE_COLLECTION
    # The page's progress line: the recorded next generation, nothing of it published yet.
    assert [(g["name"], g["published"], g["of"]) for g in health["generation"]["others"]] == [(next_gen.name, 0, 2)]

    # B is filled beside A while A serves; a cut-over before B covers A is refused.
    embed_and_sync(backend, encoder_b, next_gen, videos, [1])
    with pytest.raises(SwitchRefused, match="1 of the 2 videos"):
        cut_over(backend.pointer(), base, next_gen.name, switch_open)
    embed_and_sync(backend, encoder_b, next_gen, videos, [2, 3])  # video 3: only B has it
    state = cut_over(backend.pointer(), base, next_gen.name, switch_open)
    assert (state.active, state.previous) == (next_gen.name, BASE)

    poller.wait_for(lambda v: v == {1, 2, 3}, "model B's answers after the cut-over")
    health = client.get("/healthz").json()
    assert health["generation"]["serving"] == next_gen.name
    assert health["config"]["collection"] == next_gen.collection
    assert health["config"]["model_id"] == encoder_b.info.model_id != encoder_a.info.model_id

    rollback(backend.pointer())
    poller.wait_for(lambda v: v == {1, 2}, "model A's answers after the rollback")
    assert client.get("/healthz").json()["config"]["model_id"] == encoder_a.info.model_id


def test_a_generation_that_cannot_load_leaves_the_serving_one_answering(tmp_path: Path, tiny_encoder: FrameEncoder) -> None:
    """The pointer names a generation whose weights are gone: the service keeps answering from
    the one it has and says why in /healthz, instead of its holder thread dying."""
    videos, root = tmp_path / "videos", str(tmp_path / "checkpoints")
    write_video(videos, 1, frames=2, seed=1)
    backend = Backend("embedded", tmp_path)
    base = generation_for(tiny_encoder.config, PatchConfig(), BASE_COLLECTION, root, name=BASE, embed_dim=64)
    embed_and_sync(backend, tiny_encoder, base, videos, [1])
    broken = generation_for(EncoderConfig(model=TINY_MODEL, pretrained=str(tmp_path / "gone.safetensors")), PatchConfig(), BASE_COLLECTION, root, embed_dim=64)
    save_record(broken)
    with serving_app(backend, tiny_encoder, root) as client:
        wait_ready(client)
        deadline = time.monotonic() + 30
        cut_over(backend.pointer(), base, broken.name, lambda g: backend.open(g.collection, 64), force=True)
        while not (error := client.get("/healthz").json()["generation"]["error"]):
            assert time.monotonic() < deadline + 30, "the failed switch is not reported"
            time.sleep(0.1)
        assert broken.name in error
        response = client.post("/search/text", json={"query": "a frame", "top_k": 5})
        assert response.status_code == 200 and {h["video_id"] for h in response.json()["results"]} == {1}
        assert client.get("/healthz").json()["generation"]["serving"] == BASE
