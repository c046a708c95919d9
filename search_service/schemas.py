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

from resources.vector_index.fusion import AGREEMENT_SHARE, DEFAULT_ALPHA
from resources.vector_index.schema import IMAGE_ID_PATTERN, SearchFilters

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
    top_k: int = Field(10, ge=1, le=100, description="number of results (the frames moments are made of, with group_by=moments)")
    rerank: bool = Field(False, description="patch-level MaxSim rerank of the global candidates")
    rerank_alpha: float = Field(DEFAULT_ALPHA, ge=0.0, le=1.0, description=f"weight of the global score against the patches: score = 2 * max(alpha * global, (1 - alpha) * maxsim) + {AGREEMENT_SHARE:.0%} of their weighted sum; {DEFAULT_ALPHA} = the frame's best view (the whole frame or a window), 1 = global only, 0 = patches only")
    # Moments (search_service.moments): off unless group_by is "moments".
    group_by: Literal["frames", "moments"] = Field(
        "frames", description='"moments": also merge each video\'s adjacent hits among the top_k into time segments (response field "moments")'
    )
    moment_gap_ms: int = Field(2_000, ge=0, le=3_600_000, description="hits of a video at most this far apart in time form one moment")
    moments_per_video: int = Field(3, ge=1, le=100, description="at most this many moments per video (its best ones)")


class TextSearch(RankFields):
    query: str = Field(..., min_length=1, max_length=2_000, description="what to look for")

    @model_validator(mode="after")
    def _not_blank(self) -> TextSearch:
        if not self.query.strip():
            raise ValueError("query is blank")
        return self


ImageId = Annotated[str, Field(min_length=3, max_length=40, pattern=IMAGE_ID_PATTERN, description='an indexed frame, "<video_id>:<frame_id>" (ASCII digits, no leading zeros)')]


class ImageSearch(RankFields):
    s3_url: Url | None = Field(None, description="s3:// or https S3 URL (pre-signed allowed)")
    image_id: ImageId | None = Field(None, description='"more like this": an indexed frame as the query (left out of the results); instead of s3_url')

    @model_validator(mode="after")
    def _one_query(self) -> ImageSearch:
        if (self.s3_url is None) == (self.image_id is None):
            raise ValueError("give exactly one of s3_url and image_id")
        return self


class HybridFields(RankFields):
    text_query: str = Field(..., min_length=1, max_length=2_000)
    text_weight: float = Field(0.5, ge=0.0, le=1.0)
    image_weight: float = Field(0.5, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _some_weight(self) -> HybridFields:
        if not self.text_query.strip():
            raise ValueError("text_query is blank")
        if self.text_weight + self.image_weight == 0:
            raise ValueError("text_weight and image_weight are both 0")
        return self


class HybridSearch(HybridFields):
    image_s3_url: Url | None = Field(None, description="the image part: s3:// or https S3 URL (pre-signed allowed)")
    image_id: ImageId | None = Field(None, description="the image part as an indexed frame; instead of image_s3_url")

    @model_validator(mode="after")
    def _one_image(self) -> HybridSearch:
        if (self.image_s3_url is None) == (self.image_id is None):
            raise ValueError("give exactly one of image_s3_url and image_id")
        return self


class HybridUpload(HybridFields):
    """Parameters of ``/search/hybrid/upload`` (form fields or query string, parsed from text)."""

    model_config = ConfigDict(strict=False)


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
    span_end_ms: int | None = Field(None, description="end of the time this frame stands for (near-duplicates dropped after it), where the index records it; moments run to it")
    thumbnail_url: str | None = Field(None, description="relative URL of the frame's picture (GET /frames/{image_id}); add &box=x,y,w,h to draw a box")


class MomentFrame(BaseModel):
    image_id: str
    frame_id: int
    timestamp_ms: int | None
    score: float


class Moment(BaseModel):
    """A video's adjacent hits merged into one time segment (``search_service.moments``)."""

    video_id: int
    start_ms: int | None = Field(description="timestamp of the moment's first hit (None: the frame has no timestamp)")
    end_ms: int | None = Field(description="timestamp of its last hit, or the end of the span that hit stands for")
    score: float = Field(description="the best frame's score")
    best_image_id: str
    best: SearchResult = Field(description="the moment's best frame, as in results")
    frames: list[MomentFrame] = Field(description="every hit inside the moment, in time order")


class SearchResponse(BaseModel):
    results: list[SearchResult]
    total: int
    query_type: Literal["text", "image", "hybrid"]
    rerank_enabled: bool
    duration_ms: float
    durations_ms: dict[str, float] = Field(default_factory=dict, description="encode, fetch, search")
    moments: list[Moment] | None = Field(None, description="with group_by=moments: the results merged into moments, best first")


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
