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



# Modules that only present, compare or dispatch results: changing them never changes what a run computes.
PRESENTATION = {"cli.py", "__main__.py", "report.py", "figures.py", "claims.py", "check.py", "docs.py", "bench.py",
                "bench_core.py", "bench_rl.py", "benchmarks.py", "experiment.py", "paths.py", "errors.py", "backends",
                "lmeval", "analysis/__init__.py", "analysis/collect.py", "analysis/control.py", "analysis/dast.py",
                "analysis/dynamics.py", "analysis/fits.py", "analysis/predict.py", "panels_predict.py",
                "pool.py", "compare.py", "compare_plot.py", "report_html.py"}  # analysis/lemma.py makes lemma_exact's rows: counted


@functools.lru_cache(maxsize=None)
def code_fingerprint() -> str:
    """A hash of the code that produces runs: the sources of replicate/ and evaluators/ that affect training
    (every module but the presentation ones), plus the torch and transformers versions. Part of every run and
    warm-up key, so a run of other code is retrained, not reused."""
    import torch
    import transformers
    h = hashlib.sha256(f"torch {torch.__version__} transformers {transformers.__version__}".encode())
    for root in (PACKAGE, PACKAGE.parent / "evaluators"):
        for f in sorted(root.rglob("*.py")):
            rel = f.relative_to(root)
            if not PRESENTATION & {rel.parts[0], str(rel)}:
                h.update(str(rel).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:10]


def ensure_writable(out: Path, what: str) -> list[Path]:
    """Create an output directory before any work, or refuse in one line naming `what` (e.g. "--out"); returns
    the directories it created, deepest first, so a caller that fails later can remove them again."""
    from .errors import UserError
    created = [d for d in [out, *out.parents] if not d.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write {what} {out}: {exc.strerror or exc}; choose a writable directory") from None
    return created
