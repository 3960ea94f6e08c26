"""Prometheus metrics. Each app has a registry of its own, so gateways sharing a process (tests,
an in-process CLI deploy) never count into each other."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE", "Metrics"]

PREFIX = "notebook_gateway"
# A thin notebook layer takes a fraction of a second; an environment with big requirements,
# many minutes.
BUILD_BUCKETS = (0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200)
LAUNCH_BUCKETS = (0.5, 1, 1.5, 2, 3, 5, 10, 20, 30, 60, 120)
JOB_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.build_seconds = Histogram(
            f"{PREFIX}_build_duration_seconds",
            "Image builds, by outcome (succeeded, failed).",
            ["outcome"],
            buckets=BUILD_BUCKETS,
            registry=registry,
        )
        self.launch_seconds = Histogram(
            f"{PREFIX}_launch_duration_seconds",
            "From starting a container to its answering through Traefik,"
            " by kind (published, user) and outcome.",
            ["kind", "outcome"],
            buckets=LAUNCH_BUCKETS,
            registry=registry,
        )
        self.job_seconds = Histogram(
            f"{PREFIX}_job_duration_seconds",
            "Jobs from start to end, by action and outcome.",
            ["action", "outcome"],
            buckets=JOB_BUCKETS,
            registry=registry,
        )
        self.jobs = Counter(
            f"{PREFIX}_jobs",
            "Finished jobs, by action and outcome.",
            ["action", "outcome"],
            registry=registry,
        )
        self.notebooks = Counter(
            f"{PREFIX}_notebook_deploys",
            "What jobs did to notebooks: built, restarted, unchanged, removed or failed.",
            ["outcome"],
            registry=registry,
        )
        self.failures = Counter(
            f"{PREFIX}_failures",
            "Failures by kind: a notebook's reason (build_failed, not_ready, ...) or a job's"
            " error code (git_error, registry_error, ...).",
            ["kind"],
            registry=registry,
        )
        self.culled = Counter(
            f"{PREFIX}_culled_servers",
            "Servers stopped by the idle culler, by reason (idle, max_age).",
            ["kind", "reason"],
            registry=registry,
        )
        self.jobs_in_progress = Gauge(
            f"{PREFIX}_jobs_in_progress", "Jobs running now.", registry=registry
        )
        self.running = Gauge(
            f"{PREFIX}_running_servers",
            "Containers that run now, by kind (published notebooks, users' servers).",
            ["kind"],
            registry=registry,
        )

        self.work_area_bytes = Gauge(
            f"{PREFIX}_work_area_bytes",
            "Bytes in each user's work area (volume), as the engine counts them: no engine"
            " limits a local volume's size, so watch this one.",
            ["volume", "user"],
            registry=registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
