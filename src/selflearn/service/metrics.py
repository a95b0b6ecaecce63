"""Prometheus metrics of one service instance (its own registry, so several apps in one process,
as in tests, do not collide)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("selflearn_rewrite_requests", "Rewrite requests by the layer that answered (none: passed through).",
                                ["source"], registry=self.registry)
        self.latency = Histogram("selflearn_rewrite_seconds", "Time to decide one rewrite, inside the handler.", registry=self.registry,
                                 buckets=(0.001, 0.002, 0.004, 0.006, 0.008, 0.012, 0.02, 0.05, 0.1, 0.5))
        self.turns = Counter("selflearn_turns_observed", "Logged turns fed to the personal layer.", registry=self.registry)
        self.errors = Counter("selflearn_request_errors", "Requests refused, by kind (OverloadedError: shed with 503).", ["kind"], registry=self.registry)
        self.queued = Gauge("selflearn_queued_requests", "Requests waiting for (or running on) the owner thread.", registry=self.registry)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
