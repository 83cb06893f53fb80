"""Ray session handling: attach to a cluster (``ray job submit``, ``RAY_ADDRESS``, config) or start
the embedded local default."""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator

import ray

from rayeval.config import RayConfig


@contextlib.contextmanager
def ray_session(cfg: RayConfig) -> Iterator[dict]:
    """Initialise Ray for one job and shut it down afterwards if this call started it.

    Attaches when ``ray.address`` is configured or ``RAY_ADDRESS`` is set (inside a job
    submitted with ``ray job submit`` it is); otherwise starts a local, dashboard-less Ray with
    ``ray.num_cpus`` CPUs (default: all). Yields a dict describing the cluster (address, CPUs).
    """
    started = False
    if not ray.is_initialized():
        address = cfg.address or os.environ.get("RAY_ADDRESS")
        kwargs = dict(logging_level=logging.WARNING, configure_logging=True,
                      ignore_reinit_error=True)
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(address="local", num_cpus=cfg.num_cpus, include_dashboard=False, **kwargs)
        started = True
    try:
        res = ray.cluster_resources()
        yield {"address": ray.get_runtime_context().gcs_address, "cpus": res.get("CPU", 0)}
    finally:
        if started:
            ray.shutdown()
