"""Connecting to Ray: the cluster a job was submitted to, or a private local Ray for the embedded defaults and tests.

This machine (and many laptops) is shared, so a local Ray gets its own `_temp_dir` and a small object store, and the
code only ever shuts down the Ray it started itself (never `ray stop`, which kills every Ray on the host).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_LOCAL_OBJECT_STORE_BYTES = 1 << 30  # 1 GiB: plenty for the sample corpus; bounded on shared machines


def local_temp_dir() -> str:
    """A short per-user temp dir for a private local Ray (AF_UNIX socket paths must stay under ~107 chars)."""
    base = Path(os.environ.get("VIDTOK_RAY_TMP", Path(tempfile.gettempdir()) / f"vtray-{os.getuid()}"))
    base.mkdir(parents=True, exist_ok=True)
    return tempfile.mkdtemp(prefix="r", dir=base)


def init_ray(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    object_store_memory: int | None = None,
    temp_dir: str | None = None,
    runtime_env: dict | None = None,
) -> bool:
    """Connect to Ray; returns True if this call started a private local Ray (the caller shuts it down).

    address: None -> `RAY_ADDRESS` if set (a job submitted with `ray job submit` has it), else start a local Ray.
             "local" forces a new local Ray; anything else ("auto", "ray://host:10001", "host:6379") connects.
    """
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    if address != "local":
        log.info("connecting to Ray at %s", address)
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=True)
        return False
    temp_dir = temp_dir or local_temp_dir()
    log.info("starting a private local Ray (temp dir %s)", temp_dir)
    ray.init(
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        object_store_memory=object_store_memory or DEFAULT_LOCAL_OBJECT_STORE_BYTES,
        include_dashboard=False,
        _temp_dir=temp_dir,
        runtime_env=runtime_env,
    )
    return True
