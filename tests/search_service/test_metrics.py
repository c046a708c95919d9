"""``GET /metrics``: scraped before and after real traffic through the app, the counters and
histograms move by exactly what was sent; labels carry route templates, never raw paths."""

from __future__ import annotations

import json
import logging
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from resources.embedding.encoder import FrameEncoder
from search_service.logs import JsonFormatter
from search_service.server import server_config, server_settings_from_env
from tests.search_service.test_app import library, make_client, wait_ready  # noqa: F401 - the fixture

Samples = dict[tuple[str, frozenset], float]


def scrape(client: TestClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope="module")
def client(library: dict, tiny_encoder: FrameEncoder):  # noqa: F811 - library is the imported fixture
    with make_client(library, tiny_encoder, follow_interval_s=0.2) as test_client:
        wait_ready(test_client)
        yield test_client


def test_counters_and_histograms_move_with_traffic(client: TestClient) -> None:
    before = scrape(client)
    for query in ("red car", "a dog"):
        assert client.post("/search/text", json={"query": query, "top_k": 3}).status_code == 200
    assert client.post("/search/text", json={"query": ""}).status_code == 422
    assert client.get("/jobs/does-not-exist").status_code in (404, 503)
    assert client.get("/no/such/path/123").status_code == 404
    after = scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    text = {"method": "POST", "route": "/search/text"}
    assert moved("framesearch_http_requests_total", **text, status="200") == 2
    assert moved("framesearch_http_requests_total", **text, status="422") == 1
    assert moved("framesearch_http_errors_total", **text, kind="client") == 1
    assert moved("framesearch_http_request_duration_seconds_count", **text) == 3
    assert moved("framesearch_http_request_duration_seconds_sum", **text) > 0
    assert moved("framesearch_http_request_duration_seconds_bucket", **text, le="+Inf") == 3
    # Stage times come from the searches' own timers: model and index, per successful search.
    for stage in ("encode", "search"):
        assert moved("framesearch_search_stage_seconds_count", route="/search/text", stage=stage) == 2
        assert moved("framesearch_search_stage_seconds_sum", route="/search/text", stage=stage) > 0
    # Templates, not paths: the job id and the unknown path do not become labels.
    labels = {dict(key[1]).get("route") for key in after if key[0] == "framesearch_http_requests_total"}
    assert "/jobs/{job_id}" in labels and "<unmatched>" in labels
    assert not any(route and ("does-not-exist" in route or "123" in route) for route in labels)


def test_index_and_follower_gauges(client: TestClient, library: dict) -> None:
    samples = scrape(client)
    assert value(samples, "framesearch_index_ready") == 1
    assert value(samples, "framesearch_index_points") == 8  # six frames of video 1, two of video 2
    assert ("framesearch_follower_applied_total", frozenset()) in samples
    deadline = time.monotonic() + 10
    while (lag := value(scrape(client), "framesearch_follower_lag_seconds")) > 5:
        assert time.monotonic() < deadline, f"follower lag stays at {lag} s"
        time.sleep(0.1)


def test_json_log_lines() -> None:
    access = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d', ("1.2.3.4:5", "GET", "/healthz", "1.1", 200), None)
    line = json.loads(JsonFormatter().format(access))
    assert line["level"] == "INFO" and line["logger"] == "uvicorn.access" and line["status"] == 200
    assert line["path"] == "/healthz" and line["message"].startswith("1.2.3.4:5")
    config = server_config("search_service.app:app", server_settings_from_env({"LOG_FORMAT": "json"}))
    assert config.log_config["formatters"]["json"]["()"] is JsonFormatter
