"""Request and response shapes of the search API, with the seed service's field names.

Requests are validated by pydantic: a wrong type or a value out of range becomes a 422 whose
``detail`` names the field (``["body", "top_k"]``), never a 500.

JSON bodies are strict: ``true`` is not 1, ``"5"`` is not 5, ``1.5`` is not an id. An integral JSON
number (``73.0``) is the integer it equals, as JSON Schema counts it. Only the upload endpoint's
form fields and query string, which are strings by nature, are parsed into numbers.
Ids and timestamps are 0 .. 2**63 - 1 (:data:`MAX_ID`, what the index and Parquet store as int64):
a larger one would pass validation and fail every run of its video with OverflowError.

Every rule is stated where pydantic both enforces it and writes it into the JSON Schema that
``/openapi.json`` publishes (bounds, patterns, ``oneOf``/``anyOf`` for the rules across fields), so
the document says exactly what the handlers accept.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, model_validator
from pydantic.config import JsonDict

from resources.s3.urls import S3_URL_MAX_LENGTH, S3_URL_PATTERN
from resources.vector_index.fusion import AGREEMENT_SHARE, DEFAULT_ALPHA
from resources.vector_index.schema import IMAGE_ID_PATTERN, SearchFilters

MAX_ID = 2**63 - 1  # int64: video and frame ids, timestamps


def _integral(value: object) -> object:
    """An integral float (``73.0``) as the int it equals: JSON Schema's ``integer`` includes it."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


Int = Annotated[int, BeforeValidator(_integral)]
Id = Annotated[int, Field(ge=0, le=MAX_ID), BeforeValidator(_integral)]

Url = Annotated[str, Field(max_length=S3_URL_MAX_LENGTH, pattern=S3_URL_PATTERN,
                           description="s3://bucket/key, or an https S3 URL (virtual-hosted or path-style; pre-signed allowed)")]

# Blank text is refused: it must hold a character that is not white space (Python's and ECMA-262's).
# Spelled as a class so that JSON Schema validators, pydantic and Python agree on it.
_NOT_BLANK = "[^\t\n\x0b\x0c\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"
Text = Annotated[str, Field(min_length=1, max_length=2_000, pattern=_NOT_BLANK)]


# What a pattern mismatch means, said in words (request_bodies puts these in 422 details).
PATTERN_MESSAGES = {
    S3_URL_PATTERN: "not an S3 URL this service reads: s3://bucket/key or an https S3 URL of an object "
                    "(no '.' or '..' segments, encoded '.', '/' or '\\', control characters or surrounding spaces)",
    _NOT_BLANK: "is blank",
}


def exactly_one(*names: str) -> JsonDict:
    """JSON Schema: exactly one of the fields ``names`` is given and not null (see :func:`check_exactly_one`)."""
    return {"oneOf": [{"required": [name], "properties": {name: {"not": {"type": "null"}}}} for name in names]}


def check_exactly_one(model: BaseModel, names: tuple[str, ...]) -> None:
    """The rule :func:`exactly_one` states, enforced."""
    if sum(getattr(model, name) is not None for name in names) != 1:
        raise ValueError(f"give exactly one of {' and '.join(names)}")


IMAGE_QUERY_FIELDS = ("s3_url", "image_id")
HYBRID_IMAGE_FIELDS = ("image_s3_url", "image_id")
HYBRID_WEIGHTS = ("text_weight", "image_weight")
# JSON Schema: not both weights given as 0. A weight left out is its default, 0.5, and "properties"
# holds only for fields that are present, so "one of them absent or above 0" reads without `not`
# (which Schemathesis 4.32 cannot evaluate beside a multipart file part).
NOT_BOTH_WEIGHTS_ZERO: JsonDict = {"anyOf": [{"properties": {name: {"exclusiveMinimum": 0}}} for name in HYBRID_WEIGHTS]}


MAX_VIDEO_IDS = 10_000


class FilterFields(BaseModel):
    """The seed's filters; all given conditions must hold."""

    model_config = ConfigDict(extra="forbid", strict=True)

    video_ids: list[Id] | None = Field(None, min_length=1, max_length=MAX_VIDEO_IDS, description="frames of any of these videos")
    # Inclusive bounds. A minimum above its maximum is an empty range: it matches no frame (JSON
    # Schema cannot compare two fields, so the API does not refuse it).
    frame_id_min: Id | None = None
    frame_id_max: Id | None = None
    timestamp_min_ms: Id | None = None
    timestamp_max_ms: Id | None = None

    def filters(self) -> SearchFilters:
        return SearchFilters(
            video_ids=tuple(self.video_ids) if self.video_ids is not None else None,
            frame_id_min=self.frame_id_min,
            frame_id_max=self.frame_id_max,
            timestamp_min_ms=self.timestamp_min_ms,
            timestamp_max_ms=self.timestamp_max_ms,
        )


