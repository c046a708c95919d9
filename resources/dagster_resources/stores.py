"""Dagster resources of the video pipeline: the frame source (S3 or a local folder), the
checkpoint store and the vector index. Each owns its client; unset fields come from the
environment, so the pipeline and the search service configure themselves the same way.
"""

from pathlib import Path

import dagster as dg
from dagster_aws.s3 import S3Resource

from resources.change_feeds import ChangeFeed, FolderChangeFeed, SqsChangeFeed
from resources.checkpoints.store import CheckpointStore
from resources.checkpoints.video_job import DEFAULT_CHUNK_FRAMES
from resources.frame_sources import FrameSource, LocalFolderSource, S3FrameSource
from resources.s3.client import S3Settings, make_s3_client, s3_settings_from_env
from resources.settings import IndexSettings, index_settings_from_env
from resources.vector_index import VectorIndex
from resources.vector_index.follower import SyncSession
from resources.vector_index.schema import IndexSchema


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
    """AWS_REGION, S3_ENDPOINT_URL, S3_TIMEOUT_SECONDS (30), S3_MAX_ATTEMPTS (3)."""
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


class FrameEventsResource(dg.ConfigurableResource):
    """What tells the pipeline which videos changed without listing the library: for an S3 source,
    the SQS queue its bucket's event notifications go to (``s3:ObjectCreated:*`` and
    ``s3:ObjectRemoved:*``; ``queue_url`` None: no feed, the full listing is the only trigger); for
    a local folder, its directories' modification times (no setting)."""

    queue_url: str | None = None
    s3: FramesS3Resource

    def feed(self, source: FrameSource, since_ns: int | None = None) -> ChangeFeed | None:
        """The change feed of ``source`` (``since_ns``: where a folder feed's last look ended);
        None for an S3 source without a queue."""
        if isinstance(source, LocalFolderSource):
            return FolderChangeFeed(source.root, since_ns)
        if not self.queue_url or not isinstance(source, S3FrameSource):
            return None
        return SqsChangeFeed(make_s3_client(self.s3.settings(), "sqs"), self.queue_url, source.bucket, source.prefix)


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


EMBEDDED_HOLD_S = 30.0  # the longest a run keeps the embedded shard before letting others take it


class IndexResource(dg.ConfigurableResource):
    """The vector index; unset fields come from QDRANT_URL, QDRANT_PATH, QDRANT_API_KEY,
    QDRANT_COLLECTION. A run syncs its videos through one :meth:`session`: a Qdrant server is
    opened once for the run; the embedded shard is kept at most EMBEDDED_HOLD_S at a time, so a
    search service (or another run) takes it within that (then the sync is deferred to its follower)."""

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
            companion_dedup=env.companion_dedup,
            memory=env.memory,
        )

    def open(self, dim: int) -> VectorIndex:
        settings = self.settings()
        schema = IndexSchema(settings.collection, dim)
        return VectorIndex.open(schema, url=settings.url, path=settings.path, api_key=settings.api_key, layout=settings.layout(schema))

    def session(self, dim: int) -> SyncSession:
        """A :class:`SyncSession` for a run's videos (close it when the run ends)."""
        return SyncSession(lambda: self.open(dim), hold_s=None if self.settings().url else EMBEDDED_HOLD_S)
