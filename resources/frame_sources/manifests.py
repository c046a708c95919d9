"""What a video folder says: frame numbers in file names, manifest files (CSV or JSON lines),
integer video ids, and the digest behind a video's signature."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from resources.frame_sources.base import FrameRef, FrameSourceError, check_id

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})

MANIFEST_CSV = "manifest.csv"
MANIFEST_JSONL = "manifest.jsonl"

_INTEGER = re.compile(r"^[+-]?[0-9]+$")


def frame_id_from_name(name: str) -> int:
    """The frame number in a file name: the last run of digits (``frame_000120.jpg`` -> 120)."""
    digits = re.findall(r"\d+", Path(name).stem)
    if not digits:
        raise ValueError(f"no frame number in file name {name!r}")
    return int(digits[-1])


def _video_id(name: str) -> int | None:
    """The video_id a folder name stands for; None when it is no integer (the folder is ignored)."""
    # ASCII digits only: str.isdigit() also accepts "²" and Arabic-Indic digits.
    if not (name and name.isascii() and name.isdigit()):
        return None
    # Refused loudly rather than ignored: a video that silently never shows up is worse.
    return check_id(int(name), "video_id", f"video folder {name!r}")


def _unique_ids(names: Iterable[str], root: object, locate: Callable[[str], Any]) -> dict[int, Any]:
    found: dict[int, tuple[str, Any]] = {}
    for name in names:
        video_id = _video_id(name)
        if video_id is None:
            continue
        if video_id in found:
            first = found[video_id][0]
            raise FrameSourceError(f"video {video_id} has two folders under {root}: {first!r} and {name!r}")
        found[video_id] = (name, locate(name))
    return {video_id: where for video_id, (_, where) in found.items()}


def _digest(lines: list[str]) -> str:
    hasher = hashlib.sha256()
    for line in sorted(lines):
        hasher.update(line.encode("utf-8", "surrogateescape") + b"\n")
    return hasher.hexdigest()[:16]


def _timestamp_ms(frame_id: int, fps: float) -> int:
    return check_id(round(frame_id * 1000 / fps), "timestamp_ms", f"frame {frame_id} at {fps:g} fps")


def _manifest_name(files: list[str], where: str) -> str | None:
    present = [name for name in (MANIFEST_CSV, MANIFEST_JSONL) if name in files]
    if len(present) > 1:
        raise FrameSourceError(f"{where} holds both {MANIFEST_CSV} and {MANIFEST_JSONL}: keep one")
    return present[0] if present else None


def _frames_from_names(files: Iterable[tuple[str, str]], fps: float, where: str) -> list[FrameRef]:
    """FrameRefs of the image files among ``(name, url)`` pairs; names without digits are skipped."""
    names: dict[int, str] = {}
    refs = []
    for name, url in sorted(files):
        if name.startswith(".") or PurePosixPath(name).suffix.lower() not in IMAGE_SUFFIXES:
            continue
        try:
            frame_id = frame_id_from_name(name)
        except ValueError:
            continue
        check_id(frame_id, "frame_id", f"{where}: file {name!r}")
        if frame_id in names:
            raise FrameSourceError(f"{where}: frame {frame_id} is named twice, by {names[frame_id]!r} and {name!r}")
        names[frame_id] = name
        refs.append(FrameRef(frame_id, _timestamp_ms(frame_id, fps), url))
    return sorted(refs, key=lambda ref: ref.frame_id)


def _manifest_frames(name: str, data: bytes, fps: float, resolve: Callable[[str], str], where: str) -> list[FrameRef]:
    """FrameRefs from a manifest's bytes; ``resolve`` turns a row's url into a readable one or raises ValueError."""
    try:
        text = data.decode("utf-8-sig")  # Excel writes a byte-order mark
    except UnicodeDecodeError as exc:
        raise FrameSourceError(f"{where} is not UTF-8 text: {exc}") from None
    rows = _csv_rows(text, where) if name == MANIFEST_CSV else _jsonl_rows(text, where)
    lines: dict[int, int] = {}
    refs = []
    for line, row in rows:
        frame_id = _manifest_int(row.get("frame_id"), "frame_id", where, line)
        if frame_id is None:
            raise FrameSourceError(f"{where}, line {line}: missing frame_id")
        if frame_id in lines:
            raise FrameSourceError(f"{where}, line {line}: duplicate frame_id {frame_id} (first on line {lines[frame_id]})")
        lines[frame_id] = line
        timestamp_ms = _manifest_int(row.get("timestamp_ms"), "timestamp_ms", where, line)
        url = row.get("url")
        if not isinstance(url, str) or not url.strip():
            raise FrameSourceError(f"{where}, line {line}: missing url for frame {frame_id}")
        try:
            resolved = resolve(url.strip())
        except ValueError as exc:
            raise FrameSourceError(f"{where}, line {line}: {exc}") from None
        refs.append(FrameRef(frame_id, _timestamp_ms(frame_id, fps) if timestamp_ms is None else timestamp_ms, resolved))
    return sorted(refs, key=lambda ref: ref.frame_id)


def _csv_rows(text: str, where: str) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [cell.strip().lower() for cell in next(reader, [])]
        if "frame_id" not in header or "url" not in header:
            raise FrameSourceError(f"{where}, line 1: the header must name frame_id and url (and optionally timestamp_ms), got {header}")
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise FrameSourceError(f"{where}, line {reader.line_num}: expected {len(header)} columns, got {len(row)}")
            yield reader.line_num, dict(zip(header, row))
    except csv.Error as exc:
        raise FrameSourceError(f"{where}, line {reader.line_num}: {exc}") from None


def _jsonl_rows(text: str, where: str) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FrameSourceError(f"{where}, line {number}: not JSON: {exc}") from None
        if not isinstance(row, dict):
            raise FrameSourceError(f"{where}, line {number}: expected a JSON object, got {type(row).__name__}")
        yield number, row


def _manifest_int(value: object, field: str, where: str, line: int) -> int | None:
    """A non-negative integer from a CSV cell or JSON value; None when absent or empty."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)  # JSON writers that only know floats (1500.0)
    elif isinstance(value, str) and _INTEGER.match(value.strip()):
        number = int(value.strip())
    if number is None or number < 0:
        raise FrameSourceError(f"{where}, line {line}: {field} must be a non-negative integer, got {value!r}")
    check_id(number, field, f"{where}, line {line}")
    return number


def _relative_path(url: str) -> PurePosixPath:
    # Relative manifest urls are file names, taken literally (no percent-decoding), inside the folder.
    path = PurePosixPath(url)
    if path.is_absolute() or ".." in path.parts or url.startswith("\\"):
        raise ValueError(f"url {url!r}: a relative url must stay inside the video folder (no leading '/', no '..')")
    return path
