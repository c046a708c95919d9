"""Frame sources on real files and on moto's S3 server over HTTP: listings, signatures, manifests,
pagination past 1,000 keys, pre-signed reads and the errors that name what went wrong."""

from __future__ import annotations

import json
import os
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config

from resources.frame_sources import (
    FrameReadError,
    FrameRef,
    FrameSourceError,
    LocalFolderSource,
    S3FrameSource,
    VideoNotFound,
)


def write(path: Path, data: bytes | str = b"img") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


@pytest.fixture
def library(tmp_path: Path) -> Path:
    """Video 1 by its files, video 2 by a CSV manifest, video 3 by a JSONL manifest, and distractors."""
    root = tmp_path / "videos"
    write(root / "1" / "frame_000060.JPG", b"sixty")
    write(root / "1" / "frame_000000.jpg", b"zero")
    write(root / "1" / "frame_000030.webp", b"thirty")
    write(root / "1" / "cover.png")  # no digits: skipped
    write(root / "1" / "notes_1.txt")  # not an image
    write(root / "1" / "._frame_000030.webp")  # macOS resource fork: skipped
    write(root / "1" / "thumbs" / "frame_000001.jpg")  # sub-folder: not a frame of the listing
    write(root / "2" / "f_1.jpg", b"one")
    write(root / "2" / "f_2.jpg", b"two")
    write(root / "2" / "frame_000099.jpg")  # a manifest wins over the files
    write(root / "archive" / "frame_1.jpg")  # not an integer: not a video
    write(root / "7.bak" / "frame_1.jpg")
    write(root / "4", b"a file named like a video")
    return root


def test_local_listing_and_frames(library: Path) -> None:
    elsewhere = write(library.parent / "elsewhere" / "frame 5.png", b"five")
    write(library / "2" / "manifest.csv", f"frame_id,timestamp_ms,url\n2,,f_2.jpg\n1,40,f_1.jpg\n5,200,{elsewhere.as_uri()}\n")
    source = LocalFolderSource(library, fps=30)
    assert [v.video_id for v in source.list_videos()] == [1, 2]
    assert source.video_ids() == [1, 2]
    assert all(len(v.signature) == 16 for v in source.list_videos())
    assert str(library) in source.describe()

    frames = source.manifest(1)
    assert [(f.frame_id, f.timestamp_ms) for f in frames] == [(0, 0), (30, 1000), (60, 2000)]
    assert frames[2].url == (library / "1" / "frame_000060.JPG").resolve().as_uri()
    assert [source.read(f.url) for f in frames] == [b"zero", b"thirty", b"sixty"]

    frames = source.manifest(2)
    assert frames == [
        FrameRef(1, 40, (library / "2" / "f_1.jpg").resolve().as_uri()),
        FrameRef(2, 67, (library / "2" / "f_2.jpg").resolve().as_uri()),  # round(2 * 1000 / 30)
        FrameRef(5, 200, elsewhere.as_uri()),
    ]
    assert [source.read(f.url) for f in frames] == [b"one", b"two", b"five"]


