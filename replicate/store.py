"""The run store: runs/<spec>/<run-id>/ with config, metrics.jsonl, checkpoint and provenance."""
from __future__ import annotations

import json
import os
import shutil
import platform
import subprocess
from pathlib import Path

import torch

from replicate.errors import UserError
from replicate.paths import code_fingerprint, digest, store_root  # noqa: F401  (store_root re-exported)


class Run:
    """One training run's directory. `done` marks a finished run; metrics.jsonl is flushed every step."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @classmethod
    def for_config(cls, root: Path, spec_id: str, variant: str, config, seed: int, scale: str) -> "Run":
        """The RL run of this config and seed, made by the current code."""
        return cls.keyed(root, spec_id, scale, variant, seed, {"config": config.digest()})

    @classmethod
    def keyed(cls, root: Path, spec_id: str, scale: str, name: str, seed: int, payload: dict) -> "Run":
        """The one run key of every runner: <root>/<spec>/<scale>-<name>-s<seed>-<digest of payload + code>, so a
        run of other code or other settings never reuses this one's directory."""
        return cls(Path(root) / spec_id / f"{scale}-{name}-s{seed}-{digest({**payload, 'code': code_fingerprint()})}")

    config_file = property(lambda self: self.path / "config.json")
    metrics_file = property(lambda self: self.path / "metrics.jsonl")
    checkpoint_file = property(lambda self: self.path / "checkpoint.pt")
    final_file = property(lambda self: self.path / "final.pt")  # a finished run's last state (for --steps N)
    done_file = property(lambda self: self.path / "DONE")

    def made_by_this_code(self) -> bool:
        """Whether this run's provenance names the current code fingerprint."""
        try:
            return json.loads((self.path / "provenance.json").read_text()).get("code_fingerprint") == code_fingerprint()
        except (OSError, ValueError):
            return False

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
        for f in (self.metrics_file, self.checkpoint_file, self.final_file, self.done_file):
            f.unlink(missing_ok=True)
        shutil.rmtree(self.path / "model", ignore_errors=True)  # no old weights beside new metrics

    def metrics(self, torn_ok: bool = False) -> list[dict]:
        """The metric rows. A line that is not JSON is a UserError naming --force, except (torn_ok) an
        unterminated last line, which a kill mid-write leaves behind: it is dropped."""
        if not self.metrics_file.exists():
            return []
        lines = self.metrics_file.read_text().split("\n")
        rows = []
        for i, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                if torn_ok and i == len(lines):  # no newline after it: the write never finished
                    break
                raise UserError(f"{self.metrics_file} line {i} is not JSON (corrupt run); pass --force to retrain it") from None
        return rows

    def truncate_metrics(self, before_step: int):
        """Keep the metric lines of steps < before_step (those a checkpoint at before_step covers)."""
        kept = [m for m in self.metrics(torn_ok=True) if m["step"] < before_step]
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

    def save_final(self, state: dict):
        """Keep a finished run's last state (model, optimizer, RNG) so `--steps N --resume` can extend it; not with
        REPLICATE_KEEP_FINAL=0 (`--no-final-state`: disk over extension, which then starts from step 0)."""
        if os.environ.get("REPLICATE_KEEP_FINAL") == "0":
            return
        tmp = self.final_file.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.final_file)

    def stored_config(self) -> dict | None:
        """config.json as written by begin(), or None when it is missing or not JSON."""
        try:
            return json.loads(self.config_file.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def finish(self):
        """Mark the run done, then drop its checkpoint (final.pt holds the last state): a kill in between
        leaves a run that is done, never one that lost both."""
        self.done_file.write_text("done\n")
        self.checkpoint_file.unlink(missing_ok=True)


def provenance(extra: dict) -> dict:
    import accelerate
    import transformers
    rev = None
    if (Path(__file__).resolve().parent.parent / ".git").exists():  # a source checkout, not an installed copy
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


def expected_config(config, seed: int) -> dict:
    """What begin() writes to config.json, as it reads back, less `seeds` (not part of a run's key)."""
    return json.loads(json.dumps({"seed": seed, **config.model_dump(exclude={"seeds"})}))


def same_config(stored, want: dict, **replace) -> bool:
    """stored config.json agrees with `want` on every key of `want` (top-level sections in `replace` swapped
    in first); keys the store adds beyond the config are ignored."""
    if not isinstance(stored, dict):
        return False
    stored = {**stored, **replace}
    return all(stored.get(k) == v for k, v in want.items())


def check_resumable(run: Run, resume: bool, force: bool, config=None, seed: int | None = None):
    """Decide what to do with an existing run dir; refuse to silently overwrite an interrupted run, or to
    reuse a finished one whose config.json or metrics no longer match what it should hold."""
    if force:
        run.reset()
        return
    if run.done:
        if config is not None and not same_config(run.stored_config(), expected_config(config, seed)):
            raise UserError(f"run {run.path}: config.json does not match the run's config (edited or corrupt); "
                            "pass --force to retrain it")
        if not run.metrics():
            raise UserError(f"run {run.path} is marked finished but has no metrics; pass --force to retrain it")
    elif run.started and not resume:
        rows = run.metrics(torn_ok=True)
        done = rows[-1]["step"] + 1 if rows else 0  # counted as the interrupt's summary counts them (steps logged)
        raise UserError(f"run {run.path} stopped after {done} steps; pass --resume to continue it or --force to "
                        "restart it")


def finished_sibling(run: Run, config, seed: int) -> Run | None:
    """The finished run of the same store folder whose config equals `config` except for fewer train.steps
    (the longest such run), from which `run` can be extended; None if there is none."""
    want = expected_config(config, seed)
    best, best_steps = None, 0
    for path in sorted(run.path.parent.iterdir()) if run.path.parent.is_dir() else []:
        other = Run(path)
        if path == run.path or not other.done or not other.final_file.exists() or not other.made_by_this_code():
            continue
        got = other.stored_config()
        if not isinstance(got, dict) or not isinstance(got.get("train"), dict):
            continue
        steps = got["train"].get("steps")
        same = same_config(got, want, train={**got["train"], "steps": want["train"]["steps"]})
        if same and isinstance(steps, int) and best_steps < steps < want["train"]["steps"]:
            best, best_steps = other, steps
    return best


def shared_run(run: Run, config, seed: int) -> Run | None:
    """A finished run of ANOTHER spec in the same store with the same seed, config and code: a run directory
    named `<scale>-<arm>-s<seed>-<key>` elsewhere under the store root whose `-s<seed>-<key>` suffix equals
    this run's (the key hashes the config and the code fingerprint) and whose config.json matches. Specs that
    train the same arm (fig11 and table2, fig9's GRPO arm) then train it once. None if there is none."""
    suffix = "-s" + run.path.name.rsplit("-s", 1)[1] if "-s" in run.path.name else None  # the arm may hold "-s"
    spec_dir = run.path.parent
    root = spec_dir.parent
    if suffix is None or not root.is_dir():
        return None
    want = expected_config(config, seed)
    for other_dir in sorted(root.iterdir()):
        if other_dir == spec_dir or not other_dir.is_dir() or other_dir.name.startswith("_"):
            continue
        for path in sorted(other_dir.glob(f"*{suffix}")):
            other = Run(path)
            if other.done and path.name.endswith(suffix) and same_config(other.stored_config(), want) and other.metrics():
                return other
    return None
