"""The pipeline on Celery workers, with every part real: shared by ``bench_celery`` and the CI test.

:func:`celery_stack` starts, on loopback: a throwaway PostgreSQL (Dagster's storage), a Redis
server from Debian's packages (the broker), moto's S3 server (frames and checkpoints), a DAGSTER_HOME
whose ``dagster.yaml`` is ``deploy/dagster-celery.yaml`` unchanged, ``dagster-webserver`` (GraphQL, as
the UI launches backfills), ``dagster-daemon`` (run queue, monitoring, retries, backfills), a
checkpoint follower holding the embedded index (the runs' syncs are deferred to it), and
``workers`` Celery worker processes, each in a working folder of its own.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ASSET_KEYS = ("frame_manifest", "frame_embeddings", "index_sync")
COLLECTION = "frames_celery"
BACKFILL_MUTATION = """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } ... on InvalidSubsetError { message } } }"""
BACKFILL_STATUS = """query($id: String!) { partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status } } }"""
LOCATIONS = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"


def redis_available() -> str | None:
    """None when a Redis server can be started here, else why not."""
    return None if shutil.which("redis-server") else "no redis-server (Debian: apt-get install redis-server)"


def graphql(base: str, query: str, variables: dict | None = None) -> dict:
    response = httpx.post(f"{base}/graphql", json={"query": query, "variables": variables or {}}, timeout=60)
    response.raise_for_status()
    body = response.json()
    if body.get("errors"):
        raise RuntimeError(body["errors"])
    return body["data"]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def png(seed: int, size: tuple[int, int] = (320, 180)) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = (rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


@dataclass
class Stack:
    """A running stack: where GraphQL answers, the workers, and the shared folders."""

    base: str
    work: Path
    env: dict[str, str]
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)
    logs: Path = Path()

    follower: subprocess.Popen | None = None

    def register(self, video_ids: list[int]) -> None:
        """Add the videos as partitions (the sensor's job; done directly to time runs alone)."""
        import dagster as dg

        from assets.videos import VIDEOS_PARTITIONS

        with dg.DagsterInstance.get() as instance:
            instance.add_dynamic_partitions(VIDEOS_PARTITIONS, [str(v) for v in video_ids])

    def indexed_frames(self, video_ids: list[int], dim: int = 64) -> dict[int, int]:
        """Frames per video in the index, once the follower has applied every checkpoint: the
        follower is stopped (it holds the shard) and the index opened here."""
        from resources.checkpoints.store import CheckpointStore
        from resources.vector_index import VectorIndex
        from resources.vector_index.schema import IndexSchema

        store = CheckpointStore(self.env["CHECKPOINT_DIR"])
        _wait(lambda: set(store.published()) >= set(video_ids), 120, "every checkpoint published")
        time.sleep(3)  # the follower polls every second
        if self.follower is not None and self.follower.poll() is None:
            os.killpg(self.follower.pid, signal.SIGTERM)
            try:
                self.follower.wait(30)
            except subprocess.TimeoutExpired:  # seen once in CI: still there 30 s after SIGTERM
                os.killpg(self.follower.pid, signal.SIGKILL)  # its shard lock goes with the process
                self.follower.wait(60)
        with VectorIndex.open(IndexSchema(COLLECTION, dim), path=self.env["QDRANT_PATH"], lock_timeout_s=30) as index:
            return {v: index.count(video_id=v) for v in video_ids}

    def launch_backfill(self, video_ids: list[int]) -> str:
        params = {"partitionNames": [str(v) for v in video_ids], "assetSelection": [{"path": [k]} for k in ASSET_KEYS], "fromFailure": False}
        launched = graphql(self.base, BACKFILL_MUTATION, {"params": params})["launchPartitionBackfill"]
        if launched["__typename"] != "LaunchBackfillSuccess":
            raise RuntimeError(f"backfill not launched: {launched}")
        return launched["backfillId"]

    def backfill_status(self, backfill_id: str) -> str:
        return graphql(self.base, BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]["status"]

    def busy_workers(self) -> set[str]:
        """The workers running a task now, by their short names (``w1``...)."""
        from pipelines.celery_workers import app

        active = app.control.inspect(timeout=2.0).active() or {}
        return {hostname.split("@")[0] for hostname, tasks in active.items() if tasks}

    def kill_worker(self, name: str) -> None:
        """SIGKILL the worker and its pool processes, as a machine that dies would."""
        os.killpg(self.workers[name].pid, signal.SIGKILL)
        self.workers[name].wait(30)

    def tail(self, name: str, chars: int = 3000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text()[-chars:] if path.exists() else ""


def _wait(check, timeout_s: float, what: str, alive=lambda: True) -> None:  # noqa: ANN001 - callables
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if check():
                return
        except (httpx.HTTPError, RuntimeError, KeyError, TypeError):
            pass
        if not alive():
            raise RuntimeError(f"a process exited while waiting for {what}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout_s} s")
        time.sleep(0.5)


@contextmanager
def celery_stack(videos: int, frames_per_video: int, workers: int, tiny_weights: Path) -> Iterator[Stack]:
    """The whole stack with ``videos`` videos of ``frames_per_video`` frames in S3 (see the module)."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per S3 request otherwise
    sys.path.insert(0, str(REPO))
    from tests.postgres.pg import running_postgres

    work = Path(tempfile.mkdtemp(prefix="framesearch-celery-"))
    logs = work / "logs"
    logs.mkdir()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.create_bucket(Bucket="celery")
    for video in range(1, videos + 1):
        for frame in range(frames_per_video):
            s3.put_object(Bucket="celery", Key=f"videos/{video}/frame_{frame:03d}.png", Body=png(video * 1000 + frame))
    redis_port = free_port()
    processes: list[subprocess.Popen] = []

    def start(name: str, command: list[str], cwd: Path = REPO, env: dict[str, str] | None = None) -> subprocess.Popen:
        process = subprocess.Popen(command, cwd=cwd, env=env or os.environ.copy(), stdout=open(logs / f"{name}.log", "w"),  # noqa: SIM115
                                   stderr=subprocess.STDOUT, start_new_session=True)
        processes.append(process)
        return process

    saved = os.environ.copy()
    try:
        with running_postgres() as pg:
            home = work / "dagster_home"
            home.mkdir()
            shutil.copyfile(REPO / "deploy" / "dagster-celery.yaml", home / "dagster.yaml")
            env = {
                **pg.env(), "DAGSTER_HOME": str(home), "FRAMESEARCH_CELERY_BROKER": f"redis://127.0.0.1:{redis_port}/0",
                "FRAMESEARCH_MAX_CONCURRENT_RUNS": str(workers),
                # Several runs per backfill, so both workers take some (and one can be killed mid-run).
                "VIDEOS_PER_RUN": "8",
                "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
                "S3_ENDPOINT_URL": endpoint, "FRAMES_ROOT": "s3://celery/videos/", "CHECKPOINT_DIR": "s3://celery/checkpoints",
                "QDRANT_PATH": str(work / "qdrant"), "QDRANT_COLLECTION": COLLECTION,
                "OPENCLIP_MODEL": "framesearch-tiny", "OPENCLIP_PRETRAINED": str(tiny_weights), "OPENCLIP_PRECISION": "fp32",
                "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9", "PYTHONPATH": str(REPO),
            }
            os.environ.update(env)
            start("redis", ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            subprocess.run([str(BIN / "dagster"), "instance", "migrate"], cwd=REPO, env=os.environ.copy(), check=True,
                           stdout=open(logs / "migrate.log", "w"), stderr=subprocess.STDOUT)  # noqa: SIM115
            web_port = free_port()
            start("webserver", [str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(web_port)])
            start("daemon", [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"])
            follower = start("follower", [sys.executable, "-m", "resources.vector_index.follower", "--checkpoints", env["CHECKPOINT_DIR"], "--dim", "64", "--interval", "1"])
            stack = Stack(f"http://127.0.0.1:{web_port}", work, env, logs=logs, follower=follower)
            for n in range(1, workers + 1):
                folder = work / f"worker{n}"
                folder.mkdir()
                stack.workers[f"w{n}"] = start(f"worker{n}", [
                    str(BIN / "celery"), "-A", "pipelines.celery_workers", "worker", "-Q", "dagster", "-c", "1",
                    "-n", f"w{n}@%h", "--prefetch-multiplier=1", "--without-gossip", "--without-mingle",
                ], cwd=folder)
            alive = lambda: all(p.poll() is None for p in processes if p not in stack.workers.values() and p is not follower)  # noqa: E731
            _wait(lambda: httpx.get(f"{stack.base}/server_info", timeout=5).status_code == 200, 300, "the webserver", alive)
            _wait(lambda: any(e["loadStatus"] == "LOADED" for e in graphql(stack.base, LOCATIONS)["workspaceOrError"]["locationEntries"]),
                  300, "the code location", alive)
            yield stack
    finally:
        for process in processes:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for process in processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        os.environ.clear()
        os.environ.update(saved)
        moto.stop()
        if not os.environ.get("FRAMESEARCH_KEEP_CELERY_STACK"):
            shutil.rmtree(work, ignore_errors=True)