def test_local_jsonl_manifest(library: Path) -> None:
    rows = [
        {"frame_id": 3, "url": "sub/f_3.jpg"},  # no timestamp: from fps
        {"frame_id": 1, "timestamp_ms": 5, "url": "f 1.jpg"},  # a literal file name, spaces and all
        {"frame_id": "2", "timestamp_ms": 1500.0, "url": "f_2.jpg", "note": "extra keys are ignored"},
    ]
    write(library / "3" / "manifest.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    write(library / "3" / "sub" / "f_3.jpg", b"three")
    write(library / "3" / "f 1.jpg", b"one")
    source = LocalFolderSource(library, fps=2)
    frames = source.manifest(3)
    assert [(f.frame_id, f.timestamp_ms) for f in frames] == [(1, 5), (2, 1500), (3, 1500)]
    assert source.read(frames[0].url) == b"one"
    assert source.read(frames[2].url) == b"three"


def test_local_zero_padded_and_duplicate_video_folders(tmp_path: Path) -> None:
    write(tmp_path / "0007" / "frame_1.jpg")
    source = LocalFolderSource(tmp_path)
    assert source.video_ids() == [7]
    assert [f.frame_id for f in source.manifest(7)] == [1]
    write(tmp_path / "7" / "frame_1.jpg")
    with pytest.raises(FrameSourceError, match="video 7 has two folders"):
        source.list_videos()


def test_local_missing_video_and_root(tmp_path: Path) -> None:
    write(tmp_path / "1" / "frame_1.jpg")
    with pytest.raises(VideoNotFound, match="video 9 not found") as info:
        LocalFolderSource(tmp_path).manifest(9)
    assert isinstance(info.value, FrameSourceError)
    with pytest.raises(FrameSourceError, match="cannot list the video root"):
        LocalFolderSource(tmp_path / "nope").list_videos()


def test_local_duplicate_frame_numbers_in_listing(tmp_path: Path) -> None:
    write(tmp_path / "1" / "frame_1.jpg")
    write(tmp_path / "1" / "frame_001.png")
    with pytest.raises(FrameSourceError, match="frame 1 is named twice"):
        LocalFolderSource(tmp_path).manifest(1)


def test_local_signature(library: Path) -> None:
    source = LocalFolderSource(library)

    def signatures() -> dict[int, str]:
        return {v.video_id: v.signature for v in source.list_videos()}

    first = signatures()
    assert signatures() == first  # stable when nothing changes
    assert LocalFolderSource(library, fps=25).list_videos() == source.list_videos()

    write(library / "1" / "frame_000090.jpg")
    added = signatures()
    assert added[1] != first[1] and added[2] == first[2]

    frame = library / "1" / "frame_000000.jpg"
    write(frame, b"ZERO")  # same size, new mtime
    stat = frame.stat()
    os.utime(frame, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    touched = signatures()
    assert touched[1] != added[1]

    write(frame, b"a longer zero")
    os.utime(frame, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # same mtime, new size
    resized = signatures()
    assert resized[1] != touched[1]

    (library / "1" / "frame_000090.jpg").unlink()
    removed = signatures()
    assert removed[1] != resized[1] and removed[2] == first[2]

    write(library / "2" / "manifest.csv", "frame_id,url\n1,f_1.jpg\n")
    assert signatures()[2] != first[2]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("manifest.csv", "frame_id,timestamp_ms,url\n1,0,f_1.jpg\nx,0,f_2.jpg\n", r"line 3: frame_id must be a non-negative integer, got 'x'"),
        ("manifest.csv", "frame_id,timestamp_ms,url\n1,0,f_1.jpg\n1,40,f_2.jpg\n", r"line 3: duplicate frame_id 1 \(first on line 2\)"),
        ("manifest.csv", "frame_id,timestamp_ms,url\n1,0,f_1.jpg\n\n2,40,\n", r"line 4: missing url for frame 2"),
        ("manifest.csv", "frame_id,timestamp_ms,url\n,0,f_1.jpg\n", r"line 2: missing frame_id"),
        ("manifest.csv", "frame_id,timestamp_ms,url\n-1,0,f_1.jpg\n", r"line 2: frame_id must be a non-negative"),
        ("manifest.csv", "frame_id,timestamp_ms,url\n1,soon,f_1.jpg\n", r"line 2: timestamp_ms must be"),
        ("manifest.csv", "frame_id,timestamp_ms,url\n1,0\n", r"line 2: expected 3 columns, got 2"),
        ("manifest.csv", "frame,time,path\n1,0,f_1.jpg\n", r"line 1: the header must name frame_id and url"),
        ("manifest.csv", "", r"line 1: the header must name frame_id and url"),
        ("manifest.csv", "frame_id,url\n1,../../etc/passwd\n", r"line 2: .*must stay inside the video folder"),
        ("manifest.csv", "frame_id,url\n1,/etc/passwd\n", r"line 2: .*must stay inside the video folder"),
        ("manifest.csv", "frame_id,url\n1,s3://frames/k.jpg\n", r"line 2: .*need an S3 frame source"),
        ("manifest.csv", "frame_id,url\n1,http://169.254.169.254/latest\n", r"line 2: .*expected a path relative"),
        ("manifest.csv", "frame_id,url\n1,https://frames.s3.amazonaws.com/k.jpg\n", r"line 2: .*pre-signed"),
        ("manifest.csv", "frame_id,url\n1,file://otherhost/k.jpg\n", r"line 2: .*only local files"),
        ("manifest.jsonl", '{"frame_id": 1, "url": "f_1.jpg"}\n{"frame_id": 1.5, "url": "f_2.jpg"}\n', r"line 2: frame_id must be"),
        ("manifest.jsonl", '{"frame_id": 1, "url": "f_1.jpg"}\n\n{"frame_id": 2, "url": "f_2.jpg"\n', r"line 3: not JSON"),
        ("manifest.jsonl", '[1, "f_1.jpg"]\n', r"line 1: expected a JSON object, got list"),
        ("manifest.jsonl", '{"frame_id": true, "url": "f_1.jpg"}\n', r"line 1: frame_id must be"),
        ("manifest.jsonl", '{"frame_id": 1, "url": 7}\n', r"line 1: missing url"),
        ("manifest.jsonl", '{"frame_id": 1, "url": "f_1.jpg"}\n{"frame_id": 1, "url": "f_2.jpg"}\n', r"line 2: duplicate frame_id 1"),
    ],
)
def test_bad_manifests(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = write(tmp_path / "5" / name, text)
    with pytest.raises(FrameSourceError, match=message) as info:
        LocalFolderSource(tmp_path).manifest(5)
    assert str(path) in str(info.value)


def test_manifest_not_utf8_and_two_manifests(tmp_path: Path) -> None:
    write(tmp_path / "5" / "manifest.csv", b"frame_id,url\n1,\xff\xfe.jpg\n")
    with pytest.raises(FrameSourceError, match="not UTF-8"):
        LocalFolderSource(tmp_path).manifest(5)
    write(tmp_path / "5" / "manifest.jsonl", "")
    with pytest.raises(FrameSourceError, match="both manifest.csv and manifest.jsonl"):
        LocalFolderSource(tmp_path).manifest(5)


def test_local_reads(tmp_path: Path) -> None:
    frame = write(tmp_path / "1" / "frame_1.jpg", b"x" * 100)
    source = LocalFolderSource(tmp_path, max_bytes=100)
    assert source.read(frame.as_uri()) == b"x" * 100

    with pytest.raises(FrameReadError) as info:
        source.read((tmp_path / "1" / "frame_2.jpg").as_uri())
    assert info.value.missing and "no such file" in info.value.reason

    write(frame, b"x" * 101)
    with pytest.raises(FrameReadError, match="101 bytes, over the limit of 100") as info:
        source.read(frame.as_uri())
    assert not info.value.missing

    with pytest.raises(FrameReadError, match="is a folder") as info:
        source.read((tmp_path / "1").as_uri())
    assert not info.value.missing

    for url in ("http://169.254.169.254/latest", "s3://frames/k.jpg", "/etc/hostname", "https://frames.s3.amazonaws.com/k.jpg"):
        with pytest.raises(FrameReadError, match="reads file:// urls"):
            source.read(url)


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="fps must be a positive number, got 0"):
        LocalFolderSource(Path("."), fps=0)
    with pytest.raises(ValueError, match="max_bytes must be a positive integer, got -1"):
        LocalFolderSource(Path("."), max_bytes=-1)


# --- S3, on moto's server over HTTP ----------------------------------------------------------------


def new_bucket(client: Any) -> str:
    name = f"frames-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return name


def put_all(client: Any, bucket: str, objects: dict[str, bytes]) -> None:
    # Moto answers one PUT in ~5 ms; a few threads overlap the client's and the server's halves.
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(lambda item: client.put_object(Bucket=bucket, Key=item[0], Body=item[1]), objects.items()))


