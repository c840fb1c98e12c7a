"""The run store: runs/<spec>/<run-id>/ with config, metrics.jsonl, checkpoint and provenance."""
from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path

import torch

from .errors import UserError
from .paths import code_fingerprint, digest, store_root  # noqa: F401  (store_root re-exported)


class Run:
    """One training run's directory. `done` marks a finished run; metrics.jsonl is flushed every step."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @classmethod
    def for_config(cls, root: Path, spec_id: str, variant: str, config, seed: int, scale: str) -> "Run":
        """The run of this config and seed, made by the current code (the key holds the code fingerprint)."""
        name = f"{scale}-{variant}-s{seed}-{digest({'config': config.digest(), 'code': code_fingerprint()})}"
        return cls(Path(root) / spec_id / name)

    config_file = property(lambda self: self.path / "config.json")
    metrics_file = property(lambda self: self.path / "metrics.jsonl")
    checkpoint_file = property(lambda self: self.path / "checkpoint.pt")
    done_file = property(lambda self: self.path / "DONE")

    @property
    def done(self) -> bool:
        return self.done_file.exists()

    @property
    def started(self) -> bool:
        return self.metrics_file.exists()

    def begin(self, config, seed: int, meta: dict):
        self.path.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(json.dumps({"seed": seed, **config.model_dump()}, indent=2))
        (self.path / "provenance.json").write_text(json.dumps(provenance(meta), indent=2))

    def reset(self):
        for f in (self.metrics_file, self.checkpoint_file, self.done_file):
            f.unlink(missing_ok=True)

    def metrics(self) -> list[dict]:
        if not self.metrics_file.exists():
            return []
        with self.metrics_file.open() as fh:
            return [json.loads(line) for line in fh if line.strip()]

    def truncate_metrics(self, before_step: int):
        """Keep the metric lines of steps < before_step (those a checkpoint at before_step covers)."""
        kept = [m for m in self.metrics() if m["step"] < before_step]
        tmp = self.metrics_file.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(m) + "\n" for m in kept))
        os.replace(tmp, self.metrics_file)

    def append_metrics(self, row: dict):
        with self.metrics_file.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
            fh.flush()

    def save_checkpoint(self, state: dict):
        tmp = self.checkpoint_file.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.checkpoint_file)

    def load_checkpoint(self) -> dict | None:
        if not self.checkpoint_file.exists():
            return None
        return torch.load(self.checkpoint_file, weights_only=False)

    def finish(self):
        self.done_file.write_text("done\n")


def provenance(extra: dict) -> dict:
    import accelerate
    import transformers
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        rev = None
    return {"git_revision": rev, "code_fingerprint": code_fingerprint(), "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__, "accelerate": accelerate.__version__,
            "platform": platform.platform(), "machine": platform.machine(), "processor": _cpu_model(), **extra}


def _cpu_model() -> str:
    """The CPU's model name: a reference result is bit-exact only on the CPU kind that made it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def check_resumable(run: Run, resume: bool, force: bool):
    """Decide what to do with an existing run dir; refuse to silently overwrite an interrupted run."""
    if force:
        run.reset()
        return
    if run.started and not run.done and not resume:
        last = run.metrics()[-1]["step"] if run.metrics() else -1
        raise UserError(f"run {run.path} stopped after step {last}; pass --resume to continue it or --force to restart it")
