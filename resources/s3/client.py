"""The boto3 S3 client, configured once for the pipeline and the service alike: region, custom
endpoint (MinIO/LocalStack/moto), timeouts and retries with backoff; credentials follow boto3's
standard chain (environment, profile, instance role)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

from resources.settings import SettingsError


@dataclass(frozen=True)
class S3Settings:
    region: str | None = None  # AWS_REGION (unset: boto3's default chain)
    endpoint_url: str | None = None  # S3_ENDPOINT_URL
    timeout_s: float = 30.0  # S3_TIMEOUT_SECONDS: connect and read timeout
    max_attempts: int = 3  # S3_MAX_ATTEMPTS: tries per request ("standard" mode: backoff + jitter;
    #   3 is botocore's own default: a hanging endpoint costs attempts x timeout_s per request)
    profile_name: str | None = None
    use_ssl: bool = True
    verify: bool | str | None = None
    aws_access_key_id: str | None = None  # explicit keys; usually left to the credential chain
    aws_secret_access_key: str | None = None
    aws_session_token: str | None = None


def s3_settings_from_env(env: Mapping[str, str] | None = None) -> S3Settings:
    """AWS_REGION, S3_ENDPOINT_URL, S3_TIMEOUT_SECONDS (30), S3_MAX_ATTEMPTS (3)."""
    env = os.environ if env is None else env
    try:
        timeout = float(env.get("S3_TIMEOUT_SECONDS") or 30)
        attempts = int(env.get("S3_MAX_ATTEMPTS") or 3)
    except ValueError as exc:
        raise SettingsError(f"S3_TIMEOUT_SECONDS / S3_MAX_ATTEMPTS must be numbers: {exc}") from None
    if timeout <= 0 or attempts < 1:
        raise SettingsError(f"S3_TIMEOUT_SECONDS must be > 0 and S3_MAX_ATTEMPTS >= 1, got {timeout}, {attempts}")
    return S3Settings(
        region=env.get("AWS_REGION") or None,
        endpoint_url=env.get("S3_ENDPOINT_URL") or None,
        timeout_s=timeout,
        max_attempts=attempts,
    )


def make_s3_client(settings: S3Settings, service: str = "s3") -> Any:
    """A boto3 client for ``settings``: S3, or another AWS service on the same account and endpoint
    (``"sqs"`` for the bucket's event queue; moto and LocalStack serve both on one endpoint)."""
    config = Config(
        connect_timeout=settings.timeout_s,
        read_timeout=settings.timeout_s,
        retries={"max_attempts": settings.max_attempts, "mode": "standard"},
    )
    session = boto3.session.Session(profile_name=settings.profile_name)
    return session.client(
        service,
        region_name=settings.region,
        endpoint_url=settings.endpoint_url,
        use_ssl=settings.use_ssl,
        verify=settings.verify,
        aws_access_key_id=settings.aws_access_key_id,
        aws_secret_access_key=settings.aws_secret_access_key,
        aws_session_token=settings.aws_session_token,
        config=config,
    )
