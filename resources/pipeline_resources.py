"""Dagster resources of the video pipeline: the frame source (S3 or a local folder), the
checkpoint store and the vector index. Each owns its client; unset fields come from the
environment, so the pipeline and the search service configure themselves the same way.
"""

import os
from pathlib import Path

import dagster as dg
from dagster_aws.s3 import S3Resource

from resources.checkpoint_store import CheckpointStore
from resources.encoder_resource import EncoderResource
from resources.frame_sources import FrameSource, LocalFolderSource, S3FrameSource
from resources.index_follower import sync_or_defer
from resources.index_schema import IndexSchema
from resources.s3_client import S3Settings, make_s3_client, s3_settings_from_env
from resources.settings import IndexSettings, encoder_config_from_env, index_settings_from_env
from resources.vector_index import SyncResult, VectorIndex
from resources.video_embedding import DEFAULT_CHUNK_FRAMES


class FramesS3Resource(S3Resource):
    """dagster-aws's S3 resource, plus request timeouts and the standard retry mode (exponential
    backoff with jitter, ``max_attempts`` tries); the client is built by ``make_s3_client``."""

    timeout_seconds: float = 30.0

    def settings(self) -> S3Settings:
        return S3Settings(
            region=self.region_name, endpoint_url=self.endpoint_url, timeout_s=self.timeout_seconds,
            max_attempts=self.max_attempts, profile_name=self.profile_name, use_ssl=self.use_ssl,
            verify=self.verify, aws_access_key_id=self.aws_access_key_id,
            aws_secret_access_key=self.aws_secret_access_key, aws_session_token=self.aws_session_token,
        )

    def get_client(self):  # noqa: ANN201 - a boto3 S3 client
        return make_s3_client(self.settings())


def s3_resource_from_env() -> FramesS3Resource:
    """AWS_REGION, S3_ENDPOINT_URL, S3_TIMEOUT_SECONDS (30), S3_MAX_ATTEMPTS (5)."""
    settings = s3_settings_from_env()
    return FramesS3Resource(
        region_name=settings.region, endpoint_url=settings.endpoint_url,
        timeout_seconds=settings.timeout_s, max_attempts=settings.max_attempts,
    )


class FrameSourceResource(dg.ConfigurableResource):
    """Where videos come from: ``root`` is a local folder or ``s3://bucket/prefix/``."""

    root: str
    fps: float = 1.0  # frame rate for timestamps of videos without a manifest
    max_frame_bytes: int = 64 * 1024 * 1024
    # Waits (s) before each retry of a step that failed because the source failed in a way that
    # may pass (endpoint down, timeouts, 5xx, throttling), after the client's own retries. The
    # default rides out an outage of about two minutes inside the run; [] fails at once.
    outage_retry_waits_s: list[float] = [10.0, 30.0, 70.0]
    s3: FramesS3Resource

    def source(self) -> FrameSource:
        if self.root.startswith("s3://"):
            return S3FrameSource(
                self.s3.get_client(), self.root, fps=self.fps, max_bytes=self.max_frame_bytes,
                endpoint_url=self.s3.endpoint_url, http_timeout_s=self.s3.timeout_seconds,
            )
        return LocalFolderSource(Path(self.root), fps=self.fps, max_bytes=self.max_frame_bytes)


class CheckpointStoreResource(dg.ConfigurableResource):
    """The folder of published checkpoints (``video_<id>.parquet``), manifests and work chunks.

    ``root`` may be ``s3://bucket/prefix``: then use :meth:`store` (``path`` is for local folders).
    """

    root: str = "var/checkpoints"
    chunk_frames: int = DEFAULT_CHUNK_FRAMES  # frames per resumable chunk

    def store(self) -> CheckpointStore:
        """The store at ``root``: a local folder, or S3 through S3_ENDPOINT_URL and the AWS chain."""
        return CheckpointStore(self.root)

    @property
    def path(self) -> Path:
        return Path(self.root)

    def manifest_path(self, video_id: int) -> Path:
        return self.path / "manifests" / f"video_{video_id}.json"


class IndexResource(dg.ConfigurableResource):
    """The vector index; unset fields come from QDRANT_URL, QDRANT_PATH, QDRANT_API_KEY,
    QDRANT_COLLECTION. The embedded shard is opened per use and released at once, so a search
    service can hold it between runs (then the sync is deferred to its follower)."""

    url: str | None = None
    path: str | None = None
    api_key: str | None = None
    collection: str | None = None

    def settings(self) -> IndexSettings:
        env = index_settings_from_env()
        return IndexSettings(
            url=self.url if self.url is not None else env.url,
            path=self.path or env.path,
            api_key=self.api_key or env.api_key,
            collection=self.collection or env.collection,
            rerank_pool=env.rerank_pool,
            patch_search_ef=env.patch_search_ef,
        )

    def open(self, dim: int) -> VectorIndex:
        settings = self.settings()
        return VectorIndex.open(
            IndexSchema(settings.collection, dim), url=settings.url, path=settings.path, api_key=settings.api_key
        )

    def sync_or_defer(self, dim: int, video_id: int, checkpoint: Path | CheckpointStore) -> SyncResult | None:
        return sync_or_defer(lambda: self.open(dim), video_id, checkpoint)


def _secret(name: str) -> dg.EnvVar | None:
    """A secret as ``dg.EnvVar``: read by the run, never shown in the UI (None when unset)."""
    return dg.EnvVar(name) if os.environ.get(name) else None


def pipeline_resources_from_env() -> dict[str, dg.ConfigurableResource]:
    """The code location's resources, every setting filled in from the environment when it loads
    (validated, with the seed's defaults), so the UI's resource pages show the values in use;
    secrets (QDRANT_API_KEY) stay ``dg.EnvVar`` references.

    FRAMES_ROOT (default the sample library ``var/samples/videos``), FRAMES_FPS, CHECKPOINT_DIR,
    CHECKPOINT_CHUNK_FRAMES, OPENCLIP_* / BATCH_SIZE / GLOBAL_RESIZE_MODE / PATCH_CROP_METHOD,
    OFFLINE_MODEL_DIR, QDRANT_URL / QDRANT_PATH / QDRANT_COLLECTION / QDRANT_API_KEY, AWS_REGION /
    S3_ENDPOINT_URL / S3_TIMEOUT_SECONDS / S3_MAX_ATTEMPTS.
    """
    encoder, index = encoder_config_from_env(), index_settings_from_env()
    return {
        # Machines without the configured weights run the offline model (models/framesearch-world,
        # trained on the synthetic shapes world; OFFLINE_MODEL_DIR) and every run says so.
        "encoder": EncoderResource(
            model=encoder.model, pretrained=encoder.pretrained, batch_size=encoder.batch_size, device=encoder.device,
            precision=encoder.precision, global_resize=encoder.global_resize, crop_method=encoder.crop_method,
            offline_fallback=True, offline_model_dir=os.environ.get("OFFLINE_MODEL_DIR") or None,
        ),
        "frames": FrameSourceResource(
            root=os.environ.get("FRAMES_ROOT") or "var/samples/videos",
            fps=float(os.environ.get("FRAMES_FPS") or 1.0),
            s3=s3_resource_from_env(),
        ),
        "store": CheckpointStoreResource(
            root=os.environ.get("CHECKPOINT_DIR") or "var/checkpoints",
            chunk_frames=int(os.environ.get("CHECKPOINT_CHUNK_FRAMES") or DEFAULT_CHUNK_FRAMES),
        ),
        "index": IndexResource(url=index.url, path=index.path, collection=index.collection, api_key=_secret("QDRANT_API_KEY")),
    }
