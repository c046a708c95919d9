"""GET /frames/{image_id}, thumbnail_url, "more like this" and moments, through the real app over
indexes the pipeline code built (local frame files, and S3 objects on moto's HTTP server)."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from resources.checkpoints.format import published_path
from resources.checkpoints.video_embedding import embed_video
from resources.embedding.encoder import FrameEncoder
from resources.embedding.patches import PatchConfig
from resources.frame_sources import S3FrameSource
from resources.vector_index import VectorIndex
from resources.vector_index.follower import sync_checkpoint
from resources.vector_index.schema import IndexSchema
from search_service.app import create_app
from search_service.config import ServiceSettings
from tests.conftest import make_frame
from tests.search_service.test_app import client, library, s3_env, to_png, wait_ready  # noqa: F401 - fixtures


def jpeg(response) -> Image.Image:  # noqa: ANN001 - an httpx response
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    return Image.open(io.BytesIO(response.content))


def test_a_frame_is_served_scaled_and_with_its_box(client: TestClient, library: dict) -> None:  # noqa: F811
    full = jpeg(client.get("/frames/1:0"))
    assert full.size == (448, 336)
    original = library["frames"][0].astype(int)
    assert np.abs(np.asarray(full, int) - original).mean() < 6  # the frame itself (JPEG noise only)
    small = jpeg(client.get("/frames/1:0", params={"size": 112}))
    assert small.size == (112, 84)
    boxed = np.asarray(jpeg(client.get("/frames/1:0", params={"box": "100,100,200,150"})), int)
    edge = boxed[100:250, 100]  # the box's left side: drawn in the accent colour (255, 196, 0)
    assert (np.abs(edge - [255, 196, 0]).max(axis=1) < 60).mean() > 0.9
    assert np.abs(boxed[180, 200] - original[180, 200]).max() < 40  # inside the box: untouched


@pytest.mark.parametrize("box", ["160,2,1,6703", "0,4488,701598,1", "5,5,1,1", "9999,9999,3,3"])
def test_any_box_the_schema_allows_is_drawn_on_a_scaled_frame(client: TestClient, box: str) -> None:  # noqa: F811
    """A box thinner than a pixel once scaled, or outside the frame, still renders (it was a 500:
    PIL refuses a rectangle whose far corner lies before its near one)."""
    assert jpeg(client.get("/frames/1:0", params={"box": box, "size": 16})).size == (16, 12)


def test_caching_etag_304_and_immutable_only_for_the_current_version(client: TestClient) -> None:  # noqa: F811
    result = client.post("/search/text", json={"query": "x", "top_k": 3}).json()["results"][0]
    url = result["thumbnail_url"]
    assert url.startswith(f"/frames/{result['image_id']}?size=320&v=")
    first = client.get(url)
    assert jpeg(first).size[0] == 320 and "immutable" in first.headers["cache-control"]
    again = client.get(url, headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    stale = client.get(f"/frames/{result['image_id']}", params={"size": 320, "v": "old"})
    assert stale.headers["cache-control"] == "private, no-cache" and stale.headers["etag"] == first.headers["etag"]
    assert client.get(url + "&box=0,0,10,10").headers["etag"] != first.headers["etag"]


@pytest.mark.parametrize(
    "path, status",
    [
        ("/frames/1:99", 404),  # well formed, not indexed
        ("/frames/9:0", 404),
        ("/frames/abc", 404),
        ("/frames/1:0:0", 404),
        ("/frames/-1:0", 404),
        ("/frames/99999999999999999999:0", 404),  # over int64
        ("/frames/file:%2F%2F%2Fetc%2Fpasswd", 404),
        ("/frames/..%2F..%2Fetc%2Fpasswd", 404),
        ("/frames/1:0?size=8", 422),
        ("/frames/1:0?size=99999", 422),
        ("/frames/1:0?box=1,2,3", 422),
        ("/frames/1:0?box=0,0,0,5", 422),
        ("/frames/1:0?box=a,b,c,d", 422),
    ],
)
def test_only_indexed_frames_are_read(client: TestClient, path: str, status: int) -> None:  # noqa: F811
    response = client.get(path)
    assert response.status_code == status, response.text
    assert not response.headers["content-type"].startswith("image/")


def test_url_parameters_cannot_choose_the_file(client: TestClient) -> None:  # noqa: F811
    """Nothing the client sends names a path: unknown parameters are ignored, the stored url is read."""
    plain = client.get("/frames/1:0", params={"size": 64})
    sneaky = client.get("/frames/1:0", params={"size": 64, "url": "file:///etc/passwd", "path": "/etc/passwd"})
    assert sneaky.content == plain.content


def test_a_frame_whose_file_is_gone_is_404_with_the_reason(library: dict, tiny_encoder: FrameEncoder, tmp_path: Path) -> None:  # noqa: F811
    frame = library["root"] / "videos" / "2" / "frame_1.png"
    kept = tmp_path / "kept.png"
    frame.rename(kept)
    try:
        app = create_app(ServiceSettings(checkpoint_dir=str(library["store"])), encoder=tiny_encoder,
                         open_index=lambda dim: VectorIndex.open(IndexSchema("frames_service", 64), path=library["root"] / "qdrant", lock_timeout_s=10))
        with TestClient(app) as client:  # noqa: F811
            wait_ready(client)
            response = client.get("/frames/2:1")
    finally:
        kept.rename(frame)
    assert response.status_code == 404 and "2:1" in response.json()["detail"] and "no such file" in response.json()["detail"]


def test_frames_from_s3_objects(s3_env, s3_client, tmp_path: Path, tiny_encoder: FrameEncoder, moto_s3_endpoint: str) -> None:  # noqa: F811
    bucket = f"frames-{uuid.uuid4().hex[:8]}"
    s3_client.create_bucket(Bucket=bucket)
    pixels = [make_frame(160, 120, seed=40 + f).permute(1, 2, 0).numpy() for f in range(2)]
    for f, frame in enumerate(pixels):
        s3_client.put_object(Bucket=bucket, Key=f"videos/7/frame_{f}.png", Body=to_png(frame))
    source = S3FrameSource(s3_client, f"s3://{bucket}/videos/", fps=1.0, endpoint_url=moto_s3_endpoint)
    schema, store = IndexSchema("frames_s3_page", 64), tmp_path / "checkpoints"
    with VectorIndex.open(schema, path=tmp_path / "qdrant") as index:
        embed_video(7, source.manifest(7), source, tiny_encoder, store, PatchConfig())
        sync_checkpoint(index, 7, published_path(store, 7))
    app = create_app(ServiceSettings(checkpoint_dir=str(store), frames_root=f"s3://{bucket}/videos/"), encoder=tiny_encoder,
                     open_index=lambda dim: VectorIndex.open(schema, path=tmp_path / "qdrant", lock_timeout_s=10))
    with TestClient(app) as client:  # noqa: F811
        wait_ready(client)
        image = jpeg(client.get("/frames/7:1"))
        assert image.size == (160, 120) and np.abs(np.asarray(image, int) - pixels[1].astype(int)).mean() < 6
        s3_client.delete_object(Bucket=bucket, Key="videos/7/frame_0.png")
        gone = client.get("/frames/7:0")
        assert gone.status_code == 404 and "NoSuchKey" in gone.json()["detail"]


def test_more_like_this_searches_by_an_indexed_frame(client: TestClient) -> None:  # noqa: F811
    body = client.post("/search/image", json={"image_id": "1:0", "top_k": 3}).json()
    ids = [r["image_id"] for r in body["results"]]
    assert body["query_type"] == "image" and len(ids) == 3 and "1:0" not in ids  # the frame itself is left out
    # The blown-up corner of 1:0 (2:0) is globally its nearest neighbour... with rerank the decoy stays close too.
    reranked = client.post("/search/image", json={"image_id": "1:0", "top_k": 3, "rerank": True}).json()
    assert reranked["rerank_enabled"] and all(r["best_patch_box"] for r in reranked["results"])
    missing = client.post("/search/image", json={"image_id": "1:77"})
    assert missing.status_code == 404 and "1:77" in missing.json()["detail"]
    both = client.post("/search/image", json={"image_id": "1:0", "s3_url": "s3://bucket/k.png"})
    assert both.status_code == 422 and "exactly one" in str(both.json()["detail"])


def test_hybrid_with_an_indexed_frame_equals_its_image_search_at_text_weight_0(client: TestClient) -> None:  # noqa: F811
    hybrid = client.post("/search/hybrid", json={"text_query": "x", "image_id": "2:0", "text_weight": 0.0, "image_weight": 1.0, "top_k": 4}).json()
    assert hybrid["query_type"] == "hybrid" and hybrid["results"][0]["image_id"] == "2:0"  # hybrid keeps the frame itself
    assert hybrid["results"][0]["score"] == pytest.approx(1.0, abs=1e-3)


def test_hybrid_upload_fuses_text_and_an_uploaded_image(client: TestClient, library: dict) -> None:  # noqa: F811
    files = {"file": ("corner.png", library["query"], "image/png")}
    hybrid = client.post("/search/hybrid/upload", files=files, data={"text_query": "a corner", "text_weight": "0", "image_weight": "1", "top_k": "3"}).json()
    image = client.post("/search/image/upload", files=files, data={"top_k": "3"}).json()
    assert hybrid["query_type"] == "hybrid"
    assert [r["image_id"] for r in hybrid["results"]] == [r["image_id"] for r in image["results"]]
    assert client.post("/search/hybrid/upload", files=files, data={"top_k": "3"}).status_code == 422  # text_query missing


def test_moments_on_every_search_endpoint(client: TestClient, library: dict) -> None:  # noqa: F811
    """Video 1 has frames every 250 ms, video 2 two frames 250 ms apart: a 300 ms gap merges each
    video's hits into one moment; 100 ms splits them; only the top_k frames are hits."""
    files = {"file": ("corner.png", library["query"], "image/png")}
    answers = [
        client.post("/search/text", json={"query": "x", "top_k": 8, "group_by": "moments", "moment_gap_ms": 300}),
        client.post("/search/image/upload", files=files, data={"top_k": "8", "group_by": "moments", "moment_gap_ms": "300"}),
        client.post("/search/hybrid/upload", files=files, data={"text_query": "x", "top_k": "8", "group_by": "moments", "moment_gap_ms": "300"}),
    ]
    for response in answers:
        body = response.json()
        assert response.status_code == 200 and body["total"] == 8  # results stay the top_k frames
        moments = body["moments"]
        assert sorted((m["video_id"], m["start_ms"], m["end_ms"], len(m["frames"])) for m in moments) == [(1, 0, 1250, 6), (2, 0, 250, 2)]
        for m in moments:
            assert m["best"]["image_id"] == m["best_image_id"] and m["score"] == max(f["score"] for f in m["frames"])
            assert m["best"]["thumbnail_url"].startswith(f"/frames/{m['best_image_id']}?")
    split = client.post("/search/text", json={"query": "x", "top_k": 8, "group_by": "moments", "moment_gap_ms": 100, "moments_per_video": 2}).json()
    assert len(split["moments"]) == 4 and all(len(m["frames"]) == 1 for m in split["moments"])
    few = client.post("/search/text", json={"query": "x", "top_k": 3, "group_by": "moments", "moment_gap_ms": 300}).json()
    hit_ids = {r["image_id"] for r in few["results"]}
    assert {f["image_id"] for m in few["moments"] for f in m["frames"]} == hit_ids  # the top_k and nothing else
    assert client.post("/search/text", json={"query": "x"}).json()["moments"] is None
    assert client.post("/search/text", json={"query": "x", "group_by": "scenes"}).status_code == 422


