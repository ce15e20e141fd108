"""Prometheus metrics of one signoff process (exposed at ``GET /metrics``)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_MAX_CHILDREN = 1024


class Metrics:
    """Every metric lives in its own registry so several apps can live in one process."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "signoff_requests", "Tool-call requests evaluated", ["tier", "status"], registry=r
        )
        self.decisions = Counter(
            "signoff_decisions", "Final decisions by status", ["status"], registry=r
        )
        self.votes = Counter("signoff_votes", "Human votes", ["platform", "verdict"], registry=r)
        self.refusals = Counter(
            "signoff_refusals", "Refused decision attempts", ["platform", "reason"], registry=r
        )
        self.channel_errors = Counter(
            "signoff_channel_errors", "Failed channel deliveries", ["platform"], registry=r
        )
        self.pages = Counter("signoff_pages", "Pages sent", ["result"], registry=r)
        self.rate_limited = Counter(
            "signoff_rate_limited", "Requests over a rate limit", registry=r
        )
        self.http = Histogram(
            "signoff_http_request_seconds",
            "HTTP request handling time",
            ["route", "method"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5, 60),
            registry=r,
        )
        self.pending = Gauge("signoff_waiters", "Long-polls currently waiting", registry=r)
        self.policy_reload_failures = Counter(
            "signoff_policy_reload_failures",
            "Policy reloads refused (the previous policy stayed in force)",
            ["reason"],
            registry=r,
        )
        self._http_children: dict[tuple[str, str], Any] = {}
        self._request_children: dict[tuple[str, str], Any] = {}
        self._decision_children: dict[str, Any] = {}

    def count_request(self, tier: str, status: str) -> None:
        """Count one evaluated request (``signoff_requests``; the child is looked up once:
        tiers and statuses are a closed set)."""
        key = (tier, status)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(tier, status)
        child.inc()

    def count_decision(self, status: str) -> None:
        """Count one final decision (``signoff_decisions``)."""
        child = self._decision_children.get(status)
        if child is None:
            child = self._decision_children[status] = self.decisions.labels(status)
        child.inc()

    def observe_http(self, route: str, method: str, seconds: float) -> None:
        """Record one HTTP request's handling time (the labelled child is looked up once)."""
        key = (route, method)
        child = self._http_children.get(key)
        if child is None:
            child = self.http.labels(route, method)
            if len(self._http_children) < _MAX_CHILDREN:  # methods come from clients
                self._http_children[key] = child
        child.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
