"""`python -m replicate bench small-step --against REV`: one RL step of a spec's preset as the code at git revision
REV runs it against the code here, each a whole `python -m replicate SPEC` command in its own process, the two
revisions alternating (A B, B A, ...), so the ratio covers code and preset together: what changed since REV.

Each command runs SPEC for STEPS steps on the CPU from an empty store, with validation only at the first and last
step and no checkpoint, and its clean steps (1 .. STEPS-2) are read back from its metrics.jsonl: a step's seconds are
the difference of consecutive `wall_time`s. The revision is unpacked with `git archive` (it needs this repository's
history) into a temporary directory and imported from there.
"""
from __future__ import annotations

import io
import itertools
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from replicate.errors import UserError
from replicate.paths import REPO

STEPS = 4
HERE = "here"
# Overrides for both revisions where the revision knows the key (its leaf name appears in its source): fig8's
# probes and the step-0 sharpening null are measurements beside the step, added after the filing; no checkpoint.
OFF_WHERE_KNOWN = {"train.probe_prompts": "0", "eval.base_temperatures": "[]", "train.checkpoint_every": "1000"}


def git(*args: str) -> subprocess.CompletedProcess:
    """git in this repository, output captured; a missing git or history is refused in one line."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        raise UserError("bench --against needs git and this repository's history (a git clone); run without it")
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, check=False)


def resolve(rev: str) -> str:
    """The commit `rev` names (a commit, tag or branch of this repository), as its full hash."""
    done = git("rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}")
    if rev.startswith("-") or rev == HERE or done.returncode != 0:
        raise UserError(f"git has no commit {rev!r} here; fetch it or fix --against")
    return done.stdout.decode().strip()


def here_state() -> dict:
    """The commit the code here sits on and whether the working tree differs from it."""
    head = git("rev-parse", "HEAD").stdout.decode().strip()
    return {"commit": head, "dirty": bool(git("status", "--porcelain", "--untracked-files=no").stdout.strip())}


def unpack(commit: str, into: Path) -> Path:
    """The source tree of `commit` under `into`."""
    archive = git("archive", "--format=tar", commit)
    if archive.returncode != 0:
        raise UserError(f"git archive {commit[:12]} failed: {archive.stderr.decode().strip()}")
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))  # 3.10.12+
    return into


def known_sets(src: Path) -> list[str]:
    """The OFF_WHERE_KNOWN overrides whose leaf key the source at `src` mentions, as --set arguments."""
    text = "\n".join(p.read_text(errors="replace") for p in (src / "replicate").rglob("*.py"))
    return [a for key, value in OFF_WHERE_KNOWN.items() if key.rsplit(".", 1)[1] in text
            for a in ("--set", f"{key}={value}")]


def fig1_command(src: Path, spec: str, scale: str, work: Path) -> list[str]:
    """The whole command one timed run is: SPEC for STEPS steps, one seed, its own store and output under `work`."""
    return [sys.executable, "-m", "replicate", spec, "--scale", scale, "--steps", str(STEPS), "--seeds", "1",
            "--store", str(work / "store"), "--out", str(work / "out"), "--set", "eval.every=1000",
            *known_sets(src)]


def clean_steps(rows: list[dict]) -> list[dict]:
    """Seconds, rollout and update time and response length of each clean step (1 .. STEPS-2) of one run."""
    if [r.get("step") for r in rows] != list(range(STEPS)):
        raise UserError(f"a timed run logged steps {[r.get('step') for r in rows]}, not 0..{STEPS - 1}")
    return [{"step_s": row["wall_time"] - prev["wall_time"], "time_rollout": row.get("time_rollout"),
             "time_update": row.get("time_update"), "response_length": row.get("response_length")}
            for prev, row in itertools.pairwise(rows[:-1])]


def run_once(name: str, src: Path, spec: str, scale: str, work: Path, threads: int) -> list[dict]:
    """One whole command of the source at `src` (named `name`), on the CPU; the clean steps of its run. Its store
    is removed after (a small run leaves ~2 GB of checkpoints and weights); a failed command's log is kept."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(src), os.environ.get("PYTHONPATH")) if p),
           "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "REPLICATE_TRACK": "none",
           "CUDA_VISIBLE_DEVICES": ""}
    print(f"  {name[:12]}: {spec} --scale {scale}, {STEPS} steps ...", file=sys.stderr, flush=True)
    done = subprocess.run(fig1_command(src, spec, scale, work), cwd=src, env=env, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        log = Path(tempfile.mkstemp(prefix=f"bench-against-{name[:12]}-", suffix=".log")[1])
        log.write_text(done.stdout + done.stderr)
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise UserError(f"{spec} --scale {scale} at {name[:12]} failed (exit {done.returncode}): {tail[0]}; "
                        f"its output: {log}")
    metrics = sorted((work / "store").rglob("metrics.jsonl"))
    if len(metrics) != 1:
        raise UserError(f"{name[:12]}'s command left {len(metrics)} runs in its store, not one")
    steps = clean_steps([json.loads(line) for line in metrics[0].read_text().splitlines() if line.strip()])
    shutil.rmtree(work, ignore_errors=True)
    return steps


def step_times(commit: str, spec: str, scale: str, reps: int, threads: int, here: Path = REPO) -> dict:
    """{commit: [clean steps], 'here': [clean steps]} over `reps` commands of each, the revisions alternating."""
    with tempfile.TemporaryDirectory() as tmp:
        sources = {commit: unpack(commit, Path(tmp) / "rev"), HERE: here}
        steps = {name: [] for name in sources}
        for r in range(reps):
            for name in (list(sources) if r % 2 == 0 else list(sources)[::-1]):
                steps[name] += run_once(name, sources[name], spec, scale, Path(tmp) / f"{name[:12]}-{r}", threads)
    return steps