BIG_VIDEO_FRAMES = 1_005  # more than one page (1,000 keys) in both the root and the video listing


@pytest.fixture(scope="module")
def s3_library(s3_client: Any) -> str:
    """library/1: 1,005 frames; 2: three frames and a stray file; 3: a CSV manifest; plus distractors."""
    bucket = new_bucket(s3_client)
    objects = {f"library/1/frame_{i:05d}.jpg": b"%d" % i for i in range(BIG_VIDEO_FRAMES)}
    objects.update({f"library/2/frame_{i}.png": b"two-%d" % i for i in (4, 2, 0)})
    objects["library/2/readme.txt"] = b"not a frame"
    objects["library/3/f_1.jpg"] = b"three-1"
    objects["library/3/manifest.csv"] = b"frame_id,timestamp_ms,url\n1,0,f_1.jpg\n"
    objects["library/archive/frame_1.jpg"] = b"not a video"
    objects["library/readme.txt"] = b"not a video either"
    objects["elsewhere/1/frame_1.jpg"] = b"outside the root"
    put_all(s3_client, bucket, objects)
    return bucket


def test_s3_listing_paginates(s3_client: Any, s3_library: str, moto_s3_endpoint: str) -> None:
    source = S3FrameSource(s3_client, f"s3://{s3_library}/library", fps=25, endpoint_url=moto_s3_endpoint)
    listings = source.list_videos()
    assert [v.video_id for v in listings] == [1, 2, 3]
    assert source.list_videos() == listings  # stable
    assert source.video_ids() == [1, 2, 3]
    assert f"s3://{s3_library}/library/" in source.describe()

    frames = source.manifest(1)
    assert [f.frame_id for f in frames] == list(range(BIG_VIDEO_FRAMES))
    assert frames[-1] == FrameRef(1004, 40160, f"s3://{s3_library}/library/1/frame_01004.jpg")
    assert source.read(frames[-1].url) == b"1004"

    frames = source.manifest(2)
    assert [(f.frame_id, f.timestamp_ms) for f in frames] == [(0, 0), (2, 80), (4, 160)]
    assert source.read(frames[1].url) == b"two-2"

    assert source.manifest(3) == [FrameRef(1, 0, f"s3://{s3_library}/library/3/f_1.jpg")]
    with pytest.raises(VideoNotFound, match="video 9 not found"):
        source.manifest(9)


