"""Prometheus metrics of the search service, served at ``GET /metrics`` (prometheus-client).

What an operator of a search service watches, per endpoint and per stage:

* ``framesearch_http_requests_total{method,route,status}`` and
  ``framesearch_http_request_duration_seconds{method,route}`` (a histogram), counted by
  :class:`MetricsMiddleware` for every request, refused ones included. Labels are bounded:
  ``route`` is the matched route's template (``<unmatched>`` otherwise) and ``method`` one of
  :data:`KNOWN_METHODS` or ``other``, so no client can grow the label set;
* ``framesearch_http_errors_total{method,route,kind}``: ``kind`` is ``client`` (4xx) or
  ``server`` (5xx, and requests that raised before answering);
* ``framesearch_search_stage_seconds{route,stage}``: the stages a search reports in its
  ``durations_ms`` (``encode`` = model, ``search`` = index, ``decode``, ``fetch``);
* at scrape time (:class:`StateCollector`): ``framesearch_index_points``, ``framesearch_index_ready``
  and, where this process follows the checkpoints (embedded index), ``framesearch_follower_lag_seconds``
  (seconds since the follower last saw every published checkpoint applied),
  ``framesearch_follower_applied_total`` and ``framesearch_follower_errors``.

``route`` is the route's template (``/jobs/{job_id}``), never the raw path: a label per distinct
path would let any client grow the series without bound. Paths no route matches share
``<unmatched>``. Each app owns its :class:`~prometheus_client.CollectorRegistry`, so several apps
in one process (tests) do not mix their counts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED = "<unmatched>"
STAGES_KEY = "framesearch.stage_ms"  # where a route leaves its stage timings in the request scope
# Request latency: from a health check (~1 ms) to a cold patch rerank on a CPU (seconds).
LATENCY_BUCKETS = (0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServiceMetrics:
    """The service's metric families, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "framesearch_http_requests", "HTTP requests answered, by route template and status.",
            ("method", "route", "status"), registry=self.registry,
        )
        self.errors = Counter(
            "framesearch_http_errors", "HTTP requests answered 4xx (client) or 5xx (server).",
            ("method", "route", "kind"), registry=self.registry,
        )
        self.latency = Histogram(
            "framesearch_http_request_duration_seconds", "Time from request to the end of the response.",
            ("method", "route"), buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.stages = Histogram(
            "framesearch_search_stage_seconds", "Time of one stage of a search (encode = model, search = index).",
            ("route", "stage"), buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self._state_collector: StateCollector | None = None

    def watch(self, state: Callable[[], Any]) -> None:
        """Report the index and follower of the service state ``state()`` at each scrape."""
        if self._state_collector is None:
            self._state_collector = StateCollector(state)
            self.registry.register(self._state_collector)
        else:
            self._state_collector.state = state

    def observe(self, method: str, route: str, status: int, seconds: float, stage_ms: Mapping[str, float] | None) -> None:
        """Count one answered request."""
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)
        if status >= 400:
            self.errors.labels(method, route, "server" if status >= 500 else "client").inc()
        for stage, ms in (stage_ms or {}).items():
            self.stages.labels(route, stage).observe(ms / 1000.0)

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The registry in the format the scraper asked for (text or OpenMetrics)."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


class StateCollector(Collector):
    """Gauges read from the running service at scrape time (``state()`` -> ServiceState or None)."""

    def __init__(self, state: Callable[[], Any]) -> None:
        self.state = state

    def collect(self) -> Iterator[Any]:
        state = self.state()
        index = getattr(state, "index", None)
        ready = GaugeMetricFamily("framesearch_index_ready", "1 when the index is open and searches are served.")
        ready.add_metric([], 1.0 if index is not None else 0.0)
        yield ready
        if index is not None:
            points = GaugeMetricFamily("framesearch_index_points", "Points (frames) in the vector index.")
            try:
                points.add_metric([], float(index.count()))
                yield points
            except Exception:  # noqa: BLE001 - a scrape must not fail because the index is closing
                pass
        follower = getattr(state, "follower", None)
        if follower is None:
            return
        lag = GaugeMetricFamily(
            "framesearch_follower_lag_seconds",
            "Seconds since the checkpoint follower last found every published checkpoint applied.",
        )
        lag.add_metric([], follower.lag_seconds())
        yield lag
        applied = CounterMetricFamily("framesearch_follower_applied", "Checkpoints the follower applied since start.")
        applied.add_metric([], float(follower.applied))
        yield applied
        errors = GaugeMetricFamily("framesearch_follower_errors", "Videos whose checkpoint the follower could not apply.")
        errors.add_metric([], float(len(follower.errors)))
        yield errors


# HTTP methods counted under their own name; any other method a client sends is counted as
# "other", so clients cannot grow the label set (and the scrape, and this process's memory).
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "other"


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else OTHER_METHOD


def route_template(scope: Scope) -> str:
    """The template of the route ``scope`` is for, or ``<unmatched>``."""
    app = scope.get("app")
    for route in getattr(getattr(app, "router", None), "routes", ()):
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            return getattr(route, "path", UNMATCHED)
    return UNMATCHED


def record_stages(request: Request, stages: Mapping[str, float]) -> None:
    """Hand a search's stage timings (ms) to :class:`MetricsMiddleware` for this request."""
    request.scope.setdefault(STAGES_KEY, {}).update(stages)


class MetricsMiddleware:
    """Counts and times every HTTP request; outermost, so refusals by other middleware count too."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client sees if the app raises before it answers

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self.metrics.observe(
                method_label(scope["method"]), route_template(scope), status, time.perf_counter() - started, scope.get(STAGES_KEY)
            )


def metrics_endpoint(metrics: ServiceMetrics) -> Callable[[Request], Any]:
    """The ``GET /metrics`` handler; collection runs in a worker thread (it counts index points)."""

    async def metrics_route(request: Request) -> Response:
        body, content_type = await run_in_threadpool(metrics.exposition, request.headers.get("accept"))
        return Response(body, media_type=content_type)

    return metrics_route
