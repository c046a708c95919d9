"""Frame sources: which videos exist, which frames each holds, and the bytes of one frame, from a
local folder or an S3 prefix behind one small interface (:class:`FrameSource`).

Both sources read the same layout. The root holds one folder (S3: prefix) per video, named by its
integer video_id; other names are ignored:

    root/                                  (a folder, or s3://bucket/prefix/)
      1/                                   video 1: its image files are its frames
        frame_000000.jpg                   frame 0, timestamp round(0 * 1000 / fps) ms
        frame_000060.jpg                   frame 60 (the last run of digits in the name)
        cover.png                          no digits: skipped
        notes.txt                          not an image: skipped
      2/                                   video 2: a manifest lists the frames and wins over the files
        manifest.csv                       frame_id,timestamp_ms,url
        f_1.jpg                              1,0,f_1.jpg                  relative to the video folder
                                             2,,s3://other-bucket/x.jpg   empty timestamp: from fps
                                             3,80,https://b.s3.amazonaws.com/y.jpg?X-Amz-Signature=...
      3/
        manifest.jsonl                     {"frame_id": 1, "timestamp_ms": 0, "url": "f_1.jpg"} per line
        ingest/                            batches of FrameSource.record_frames, one immutable file each:
          <time ns>-<random>.jsonl           applied in name order over the files or manifest above
      4/                                   video 4: ONE video file (no manifest) is the video
        clip.mp4                             frames picked by the sampling policy (VIDEO_SAMPLING)
      archive/                             not an integer: ignored

Video files (:data:`VIDEO_SUFFIXES`: mp4, m4v, mov, mkv, webm, avi - whatever PyAV opens) are
decoded by :mod:`.video`: a folder with one video file and no manifest has the frames that the
sampling policy picks (``fps:<rate>`` (default ``fps:1``), ``every:<seconds>``,
``scene:<threshold>`` or ``keyframes``; other files beside it, such as a poster image, are
ignored; two video files in one folder are an error). Each frame's url is
``<video file url>#frame=<frame_id>&t=<seconds>``, e.g. ``s3://b/videos/4/clip.mp4#frame=120&t=2.000``:
frame_id is its index in the stream (presentation order), timestamp_ms its presentation time from
the stream's start. :func:`read_frame_image` returns any stored frame url's image (a video frame
by seeking, not decoding the whole file); ``read`` of a video frame url returns it as PNG bytes.
Video files on S3 are read by ranged GETs (:mod:`.s3_ranged`), never held whole in memory. A
video's signature covers the video file (size and mtime, or ETag) and the sampling policy.

Video and frame ids (and timestamps) must lie in 0..2**63-1, the range of Qdrant point ids and
pyarrow int64 columns; anything larger is refused with a :class:`FrameSourceError`.

Frame images have one of :data:`IMAGE_SUFFIXES` (any case); names starting with "." (editor and
macOS ``._*`` files) are skipped. Manifest urls may be relative to the video folder, ``s3://``
(S3 source only), ``file://`` (local source only), or http(s) URLs of an S3 host: pre-signed ones
are fetched exactly as given, with httpx, a timeout and the byte limit; unsigned ones are read
through the S3 client. http(s) URLs of any other host are refused, so a manifest cannot make a
worker fetch internal addresses (cloud metadata, admin ports).

A video's signature (:class:`VideoListing`) is a digest of every file under its folder (name, size
and mtime locally; key, size and ETag on S3), so it changes when a frame or the manifest changes
and is stable otherwise. The S3 source computes all signatures from one paginated listing of the
root, never one request per video, so 100,000 videos cost about (objects / 1,000) requests.

Errors carry ``transient``: True when the failure may pass (endpoint unreachable, timeout, 5xx,
throttling, a local I/O error other than not-found) and says nothing about the frame. Callers must
retry those later and never record them as skipped frames.

The package holds one module per idea around the small interface in :mod:`.base`:
:mod:`.base` (FrameRef, VideoListing, errors, the FrameSource ABC with ``record_frames``),
:mod:`.manifests` (manifest and file-name parsing, ingest batches, video ids, signatures),
:mod:`.reading` (byte-limited reads, the HTTP fetcher for pre-signed URLs, error classification),
:mod:`.local` and :mod:`.s3` (the two source kinds), :mod:`.video` (sampling, frame urls and
the scan of video files), :mod:`.video_decode` (their streaming decode), :mod:`.s3_ranged` (a
seekable file over an S3 object), :mod:`.frames` (decoded frames of any kind:
:func:`read_frame_image`, :func:`iter_frames`), :mod:`.images` (image bytes to RGB pixels within
a pixel limit, and to the encoder's tensors; shared with the search service's query images).
A new kind implements ``list_videos``, ``manifest``, ``read`` and ``describe`` (``open_file``
to hold video files, ``_write_batch``/``_check_url`` to accept ingests).
"""

from resources.frame_sources.base import FrameReadError, FrameRef, FrameSource, FrameSourceError, VideoListing, VideoNotFound, _redact, _scheme
from resources.frame_sources.frames import DecodedFrame, iter_frames, read_frame_image
from resources.frame_sources.local import LocalFolderSource
from resources.frame_sources.manifests import IMAGE_SUFFIXES, MANIFEST_CSV, MANIFEST_JSONL, frame_id_from_name
from resources.frame_sources.reading import (
    _CHUNK,
    _MISSING_CODES,
    DEFAULT_MAX_BYTES,
    _http_error,
    _HttpFetcher,
    _read_limited,
    _too_large,
)
from resources.frame_sources.s3 import S3FrameSource
from resources.frame_sources.video import (
    VIDEO_SUFFIXES,
    SamplingPolicy,
    VideoFrameUrl,
    is_video_frame_url,
    parse_video_frame_url,
    sampling_from_env,
    video_frame_url,
)

# The private helpers are re-exported because search_service/query_images.py reads query images
# with the same limits and S3 error handling.
__all__ = [
    "DEFAULT_MAX_BYTES",
    "VIDEO_SUFFIXES",
    "DecodedFrame",
    "SamplingPolicy",
    "VideoFrameUrl",
    "is_video_frame_url",
    "iter_frames",
    "parse_video_frame_url",
    "read_frame_image",
    "sampling_from_env",
    "video_frame_url",
    "IMAGE_SUFFIXES",
    "MANIFEST_CSV",
    "MANIFEST_JSONL",
    "FrameReadError",
    "FrameRef",
    "FrameSource",
    "FrameSourceError",
    "LocalFolderSource",
    "S3FrameSource",
    "VideoListing",
    "VideoNotFound",
    "frame_id_from_name",
    "_CHUNK",
    "_MISSING_CODES",
    "_HttpFetcher",
    "_http_error",
    "_read_limited",
    "_redact",
    "_scheme",
    "_too_large",
]