def test_s3_listing_requests(s3_library: str, moto_s3_endpoint: str) -> None:
    # One recursive listing for all signatures: requests grow with objects / 1,000, not with videos.
    client = _client_like(moto_s3_endpoint, Config())
    calls: list[dict[str, Any]] = []
    client.meta.events.register("provide-client-params.s3.ListObjectsV2", lambda params, **_: calls.append(dict(params)))
    source = S3FrameSource(client, f"s3://{s3_library}/library/", endpoint_url=moto_s3_endpoint)
    source.list_videos()
    assert len(calls) == 2 and all("Delimiter" not in call for call in calls)
    calls.clear()
    assert len(source.manifest(1)) == BIG_VIDEO_FRAMES
    assert len(calls) == 2 and all(call["Delimiter"] == "/" for call in calls)
    calls.clear()
    source.video_ids()
    assert [call["Delimiter"] for call in calls] == ["/"]


def test_s3_signatures(s3_client: Any, moto_s3_endpoint: str) -> None:
    bucket = new_bucket(s3_client)
    put_all(s3_client, bucket, {"v/1/frame_1.jpg": b"a", "v/1/frame_2.jpg": b"b", "v/2/frame_1.jpg": b"c", "v/12/frame_1.jpg": b"d"})
    source = S3FrameSource(s3_client, f"s3://{bucket}/v/", endpoint_url=moto_s3_endpoint)

    def signatures() -> dict[int, str]:
        return {v.video_id: v.signature for v in source.list_videos()}

    first = signatures()
    assert list(first) == [1, 2, 12] and len(set(first.values())) == 3
    assert signatures() == first

    s3_client.put_object(Bucket=bucket, Key="v/1/frame_3.jpg", Body=b"new")
    added = signatures()
    assert added[1] != first[1] and added[2] == first[2] and added[12] == first[12]

    s3_client.put_object(Bucket=bucket, Key="v/1/frame_1.jpg", Body=b"A")  # same size, new ETag
    changed = signatures()
    assert changed[1] != added[1] and changed[2] == first[2]

    s3_client.delete_object(Bucket=bucket, Key="v/1/frame_3.jpg")
    removed = signatures()
    assert removed[1] not in (first[1], added[1], changed[1])

    s3_client.put_object(Bucket=bucket, Key="v/2/manifest.jsonl", Body=b'{"frame_id": 1, "url": "frame_1.jpg"}\n')
    assert signatures()[2] != first[2]


