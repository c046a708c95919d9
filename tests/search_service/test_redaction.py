"""Issue 21: the pipeline's failure text reaches clients through /jobs and the ingest routes; the
server's paths and internal endpoints must not."""

from __future__ import annotations

from search_service.dagster_api import RunInfo
from search_service.ingest import FRAMES_TAG, JOB_TAG, PARTITION_TAG, job_view
from search_service.redaction import Redactor

REDACT = Redactor(private_roots=["var/checkpoints", "/srv/framesearch/checkpoints"], endpoints=["http://10.0.3.4:3000", "http://qdrant:6333/"])


def test_server_paths_and_internal_endpoints_are_redacted() -> None:
    cases = {
        "video 12 not found: no folder /srv/videos/12": "video 12 not found: no folder <server path>",
        "cannot read frame file:///srv/videos/12/f.png: no such file /srv/videos/12/f.png": "cannot read frame <server path>: no such file <server path>",
        "no frame manifest at var/checkpoints/manifests/video_12.json; materialize frame_manifest first": "no frame manifest at <server path>; materialize frame_manifest first",
        "[Errno 13] Permission denied: '/srv/framesearch/checkpoints/_work/video_12/chunk_00000.parquet'": "[Errno 13] Permission denied: '<server path>'",
        'Read timeout on endpoint URL: "http://qdrant:6333/collections/frames/points"': 'Read timeout on endpoint URL: "<internal endpoint>"',
        "Dagster at http://10.0.3.4:3000/graphql refused": "Dagster at <internal endpoint> refused",
        "cannot import /usr/lib/python3/x.py": "cannot import <server path>",
    }
    for text, expected in cases.items():
        assert REDACT(text) == expected, text


def test_what_the_client_sent_stays() -> None:
    for text in (
        "cannot read frame s3://bucket/videos/12/frame_1.png: S3 error NoSuchKey: The specified key does not exist.",
        "cannot read frame https://bucket.s3.amazonaws.com/a/b.png?<query redacted>: HTTP 403",
        'S3 request failed: Read timeout on endpoint URL: "http://minio.example:9000/bucket/12/f.png"',  # the S3 endpoint clients use
        "video 12 (embed): no usable frame among 3 (2 corrupt, 1 over 20,000,000 pixels); and/or retry",
    ):
        assert REDACT(text) == text


def test_job_views_show_redacted_failures() -> None:
    tags = {PARTITION_TAG: "12", JOB_TAG: "j1", FRAMES_TAG: "1-2"}
    failed = RunInfo("r1", "FAILURE", tags, 1.0, 2.0, {}, failure="video_assets: video 12 (manifest): cannot list video folder /srv/videos/12: [Errno 5] I/O error")
    skipped = RunInfo("r2", "SUCCESS", tags, 1.0, 2.0, {"frame_embeddings": {"skipped": {"1": "no such file /srv/videos/12/frame_1.png"}}})
    view = job_view("j1", [failed], set(), now=3.0, redact=REDACT)
    assert "/srv" not in str(view) and view["error"] == "run r1 for video 12: failure: video_assets: video 12 (manifest): cannot list video folder <server path>: [Errno 5] I/O error"
    view = job_view("j1", [skipped], set(), now=3.0, redact=REDACT)
    assert view["results"][0]["error"] == "no such file <server path>"
