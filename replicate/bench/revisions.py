"""`python -m replicate bench small-step --against REV`: one RL step of a spec's preset as the code at git revision
REV runs it against the code here, each a whole `python -m replicate SPEC` command in its own process, the two
revisions alternating (A B, B A, ...), so the ratio covers code and preset together: what changed since REV.

Each command runs SPEC for STEPS steps from an empty store with validation only at the first and last step, and
its clean steps (1 .. STEPS-2: no validation, no checkpoint) are read back from its metrics.jsonl: a step's seconds
are the difference of consecutive `wall_time`s. The revision is unpacked with `git archive` (it needs this
repository's history) into a temporary directory and imported from there.
"""
from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from replicate.errors import UserError
from replicate.paths import REPO

FILING_REV = "479b383"  # main when issue 22 was filed (2026-11-27): the small preset "as it is today" there
STEPS = 4
# Overrides for both revisions where the revision knows the key (its leaf name appears in its source): fig8's
# probes and the step-0 sharpening null are measurements beside the step, added after the filing.
IF_KNOWN = {"train.probe_prompts": "0", "eval.base_temperatures": "[]"}


def unpack(rev: str, into: Path) -> Path:
    """The source tree of `rev` (a commit, tag or branch of this repository) under `into`."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        raise UserError("bench --against needs git and this repository's history (a git clone); run without it")
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", rev], capture_output=True,
                             check=False)
    if archive.returncode != 0:
        raise UserError(f"git has no revision {rev!r} here: {archive.stderr.decode().strip()}; fetch it or fix "
                        "--against")
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def known_sets(src: Path) -> list[str]:
    """The IF_KNOWN overrides whose leaf key the source at `src` mentions, as --set arguments."""
    text = "\n".join(p.read_text(errors="replace") for p in (src / "replicate").rglob("*.py"))
    return [a for key, value in IF_KNOWN.items() if key.rsplit(".", 1)[1] in text for a in ("--set", f"{key}={value}")]


def command(src: Path, spec: str, scale: str, work: Path) -> list[str]:
    return [sys.executable, "-m", "replicate", spec, "--scale", scale, "--steps", str(STEPS), "--seeds", "1",
            "--store", str(work / "store"), "--out", str(work / "out"), "--set", "eval.every=1000",
            *known_sets(src)]


def clean_steps(rows: list[dict]) -> list[dict]:
    """Seconds, rollout and update time and response length of each clean step (1 .. STEPS-2) of one run."""
    out = []
    for prev, row in itertools.pairwise(rows[:-1]):
        out.append({"step_s": row["wall_time"] - prev["wall_time"], "time_rollout": row.get("time_rollout"),
                    "time_update": row.get("time_update"), "response_length": row.get("response_length")})
    return out


def run_once(src: Path, spec: str, scale: str, work: Path, threads: int) -> list[dict]:
    """One whole command of the source at `src`; the clean steps of its run."""
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "REPLICATE_TRACK": "none"}
    done = subprocess.run(command(src, spec, scale, work), cwd=src, env=env, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise UserError(f"{spec} --scale {scale} at {src} failed (exit {done.returncode}): {tail[0]}")
    metrics = sorted((work / "store").rglob("metrics.jsonl"))
    if len(metrics) != 1:
        raise UserError(f"expected one run in {work / 'store'}, found {len(metrics)}")
    return clean_steps([json.loads(line) for line in metrics[0].read_text().splitlines() if line.strip()])


def step_times(rev: str, spec: str, scale: str, reps: int, threads: int) -> dict:
    """{'REV': [clean steps], 'here': [clean steps]} over `reps` commands of each, the revisions alternating."""
    with tempfile.TemporaryDirectory() as tmp:
        sources = {rev: unpack(rev, Path(tmp) / "rev"), "here": REPO}
        steps = {name: [] for name in sources}
        for r in range(reps):
            for name in (list(sources) if r % 2 == 0 else list(sources)[::-1]):
                work = Path(tmp) / f"{name.replace('/', '_')}-{r}"
                steps[name] += run_once(sources[name], spec, scale, work, threads)
    return steps
