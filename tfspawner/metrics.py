"""Prometheus gauges, served by the hub's own /hub/metrics."""

from __future__ import annotations

from prometheus_client import Gauge

from .gpupool import GPUPool

GPUS_TOTAL = Gauge("tfspawner_gpus_total", "GPUs in the TFSpawner pool")
GPUS_IN_USE = Gauge("tfspawner_gpus_in_use", "GPUs held by running servers")
GPUS_IN_USE_BY_PROFILE = Gauge(
    "tfspawner_gpus_in_use_by_profile", "GPUs held by running servers, per profile", ["profile"]
)


def update(pool: GPUPool) -> None:
    GPUS_TOTAL.set(pool.total)
    by_profile = pool.in_use_by_profile()
    GPUS_IN_USE.set(sum(by_profile.values()))
    GPUS_IN_USE_BY_PROFILE.clear()
    for profile, count in by_profile.items():
        GPUS_IN_USE_BY_PROFILE.labels(profile=profile or "none").set(count)
