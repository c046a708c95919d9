"""Reading requests: a JSON object validated by a pydantic model, and query parameters validated by
type adapters, with the client's mistakes answered as :class:`~search_service.errors.HTTPProblem`
(400 not a JSON object, 422 bad fields)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.requests import Request

from search_service.errors import HTTPProblem
from search_service.schemas import PATTERN_MESSAGES


def _message(error: Any) -> str:
    """pydantic's message, or for a pattern mismatch what the pattern means."""
    pattern = (error.get("ctx") or {}).get("pattern")
    return PATTERN_MESSAGES.get(pattern, error["msg"]) if pattern else error["msg"]


def validate_body(model: type[BaseModel], data: Any) -> Any:
    """``data`` as ``model``, or a 422 whose detail lists each bad field under ``body``."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [
            {"loc": ["body", *map(str, e["loc"])], "msg": _message(e), "type": e["type"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise HTTPProblem(422, errors) from None


async def json_body(request: Request, model: type[BaseModel]) -> Any:
    """The request's JSON object as ``model``: 400 for anything that is not a JSON object, 422 for
    bad fields."""
    raw = await request.body()  # at most MAX_JSON_BYTES: the RequestGuard refuses more while it arrives
    try:
        data = json.loads(raw) if raw else None
    except RecursionError:
        # json.loads recurses once per nesting level: "[[[[..." 100k deep blows the stack.
        raise HTTPProblem(400, "request body is not valid JSON: nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise HTTPProblem(400, f"request body is not valid JSON: {exc}") from None
    except UnicodeDecodeError:
        raise HTTPProblem(400, "request body is not valid JSON: not UTF-8 text") from None
    except ValueError:
        # Python refuses int literals over 4,300 digits (sys.get_int_max_str_digits) with a plain
        # ValueError; no field takes a number that long.
        raise HTTPProblem(400, "request body is not valid JSON: a number is too long") from None
    if not isinstance(data, dict):
        raise HTTPProblem(400, "request body must be a JSON object")
    return validate_body(model, data)


def query_param(request: Request, name: str, adapter: TypeAdapter[Any]) -> Any:
    """Query parameter ``name`` validated by ``adapter`` (the same one the OpenAPI document
    describes it with), or None when it is absent; 422 naming it when it is invalid."""
    text = request.query_params.get(name)
    if text is None:
        return None
    try:
        return adapter.validate_python(text)
    except ValidationError as exc:
        msg = "; ".join(_message(e) for e in exc.errors(include_url=False, include_input=False))
        raise HTTPProblem(422, [{"loc": ["query", name], "msg": msg, "type": exc.errors()[0]["type"]}]) from None
