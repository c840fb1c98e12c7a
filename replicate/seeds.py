"""Every generator derives from the run seed: one independent seed per use (warm-up, eval, probe, loss, ...)."""
from __future__ import annotations

import hashlib


def derive_seed(seed: int, purpose: str, step: int = 0) -> int:
    """An independent seed for one use of a run seed (part of the code fingerprint: it decides every number)."""
    return int(hashlib.sha256(f"{seed}:{purpose}:{step}".encode()).hexdigest()[:15], 16)
