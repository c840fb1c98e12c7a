"""Keep the memory a training step frees for the next step, instead of handing it back to the kernel.

glibc's malloc serves a block over its mmap threshold (32 MiB at most: SmolLM2-135M's tied embedding's gradients,
113 MB each) with a fresh mmap and unmaps it when freed, and returns the heap's free top past its trim threshold;
the next step faults those pages in again, zeroed by the kernel: 27,344 page faults for a 112 MB tensor.
With mmap off and the trim threshold at 2 GiB, freed blocks stay in the process. fig1 small, 24 steps, two processes
side by side on a 2-core AMD EPYC: 357.7 s -> 314.7 s, every logged number equal bit for bit, peak memory 3.67 ->
3.88 GB (docs/testbed/small.md). Where memory comes from changes no number a run computes, so this module is outside
the code fingerprint.
"""
from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # mallopt(3) parameters, malloc.h
TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: the heap's free top is returned to the kernel only past 2 GiB
TUNABLES = f"glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold={TRIM_THRESHOLD}"  # the same, read at a start
AS_GIVEN = os.environ.get("GLIBC_TUNABLES")  # the user's setting, before keep_freed_memory() writes its own


def keep_freed_memory() -> bool:
    """Serve every block from the heap and keep its free top, in this process (mallopt) and in the processes it
    starts (GLIBC_TUNABLES, which glibc reads at a process's start). Left alone where the user set GLIBC_TUNABLES
    (`GLIBC_TUNABLES= python -m replicate ...` keeps glibc's defaults) or the C library is not glibc. Returns
    whether it took effect here."""
    if not sys.platform.startswith("linux") or "GLIBC_TUNABLES" in os.environ:
        return False
    libc = ctypes.CDLL(None)
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None or not hasattr(libc, "gnu_get_libc_version"):  # musl's mallopt does nothing
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if mallopt(M_MMAP_MAX, 0) != 1 or mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) != 1:
        return False
    os.environ["GLIBC_TUNABLES"] = TUNABLES
    return True


def environment_as_given() -> dict[str, str]:
    """os.environ with GLIBC_TUNABLES as the user gave it: for a program whose memory is not ours to tune (verl,
    launched or submitted to Slurm) or must run as it would alone (another revision's command in `bench small-step
    --against`)."""
    env = dict(os.environ)
    env.pop("GLIBC_TUNABLES", None)
    if AS_GIVEN is not None:
        env["GLIBC_TUNABLES"] = AS_GIVEN
    return env
