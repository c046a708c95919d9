"""Settings of the search service, from the environment (the encoder, patch and index settings
are the pipeline's own: see ``resources.settings``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from resources.s3.urls import S3Prefix, S3UrlError, parse_prefixes
from resources.settings import SettingsError


@dataclass(frozen=True)
class ServiceSettings:
    api_key: str | None = None  # SEARCH_API_KEY: when set, requests must send it as X-API-Key
    max_upload_bytes: int = 20 * 1024 * 1024  # MAX_UPLOAD_BYTES: /search/image/upload body limit
    max_download_bytes: int = 20 * 1024 * 1024  # MAX_DOWNLOAD_BYTES: query images fetched by URL
    checkpoint_dir: str = "var/checkpoints"  # CHECKPOINT_DIR: followed by an embedded index owner
    follow_interval_s: float = 2.0  # INDEX_FOLLOW_INTERVAL_S: seconds between checkpoint polls
    offline_fallback: bool = True  # SEARCH_OFFLINE_FALLBACK: the offline (synthetic-world) model if weights are missing
    offline_model_dir: str | None = None  # OFFLINE_MODEL_DIR: its folder; None = <repo>/models/framesearch-world
    dagster_url: str | None = None  # DAGSTER_URL: the dagster-webserver ingestion runs through
    ingest_wait_s: float = 300.0  # INGEST_WAIT_S: how long /ingest/frame(s) wait for the runs
    frames_root: str = "var/samples/videos"  # FRAMES_ROOT: where ingested frames are recorded
    frames_fps: float = 1.0  # FRAMES_FPS
    # ALLOWED_S3_PREFIXES: comma-separated s3://bucket[/prefix/] that query images and ingested frames
    # may come from. None (unset): the bucket of an s3:// FRAMES_ROOT, else no S3 URL at all.
    allowed_s3_prefixes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        self.allowed_locations()  # a bad prefix fails at start-up, not on the first request

    def allowed_locations(self) -> tuple[S3Prefix, ...]:
        """The S3 buckets and prefixes the service reads from (query images, ingested frames).

        By default, the frames bucket: the service exists to search (and ingest into) it, and
        nothing else its credentials reach should be readable through it.
        """
        try:
            if self.allowed_s3_prefixes is not None:
                return tuple(S3Prefix.parse(text) for text in self.allowed_s3_prefixes)
            if self.frames_root.lower().startswith("s3://"):
                return (S3Prefix(S3Prefix.parse(self.frames_root).bucket),)
        except S3UrlError as exc:
            raise SettingsError(f"search service setting ALLOWED_S3_PREFIXES/FRAMES_ROOT: {exc}") from None
        return ()


def _prefixes(text: str | None) -> tuple[str, ...] | None:
    if text is None or not text.strip():
        return None
    try:
        return tuple(prefix.uri for prefix in parse_prefixes(text))
    except S3UrlError as exc:
        raise SettingsError(f"search service setting ALLOWED_S3_PREFIXES: {exc}") from None


def service_settings_from_env(env: Mapping[str, str] | None = None) -> ServiceSettings:
    """The service's settings from ``env`` (default: the process environment); :class:`SettingsError`
    names the variable that is wrong."""
    env = os.environ if env is None else env
    try:
        return ServiceSettings(
            api_key=env.get("SEARCH_API_KEY") or None,
            max_upload_bytes=int(env.get("MAX_UPLOAD_BYTES") or ServiceSettings.max_upload_bytes),
            max_download_bytes=int(env.get("MAX_DOWNLOAD_BYTES") or ServiceSettings.max_download_bytes),
            checkpoint_dir=env.get("CHECKPOINT_DIR") or ServiceSettings.checkpoint_dir,
            follow_interval_s=float(env.get("INDEX_FOLLOW_INTERVAL_S") or ServiceSettings.follow_interval_s),
            offline_fallback=(env.get("SEARCH_OFFLINE_FALLBACK") or "true").lower() in ("1", "true", "yes"),
            offline_model_dir=env.get("OFFLINE_MODEL_DIR") or None,
            dagster_url=env.get("DAGSTER_URL") or None,
            ingest_wait_s=float(env.get("INGEST_WAIT_S") or ServiceSettings.ingest_wait_s),
            frames_root=env.get("FRAMES_ROOT") or ServiceSettings.frames_root,
            frames_fps=float(env.get("FRAMES_FPS") or ServiceSettings.frames_fps),
            allowed_s3_prefixes=_prefixes(env.get("ALLOWED_S3_PREFIXES")),
        )
    except ValueError as exc:
        raise SettingsError(f"search service setting: {exc}") from None
