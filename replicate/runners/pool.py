"""Worker processes shared by the runners: how many train at once."""
from __future__ import annotations

import os


def parallel_workers(pending) -> int:
    """How many processes train at once: $REPLICATE_WORKERS, else one per CPU core (at most one per seed) for
    tiny models on a CPU-only machine outside `accelerate launch`, else 1."""
    from replicate.paths import world_size
    if world_size() > 1:  # under `accelerate launch` the processes share each run; no pool on top
        return 1
    if os.environ.get("REPLICATE_WORKERS"):
        return max(1, int(os.environ["REPLICATE_WORKERS"]))
    import torch
    if torch.cuda.is_available():
        return 1
    if not pending or any(c.model.kind != "tiny" for _, c, _, _ in pending):
        return 1
    return max(1, min(os.cpu_count() or 1, len({s for _, _, s, _ in pending})))