def test_s3_manifests_and_presigned_reads(s3_client: Any, moto_s3_endpoint: str) -> None:
    bucket, other = new_bucket(s3_client), new_bucket(s3_client)
    s3_client.put_object(Bucket=other, Key="shared/frame 9.jpg", Body=b"other-bucket")
    s3_client.put_object(Bucket=other, Key="signed/f.jpg", Body=b"signed-v2")
    s3_client.put_object(Bucket=other, Key="signed/g h.jpg", Body=b"signed-v4")
    v2_url = s3_client.generate_presigned_url("get_object", Params={"Bucket": other, "Key": "signed/f.jpg"}, ExpiresIn=600)
    v4_client = _client_like(moto_s3_endpoint, Config(signature_version="s3v4"))
    v4_url = v4_client.generate_presigned_url("get_object", Params={"Bucket": other, "Key": "signed/g h.jpg"}, ExpiresIn=600)
    assert "X-Amz-Signature=" in v4_url and "Signature=" in v2_url
    path_style = f"{moto_s3_endpoint}/{other}/shared/frame%209.jpg"  # on the endpoint, unsigned: read with the client

    manifest = (
        "frame_id,timestamp_ms,url\n"
        "1,0,frames/f_1.jpg\n"
        f"2,,s3://{other}/shared/frame 9.jpg\n"
        f'3,120,"{v2_url}"\n'
        f'4,160,"{v4_url}"\n'
        f"5,200,{path_style}\n"
    )
    put_all(s3_client, bucket, {"r/6/manifest.csv": manifest.encode(), "r/6/frames/f_1.jpg": b"relative", "r/6/frame_77.jpg": b"ignored"})
    jsonl = "\n".join(json.dumps(row) for row in [{"frame_id": 10, "url": "f_10.jpg"}, {"frame_id": 11, "url": v4_url}])
    put_all(s3_client, bucket, {"r/8/manifest.jsonl": jsonl.encode(), "r/8/f_10.jpg": b"ten"})

    source = S3FrameSource(s3_client, f"s3://{bucket}/r/", fps=10, endpoint_url=moto_s3_endpoint)
    frames = source.manifest(6)
    assert frames == [
        FrameRef(1, 0, f"s3://{bucket}/r/6/frames/f_1.jpg"),
        FrameRef(2, 200, f"s3://{other}/shared/frame 9.jpg"),
        FrameRef(3, 120, v2_url),  # pre-signed: exactly as given
        FrameRef(4, 160, v4_url),
        FrameRef(5, 200, path_style),
    ]
    assert [source.read(f.url) for f in frames] == [b"relative", b"other-bucket", b"signed-v2", b"signed-v4", b"other-bucket"]

    frames = source.manifest(8)
    assert [(f.frame_id, f.timestamp_ms) for f in frames] == [(10, 1000), (11, 1100)]
    assert [source.read(f.url) for f in frames] == [b"ten", b"signed-v4"]


def test_s3_read_errors(s3_client: Any, moto_s3_endpoint: str) -> None:
    bucket = new_bucket(s3_client)
    s3_client.put_object(Bucket=bucket, Key="v/1/frame_1.jpg", Body=b"x" * 101)
    source = S3FrameSource(s3_client, f"s3://{bucket}/v", max_bytes=100, endpoint_url=moto_s3_endpoint)

    with pytest.raises(FrameReadError, match="NoSuchKey") as info:
        source.read(f"s3://{bucket}/v/1/frame_2.jpg")
    assert info.value.missing

    missing_signed = s3_client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "v/1/gone.jpg"})
    with pytest.raises(FrameReadError, match=r"HTTP 404 \(NoSuchKey\)") as info:
        source.read(missing_signed)
    assert info.value.missing
    assert "Signature=" not in str(info.value)  # the credential part of the URL stays out of messages

    with pytest.raises(FrameReadError, match="NoSuchBucket") as info:
        source.read("s3://no-such-bucket-here/k.jpg")
    assert not info.value.missing  # a wrong bucket is configuration, not a deleted frame

    with pytest.raises(FrameReadError, match="101 bytes, over the limit of 100") as info:
        source.read(f"s3://{bucket}/v/1/frame_1.jpg")
    assert not info.value.missing
    signed = s3_client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "v/1/frame_1.jpg"})
    with pytest.raises(FrameReadError, match="over the limit of 100"):
        source.read(signed)

    for url in ("http://169.254.169.254/latest", "https://evil.example.com/bucket/key?X-Amz-Signature=x"):
        with pytest.raises(FrameReadError, match="refused: not an S3 host"):
            source.read(url)
    for url in ("file:///etc/passwd", "/etc/passwd", "ftp://x/y"):
        with pytest.raises(FrameReadError, match="reads s3:// urls"):
            source.read(url)
    with pytest.raises(FrameReadError, match="empty key"):
        source.read(f"s3://{bucket}/")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("1,file:///etc/passwd", "cannot point at local files"),
        ("1,http://169.254.169.254/latest/meta-data/", "refused: not an S3 host"),
        ("1,https://evil.example.com/k.jpg?X-Amz-Signature=x", "refused: not an S3 host"),
        ("1,s3://frames", "no key"),
        ("1,../2/frame_1.jpg", "must stay inside the video folder"),
        ("x,frame_1.jpg", "frame_id must be"),
    ],
)
def test_s3_bad_manifests(s3_client: Any, moto_s3_endpoint: str, line: str, message: str) -> None:
    bucket = new_bucket(s3_client)
    s3_client.put_object(Bucket=bucket, Key="4/manifest.csv", Body=f"frame_id,url\n{line}\n".encode())
    source = S3FrameSource(s3_client, f"s3://{bucket}", endpoint_url=moto_s3_endpoint)
    with pytest.raises(FrameSourceError, match=f"s3://{bucket}/4/manifest.csv, line 2: .*{message}"):
        source.manifest(4)


