"""Request and response shapes of the search API, with the seed service's field names.

Requests are validated by pydantic: a wrong type or a value out of range becomes a 422 whose
``detail`` names the field (``["body", "top_k"]``), never a 500.

JSON bodies are strict: ``true`` is not 1, ``"5"`` is not 5, ``1.5`` is not an id. Only the upload
endpoint's form fields and query string, which are strings by nature, are parsed into numbers.
Ids and timestamps are 0 .. 2**63 - 1 (:data:`MAX_ID`, what the index and Parquet store as int64):
a larger one would pass validation and fail every run of its video with OverflowError.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from resources.index_schema import SearchFilters


MAX_ID = 2**63 - 1  # int64: video and frame ids, timestamps

Id = Annotated[int, Field(ge=0, le=MAX_ID)]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _url(value: str) -> str:
    """Surrounding whitespace dropped; blank URLs and control characters (CR/LF) refused."""
    value = value.strip()
    if not value:
        raise ValueError("URL is blank")
    if _CONTROL.search(value):
        raise ValueError("URL holds a control character (CR, LF, NUL, ...)")
    return value


Url = Annotated[str, Field(min_length=1, max_length=4_096), AfterValidator(_url)]


class FilterFields(BaseModel):
    """The seed's filters; all given conditions must hold."""

    model_config = ConfigDict(extra="forbid", strict=True)

    video_ids: list[Id] | None = Field(None, min_length=1, max_length=10_000, description="frames of any of these videos")
    frame_id_min: Id | None = None
    frame_id_max: Id | None = None
    timestamp_min_ms: Id | None = None
    timestamp_max_ms: Id | None = None

    @model_validator(mode="after")
    def _ranges_are_ordered(self) -> FilterFields:
        for low, high in (("frame_id_min", "frame_id_max"), ("timestamp_min_ms", "timestamp_max_ms")):
            a, b = getattr(self, low), getattr(self, high)
            if a is not None and b is not None and a > b:
                raise ValueError(f"{low} ({a}) is greater than {high} ({b})")
        return self

    def filters(self) -> SearchFilters:
        return SearchFilters(
            video_ids=tuple(self.video_ids) if self.video_ids is not None else None,
            frame_id_min=self.frame_id_min,
            frame_id_max=self.frame_id_max,
            timestamp_min_ms=self.timestamp_min_ms,
            timestamp_max_ms=self.timestamp_max_ms,
        )


class RankFields(FilterFields):
    top_k: int = Field(10, ge=1, le=100, description="number of results")
    rerank: bool = Field(False, description="patch-level MaxSim rerank of the global candidates")
    rerank_alpha: float = Field(0.5, ge=0.0, le=1.0, description="weight of the global score; 1 = global only")


class TextSearch(RankFields):
    query: str = Field(..., min_length=1, max_length=2_000, description="what to look for")

    @model_validator(mode="after")
    def _not_blank(self) -> TextSearch:
        if not self.query.strip():
            raise ValueError("query is blank")
        return self


class ImageSearch(RankFields):
    s3_url: Url = Field(..., description="s3:// or https S3 URL (pre-signed allowed)")


class HybridSearch(RankFields):
    text_query: str = Field(..., min_length=1, max_length=2_000)
    image_s3_url: Url
    text_weight: float = Field(0.5, ge=0.0, le=1.0)
    image_weight: float = Field(0.5, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _some_weight(self) -> HybridSearch:
        if not self.text_query.strip():
            raise ValueError("text_query is blank")
        if self.text_weight + self.image_weight == 0:
            raise ValueError("text_weight and image_weight are both 0")
        return self


class UploadSearch(RankFields):
    """Parameters of ``/search/image/upload``, from form fields or the query string: strings, so
    numbers and booleans are parsed from their text (``"5"``, ``"true"``)."""

    model_config = ConfigDict(strict=False)


class SearchResult(BaseModel):
    image_id: str
    video_id: int
    frame_id: int
    score: float
    global_score: float
    maxsim_score: float | None = None
    s3_url: str
    width: int
    height: int
    timestamp_ms: int | None = None
    best_patch_box: list[int] | None = Field(None, description="x, y, w, h of the frame's best-matching patch (reranked results)")


class SearchResponse(BaseModel):
    results: list[SearchResult]
    total: int
    query_type: Literal["text", "image", "hybrid"]
    rerank_enabled: bool
    duration_ms: float
    durations_ms: dict[str, float] = Field(default_factory=dict, description="encode, fetch, search")


class IngestItem(BaseModel):
    """One frame to ingest, as the seed named its fields."""

    model_config = ConfigDict(extra="forbid", strict=True)

    s3_url: Url
    video_id: Id
    frame_id: Id
    timestamp_ms: Id | None = None


class IngestBatch(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    items: list[IngestItem] = Field(..., min_length=1, max_length=10_000)

    @model_validator(mode="after")
    def _unique(self) -> IngestBatch:
        seen: set[tuple[int, int]] = set()
        for item in self.items:
            key = (item.video_id, item.frame_id)
            if key in seen:
                raise ValueError(f"frame {item.video_id}:{item.frame_id} is listed twice")
            seen.add(key)
        return self