def write_mp4(path: Path, frames: list[np.ndarray], fps: int = 10) -> None:
    """A real h264 file of ``frames`` (H, W, 3) encoded with PyAV."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "12"}  # near-lossless: the served frame is compared with its source
        for pixels in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())


def test_frames_of_a_video_file_are_decoded_at_their_position(tmp_path: Path, tiny_encoder: FrameEncoder, monkeypatch: pytest.MonkeyPatch) -> None:
    """Video 5 is one mp4 (3 s at 10 fps) sampled at 1 fps: frames 0, 10, 20, each a different picture."""
    from resources.frame_sources import LocalFolderSource

    monkeypatch.setenv("VIDEO_SAMPLING", "fps:1")
    pictures = [make_frame(160, 120, seed=60 + f // 10).permute(1, 2, 0).numpy() for f in range(30)]
    (tmp_path / "videos" / "5").mkdir(parents=True)
    write_mp4(tmp_path / "videos" / "5" / "clip.mp4", pictures)
    source = LocalFolderSource(tmp_path / "videos", fps=1.0)
    refs = source.manifest(5)
    assert [r.frame_id for r in refs] == [0, 10, 20]
    schema, store = IndexSchema("frames_video_page", 64), tmp_path / "checkpoints"
    with VectorIndex.open(schema, path=tmp_path / "qdrant") as index:
        embed_video(5, refs, source, tiny_encoder, store, PatchConfig())
        sync_checkpoint(index, 5, published_path(store, 5))
    app = create_app(ServiceSettings(checkpoint_dir=str(store)), encoder=tiny_encoder,
                     open_index=lambda dim: VectorIndex.open(schema, path=tmp_path / "qdrant", lock_timeout_s=10))
    with TestClient(app) as client:  # noqa: F811
        wait_ready(client)
        for frame_id in (10, 20):
            image = np.asarray(jpeg(client.get(f"/frames/5:{frame_id}")), int)
            errors = [np.abs(image - p.astype(int)).mean() for p in (pictures[0], pictures[10], pictures[20])]
            assert int(np.argmin(errors)) == frame_id // 10 and min(errors) < 8, errors  # that frame, not another
        (tmp_path / "videos" / "5" / "clip.mp4").unlink()
        assert client.get("/frames/5:0").status_code == 404


def test_pages_are_open_and_frames_need_the_api_key(library: dict, tiny_encoder: FrameEncoder) -> None:  # noqa: F811
    from tests.search_service.test_app import make_client

    with make_client(library, tiny_encoder, api_key="s3cret") as client:  # noqa: F811
        wait_ready(client)
        for path, kind in (("/", "text/html"), ("/docs", "text/html"), ("/static/app.js", "javascript"), ("/static/app.css", "text/css")):
            response = client.get(path)
            assert response.status_code == 200 and kind in response.headers["content-type"], path
        assert client.get("/frames/1:0").status_code == 401
        assert client.get("/frames/1:0", headers={"X-API-Key": "s3cret"}).status_code == 200
        for sneaky in ("/static/../frames.py", "/static/%2e%2e/frames.py", "/static/..%2Fpage.py", "/static/x/../../app.py"):
            assert client.get(sneaky).status_code in (401, 404), sneaky  # never a file outside static/