def test_s3_zero_padded_and_duplicate_prefixes(s3_client: Any, moto_s3_endpoint: str) -> None:
    bucket = new_bucket(s3_client)
    s3_client.put_object(Bucket=bucket, Key="0042/frame_1.jpg", Body=b"padded")
    source = S3FrameSource(s3_client, f"s3://{bucket}/", endpoint_url=moto_s3_endpoint)
    assert source.video_ids() == [42]
    [frame] = source.manifest(42)
    assert frame.url == f"s3://{bucket}/0042/frame_1.jpg" and source.read(frame.url) == b"padded"
    s3_client.put_object(Bucket=bucket, Key="42/frame_1.jpg", Body=b"plain")
    with pytest.raises(FrameSourceError, match="video 42 has two prefixes"):
        source.list_videos()


def test_s3_root_problems(s3_client: Any, moto_s3_endpoint: str) -> None:
    with pytest.raises(FrameSourceError, match="NoSuchBucket"):
        S3FrameSource(s3_client, "s3://no-such-bucket-here/v/", endpoint_url=moto_s3_endpoint).list_videos()
    with pytest.raises(FrameSourceError, match="S3 root 'https://evil.example.com/v/' is not usable"):
        S3FrameSource(s3_client, "https://evil.example.com/v/")
    bucket = new_bucket(s3_client)
    assert S3FrameSource(s3_client, f"s3://{bucket}/empty/", endpoint_url=moto_s3_endpoint).list_videos() == []


def _client_like(endpoint: str, config: Config) -> Any:
    import boto3

    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing", config=config
    )


def test_record_frames_local_keeps_listed_frames(tmp_path: Path) -> None:
    folder = tmp_path / "4"
    folder.mkdir()
    (folder / "frame_1.png").write_bytes(b"x")
    source = LocalFolderSource(tmp_path, fps=10.0)
    merged = source.record_frames(4, [FrameRef(7, 700, (tmp_path / "x" / "7.png").as_uri()), FrameRef(1, 5, "file:///other/1.png")])
    assert [(r.frame_id, r.timestamp_ms) for r in merged] == [(1, 5), (7, 700)]
    assert source.manifest(4) == merged and len(list((folder / "ingest").glob("*.jsonl"))) == 1
    with pytest.raises(FrameSourceError, match="s3:// urls need an S3 frame source"):
        source.record_frames(4, [FrameRef(8, 0, "s3://b/k.jpg")])
    assert [r.frame_id for r in source.manifest(4)] == [1, 7]  # nothing written
    created = source.record_frames(9, [FrameRef(3, None, "file:///other/3.png")])  # a new video
    assert [r.frame_id for r in created] == [3] and source.manifest(9)[0].timestamp_ms == 300


def test_record_frames_s3(s3_client) -> None:
    import uuid as _uuid

    bucket = f"rec-{_uuid.uuid4().hex[:8]}"
    s3_client.create_bucket(Bucket=bucket)
    s3_client.put_object(Bucket=bucket, Key="lib/2/frame_0.png", Body=b"x")
    endpoint = s3_client.meta.endpoint_url
    source = S3FrameSource(s3_client, f"s3://{bucket}/lib/", fps=2.0, endpoint_url=endpoint)
    merged = source.record_frames(2, [FrameRef(5, 2500, f"s3://{bucket}/elsewhere/5.png")])
    assert [r.frame_id for r in merged] == [0, 5]
    assert [r.frame_id for r in source.manifest(2)] == [0, 5]
    assert [r.frame_id for r in source.record_frames(3, [FrameRef(1, 0, f"s3://{bucket}/x.png")])] == [1]