class RankFields(FilterFields):
    top_k: Int = Field(10, ge=1, le=100, description="number of results (the frames moments are made of, with group_by=moments)")
    rerank: bool = Field(False, description="patch-level MaxSim rerank of the global candidates")
    rerank_alpha: float = Field(DEFAULT_ALPHA, ge=0.0, le=1.0, description=f"weight of the global score against the patches: score = 2 * max(alpha * global, (1 - alpha) * maxsim) + {AGREEMENT_SHARE:.0%} of their weighted sum; {DEFAULT_ALPHA} = the frame's best view (the whole frame or a window), 1 = global only, 0 = patches only")
    # Moments (search_service.moments): off unless group_by is "moments".
    group_by: Literal["frames", "moments"] = Field(
        "frames", description='"moments": also merge each video\'s adjacent hits among the top_k into time segments (response field "moments")'
    )
    moment_gap_ms: Int = Field(2_000, ge=0, le=3_600_000, description="hits of a video at most this far apart in time form one moment")
    moments_per_video: Int = Field(3, ge=1, le=100, description="at most this many moments per video (its best ones)")


class TextSearch(RankFields):
    query: Text = Field(..., description="what to look for (not blank)")


ImageId = Annotated[str, Field(min_length=3, max_length=40, pattern=IMAGE_ID_PATTERN, description='an indexed frame, "<video_id>:<frame_id>" (ASCII digits, no leading zeros)')]


class ImageSearch(RankFields):
    model_config = ConfigDict(json_schema_extra=exactly_one(*IMAGE_QUERY_FIELDS))

    s3_url: Url | None = Field(None, description="the query image: s3:// or https S3 URL (pre-signed allowed)")
    image_id: ImageId | None = Field(None, description='"more like this": an indexed frame as the query (left out of the results); instead of s3_url')

    @model_validator(mode="after")
    def _one_query(self) -> ImageSearch:
        check_exactly_one(self, IMAGE_QUERY_FIELDS)
        return self


class HybridFields(RankFields):
    text_query: Text
    text_weight: float = Field(0.5, ge=0.0, le=1.0)
    image_weight: float = Field(0.5, ge=0.0, le=1.0, description="not 0 when text_weight is 0")

    @model_validator(mode="after")
    def _some_weight(self) -> HybridFields:
        if self.text_weight + self.image_weight == 0:
            raise ValueError("text_weight and image_weight are both 0")
        return self


class HybridSearch(HybridFields):
    model_config = ConfigDict(json_schema_extra={"allOf": [exactly_one(*HYBRID_IMAGE_FIELDS), NOT_BOTH_WEIGHTS_ZERO]})

    image_s3_url: Url | None = Field(None, description="the image part: s3:// or https S3 URL (pre-signed allowed)")
    image_id: ImageId | None = Field(None, description="the image part as an indexed frame; instead of image_s3_url")

    @model_validator(mode="after")
    def _one_image(self) -> HybridSearch:
        check_exactly_one(self, HYBRID_IMAGE_FIELDS)
        return self


class HybridUpload(HybridFields):
    """Parameters of ``/search/hybrid/upload`` (form fields or query string, parsed from text)."""

    model_config = ConfigDict(strict=False, json_schema_extra=NOT_BOTH_WEIGHTS_ZERO)


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

    # A frame listed twice is ingested once, as its last item says (JSON Schema cannot state
    # "unique by video_id and frame_id", so the API does not refuse it).
    items: list[IngestItem] = Field(..., min_length=1, max_length=10_000)


# -- Query parameters (validated from text: lax, so "73" and "73.0" are 73) --------------------------

_LAX = ConfigDict(strict=False)
FRAME_SIZE = TypeAdapter(Annotated[int, Field(ge=16, le=4096)], config=_LAX)
# x,y,w,h in frame pixels: non-negative integers of at most 6 digits, width and height positive.
BOX_PATTERN = r"^[0-9]{1,6},[0-9]{1,6},[1-9][0-9]{0,5},[1-9][0-9]{0,5}$"
BOX = TypeAdapter(Annotated[str, Field(pattern=BOX_PATTERN)], config=_LAX)
JOBS_LIMIT = TypeAdapter(Annotated[int, Field(ge=1, le=200)], config=_LAX)
JOB_STATUS = TypeAdapter(Literal["pending", "running", "completed", "failed"], config=_LAX)
