"""Where things live: the project home (runs/ and results/), the specs, the committed references.

The home is $REPLICATE_HOME, else the current directory: `runs/` (the run store) and `results/` sit under it,
wherever the package was installed from. Specs ship inside the package (`replicate/experiments`, mapped from the
checkout's `experiments/`); references (`figures/`) exist only in a source checkout.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
REPO = PACKAGE.parent  # the source checkout (meaningful only when figures/ sits beside the package)


def world_size() -> int:
    """Processes of this job: `accelerate launch` (torchrun) sets WORLD_SIZE; 1 otherwise."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Rank 0 of a multi-process launch (or the only process): the one that writes results."""
    return int(os.environ.get("RANK", "0")) == 0


def home() -> Path:
    return Path(os.environ.get("REPLICATE_HOME") or ".").expanduser()


def store_root(root: str | Path | None = None) -> Path:
    """The run store: --store, else $REPLICATE_STORE, else <home>/runs (a file there is a one-line error)."""
    path = Path(root or os.environ.get("REPLICATE_STORE") or home() / "runs")
    if path.exists() and not path.is_dir():
        from .errors import UserError
        what = "--store" if root else "$REPLICATE_STORE" if os.environ.get("REPLICATE_STORE") else "the run store"
        raise UserError(f"{what} {path} is a file, not a directory; point it at a directory (created if missing)")
    return path


def results_root() -> Path:
    return home() / "results"


def experiments_dir() -> Path:
    """The specs: the checkout's experiments/ when running from source, else the installed package data."""
    source = REPO / "experiments"
    return source if source.is_dir() else PACKAGE / "experiments"


def reference_dir() -> Path:
    """Committed reference results (figures/ of the source checkout); may not exist after a plain install."""
    return REPO / "figures"


def digest(payload, n: int = 10) -> str:
    """A short stable hash of a JSON-able payload (run keys, warm-up keys, study keys)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:n]



# What decides a run's numbers, declared per top-level entry (module or package) of each source root. Counted
# entries are hashed into the code fingerprint, part of every run key: changing them retrains. The others only
# load specs, present, compare or dispatch results (whatever of a spec matters is in the config, already keyed).
# An entry in neither set is counted (the safe side), and tests/test_layout.py fails until it is declared.
FINGERPRINTED = {"replicate": {"runners", "engines", "algorithms", "tasks", "seeds.py", "store.py"},
                 "evaluators": {"__init__.py", "math.py", "code.py", "_sandbox_harness.py", "_jail.py"}}
NOT_FINGERPRINTED = {"replicate": {"__init__.py", "__main__.py", "allocator.py", "cli.py", "errors.py", "paths.py",
                                   "registry.py", "experiment.py", "benchmarks.py", "summary.py", "config.py", "specs",
                                   "analysis", "report", "bench", "backends"},
                     "evaluators": {"lmeval"}}
SOURCE_ROOTS = {"replicate": PACKAGE, "evaluators": PACKAGE.parent / "evaluators"}


def fingerprinted_files() -> list[tuple[str, Path]]:
    """(root-relative name, path) of every source file the code fingerprint hashes, in a stable order."""
    out = []
    for name, root in SOURCE_ROOTS.items():
        for f in sorted(root.rglob("*.py")):
            rel = f.relative_to(root)
            if rel.parts[0] not in NOT_FINGERPRINTED[name]:
                out.append((str(rel), f))
    return out


@functools.lru_cache(maxsize=None)
def code_fingerprint() -> str:
    """A hash of the code that produces runs (FINGERPRINTED above) plus the torch and transformers versions. Part of
    every run and warm-up key, so a run of other code is retrained, not reused."""
    import torch
    import transformers
    h = hashlib.sha256(f"torch {torch.__version__} transformers {transformers.__version__}".encode())
    for rel, f in fingerprinted_files():
        h.update(rel.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:10]


def ensure_writable(out: Path, what: str) -> list[Path]:
    """Create an output directory before any work, or refuse in one line naming `what` (e.g. "--out"); returns
    the directories it created, deepest first, so a caller that fails later can remove them again."""
    from .errors import UserError
    created = [d for d in [out, *out.parents] if not os.path.lexists(d)]  # lexists: never raises (no permission)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        there = next(d for d in [out, *out.parents] if os.path.lexists(d))
        name = "it" if there == out else str(there)
        if os.path.islink(there) and not os.path.exists(there):
            reason = f"{name} is a broken symlink"
        elif not os.path.isdir(there):
            reason = f"{name} is a file, not a folder"
        elif isinstance(exc, FileNotFoundError):  # e.g. /proc: it exists, but takes no new files or folders
            reason = f"{name} takes no new files"
        raise UserError(f"cannot write {what} {out}: {reason}; choose a writable directory") from None
    return created