# --- Concurrent ingests: record_frames never loses another writer's frames ----------------------

WRITERS, FRAMES_EACH = 8, 5


def _writer_frames(writer: int, url_of: Any) -> list[FrameRef]:
    return [FrameRef(writer * 100 + i, None, url_of(writer * 100 + i)) for i in range(FRAMES_EACH)]


def _expected_ids() -> list[int]:
    return sorted(w * 100 + i for w in range(WRITERS) for i in range(FRAMES_EACH))


def _all_at_once(record: Any) -> None:
    """Run ``record(writer)`` for every writer on its own thread, released together by a barrier."""
    barrier = threading.Barrier(WRITERS)

    def run(writer: int) -> list[FrameRef]:
        barrier.wait()
        return record(writer)

    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        results = list(pool.map(run, range(WRITERS)))
    for writer, merged in enumerate(results):  # each writer's answer holds at least its own frames
        assert {r.frame_id for r in _writer_frames(writer, str)} <= {r.frame_id for r in merged}


def test_record_frames_concurrent_threads_local(tmp_path: Path) -> None:
    write(tmp_path / "6" / "frame_999.png")  # a listed frame, kept under the batches
    source = LocalFolderSource(tmp_path, fps=10.0)
    before = source.list_videos()[0].signature
    _all_at_once(lambda w: source.record_frames(6, _writer_frames(w, lambda f: f"file:///frames/{f}.png")))
    assert [r.frame_id for r in source.manifest(6)] == [*_expected_ids(), 999]
    assert source.list_videos()[0].signature != before  # the sensor sees the new frames


_PROCESS_WRITER = """
import sys, time
from pathlib import Path
from resources.frame_sources import FrameRef, LocalFolderSource
root, writer, start = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
frames = [FrameRef(writer * 100 + i, None, f"file:///frames/{writer * 100 + i}.png") for i in range(5)]
while time.time() < start:  # all processes write at about the same moment
    time.sleep(0.001)
LocalFolderSource(root).record_frames(6, frames)
"""


def test_record_frames_concurrent_processes_local(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    repo = Path(__file__).resolve().parents[3]
    start = time.time() + 4  # past the interpreters' start-up, on 2 cores
    procs = [
        subprocess.Popen([sys.executable, "-c", _PROCESS_WRITER, str(tmp_path), str(w), str(start)], cwd=repo)
        for w in range(WRITERS)
    ]
    assert [p.wait(60) for p in procs] == [0] * WRITERS
    assert [r.frame_id for r in LocalFolderSource(tmp_path).manifest(6)] == _expected_ids()


def test_record_frames_concurrent_threads_s3(s3_client: Any, moto_s3_endpoint: str) -> None:
    bucket = new_bucket(s3_client)
    s3_client.put_object(Bucket=bucket, Key="lib/6/manifest.csv", Body=b"frame_id,url\n999,f.png\n")
    source = S3FrameSource(s3_client, f"s3://{bucket}/lib/", endpoint_url=moto_s3_endpoint)
    before = source.list_videos()[0].signature
    _all_at_once(lambda w: source.record_frames(6, _writer_frames(w, lambda f: f"s3://{bucket}/frames/{f}.png")))
    assert [r.frame_id for r in source.manifest(6)] == [*_expected_ids(), 999]
    assert source.list_videos()[0].signature != before
    # A later batch wins per frame_id, over the manifest file and over earlier batches.
    source.record_frames(6, [FrameRef(999, 5, f"s3://{bucket}/new.png"), FrameRef(0, 7, f"s3://{bucket}/zero.png")])
    frames = {r.frame_id: r for r in source.manifest(6)}
    assert (frames[999].url, frames[0].timestamp_ms) == (f"s3://{bucket}/new.png", 7)


# --- ids must fit a signed 64-bit integer (Qdrant point ids, pyarrow int64) ---------------------


def test_ids_beyond_int64_are_refused(tmp_path: Path) -> None:
    big = 2**63
    source = LocalFolderSource(tmp_path)
    write(tmp_path / str(big - 1) / "frame_1.jpg")
    assert source.video_ids() == [big - 1]  # the largest id still fits
    write(tmp_path / str(big) / "frame_1.jpg")
    with pytest.raises(FrameSourceError, match=rf"video folder '{big}': video_id must be an integer from 0 to 2\*\*63-1"):
        source.list_videos()

    other = LocalFolderSource(tmp_path / "lib")
    write(tmp_path / "lib" / "1" / f"frame_{big}.jpg")
    with pytest.raises(FrameSourceError, match=rf"file 'frame_{big}.jpg': frame_id must be an integer from 0 to 2\*\*63-1"):
        other.manifest(1)
    write(tmp_path / "lib" / "2" / "manifest.jsonl", json.dumps({"frame_id": big, "url": "f.jpg"}) + "\n")
    with pytest.raises(FrameSourceError, match=r"manifest.jsonl, line 1: frame_id must be an integer from 0 to 2\*\*63-1"):
        other.manifest(2)
    write(tmp_path / "lib" / "3" / "manifest.csv", f"frame_id,timestamp_ms,url\n1,{big},f.jpg\n")
    with pytest.raises(FrameSourceError, match=r"manifest.csv, line 2: timestamp_ms must be an integer"):
        other.manifest(3)
    with pytest.raises(FrameSourceError, match="frame_id must be an integer from 0 to 2"):
        other.record_frames(4, [FrameRef(big, 0, "file:///x.png")])
    with pytest.raises(FrameSourceError, match="video_id must be an integer from 0 to 2"):
        other.record_frames(big, [FrameRef(1, 0, "file:///x.png")])
    assert not (tmp_path / "lib" / "4").exists()  # nothing written


# --- transient failures are told apart from permanent ones --------------------------------------


def test_local_io_error_is_transient_and_missing_is_not(tmp_path: Path) -> None:
    source = LocalFolderSource(tmp_path)
    with pytest.raises(FrameReadError) as info:
        source.read("file:///proc/self/mem")  # a real EIO: reading unmapped memory at offset 0
    assert info.value.transient and not info.value.missing and "Input/output error" in info.value.reason
    with pytest.raises(FrameReadError) as info:
        source.read((tmp_path / "gone.png").as_uri())
    assert info.value.missing and not info.value.transient
    with pytest.raises(FrameReadError) as info:
        source.read(tmp_path.as_uri())  # a folder: permanent
    assert not info.value.transient


class _Answer:
    """A tiny HTTP server on 127.0.0.1 that answers every request with one status and S3 error code."""

    def __init__(self, status: int, code: str) -> None:
        import http.server

        body = f"<?xml version='1.0'?><Error><Code>{code}</Code><Message>test</Message></Error>".encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.mark.parametrize(
    ("status", "code", "transient"),
    [(503, "SlowDown", True), (500, "InternalError", True), (429, "TooManyRequests", True), (403, "AccessDenied", False), (404, "NoSuchKey", False)],
)
def test_s3_error_answers_are_classified(status: int, code: str, transient: bool) -> None:
    answer = _Answer(status, code)
    try:
        client = _client_like(answer.url, Config(retries={"max_attempts": 1, "mode": "standard"}))
        source = S3FrameSource(client, "s3://frames/lib/", endpoint_url=answer.url)
        with pytest.raises(FrameReadError, match=code) as info:  # through the boto3 client
            source.read("s3://frames/lib/1/frame_1.jpg")
        assert info.value.transient is transient
        with pytest.raises(FrameReadError, match=rf"HTTP {status} \({code}\)") as info:  # a pre-signed URL, with httpx
            source.read(f"{answer.url}/frames/lib/1/frame_1.jpg?X-Amz-Signature=abc&X-Amz-Credential=x")
        assert info.value.transient is transient
        with pytest.raises(FrameSourceError, match=code) as listing:
            source.list_videos()
        assert listing.value.transient is transient
    finally:
        answer.server.shutdown()


def test_unreachable_endpoint_is_transient() -> None:
    from tests.servers import free_port

    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens: connection refused
    client = _client_like(endpoint, Config(retries={"max_attempts": 1, "mode": "standard"}))
    source = S3FrameSource(client, "s3://frames/lib/", endpoint_url=endpoint)
    with pytest.raises(FrameReadError, match="Could not connect") as info:
        source.read("s3://frames/lib/1/frame_1.jpg")
    assert info.value.transient and not info.value.missing
    with pytest.raises(FrameReadError, match="ConnectError") as info:
        source.read(f"{endpoint}/frames/lib/1/frame_1.jpg?X-Amz-Signature=abc&X-Amz-Credential=x")
    assert info.value.transient
    with pytest.raises(FrameSourceError, match="Could not connect") as listing:
        source.manifest(1)
    assert listing.value.transient
