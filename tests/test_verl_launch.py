"""Every arm x seed on verl: the local dry run, Slurm scripts (dry run, and a submission to a fake sbatch that
is then waited for, not resubmitted), `ray job submit` commands, and the import step each scheduled run ends with."""
from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from replicate.cli import main
from replicate.store import Run

FIG11 = ["fig11", "--scale", "paper", "--backend", "verl", "--seeds", "3"]
ARMS = ["grpo", "clip_higher", "clip_cov", "kl_cov"]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("REPLICATE_HOME", str(tmp_path))
    monkeypatch.setenv("VERL_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


def _kv(argv: list[str]) -> dict:
    return dict(a.split("=", 1) for a in argv if "=" in a and not a.startswith("VERL_FILE"))


def test_local_dry_run_lists_every_arm_and_seed_with_our_reward(home, capsys):
    assert main(FIG11 + ["--dry-run"]) == 0
    cap = capsys.readouterr()
    lines = cap.out.strip().splitlines()
    assert "4 arm(s) x 3 seed(s) = 12 run(s), reward ours" in cap.err
    seen = set()
    for line in lines:
        o = _kv(shlex.split(line))
        assert o["custom_reward_function.name"] == "compute_score"
        assert o["custom_reward_function.path"].endswith("replicate/backends/verl/reward.py")
        assert o["data.val_files"].count(".parquet") == 7 and o["data.val_max_samples"] == "5975"
        _, arm, seed = o["trainer.experiment_name"].split("-")
        assert seed == f"s{o['data.seed']}" and o["trainer.default_local_dir"].endswith("/checkpoints")
        assert o["actor_rollout_ref.rollout.seed"] == o["actor_rollout_ref.actor.data_loader_seed"] == o["data.seed"]
        seen.add((arm, int(o["data.seed"])))
    assert seen == {(a, s) for a in ARMS for s in range(3)} and len(lines) == 12
    assert not (home / "runs").exists()  # a local dry run touches nothing


def test_verl_rule_reward_names_verls_math_dapo(home, capsys):
    assert main(["fig1", "--scale", "paper", "--backend", "verl", "--dry-run", "--reward", "verl-rule"]) == 0
    o = _kv(shlex.split(capsys.readouterr().out.strip()))
    assert o["custom_reward_function.name"] == "compute_score_verl_rule"


def test_slurm_dry_run_writes_one_script_per_run(home, capsys):
    assert main(FIG11 + ["--launcher", "slurm", "--dry-run", "--nnodes", "2", "--gpus-per-node", "4"]) == 0
    scripts = sorted((home / "runs" / "fig11").glob("*/launch.sbatch"))
    assert len(scripts) == 12 and "12 run(s)" in capsys.readouterr().err
    text = scripts[0].read_text()
    assert "#SBATCH --nodes=2" in text and "#SBATCH --gpus-per-node=4" in text and "ray start --head" in text
    verl = next(line for line in text.splitlines() if "verl.trainer.main_ppo" in line)
    o = _kv(shlex.split(verl))
    assert o["trainer.nnodes"] == "2" and o["trainer.n_gpus_per_node"] == "4"
    assert o["custom_reward_function.name"] == "compute_score"
    assert text.splitlines()[-2].endswith(f"-m replicate.backends.verl.logs {scripts[0].parent} --rc $rc")
    assert (scripts[0].parent / "config.json").exists() and not (scripts[0].parent / "launch.json").exists()
    subprocess.run(["bash", "-n", str(scripts[0])], check=True)  # valid shell


def test_slurm_submits_once_and_then_waits(home, monkeypatch, capsys):
    bin_dir = home / "bin"
    bin_dir.mkdir()
    sbatch = bin_dir / "sbatch"
    sbatch.write_text(f"#!/bin/sh\necho \"$@\" >> {home}/sbatch.log\n"
                      f"echo \"${{GLIBC_TUNABLES-unset}}\" > {home}/sbatch.env\necho 4242\n")
    sbatch.chmod(sbatch.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    from replicate import allocator  # the malloc setting our command line made for itself is not Slurm's job's
    monkeypatch.setenv("GLIBC_TUNABLES", allocator.TUNABLES)
    monkeypatch.setattr(allocator, "AS_GIVEN", None)
    argv = ["fig1", "--scale", "paper", "--backend", "verl", "--launcher", "slurm"]
    assert main(argv) == 0
    assert len((home / "sbatch.log").read_text().splitlines()) == 1
    run_dir = next((home / "runs" / "fig1").iterdir())
    assert json.loads((run_dir / "launch.json").read_text()) == {"launcher": "slurm", "job": "4242"}
    assert (home / "sbatch.env").read_text().strip() == "unset"
    capsys.readouterr()
    assert main(argv) == 0  # submitted, not finished: waited for, not resubmitted
    assert "submitted earlier, waiting" in capsys.readouterr().err
    assert len((home / "sbatch.log").read_text().splitlines()) == 1


def test_ray_prints_one_submit_command_per_run(home, capsys):
    assert main(FIG11 + ["--launcher", "ray"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 12 and all(x.startswith("ray job submit --address $RAY_ADDRESS --no-wait -- bash -c ") for x in lines)
    inner = shlex.split(lines[0])[-1]
    assert "verl.trainer.main_ppo" in inner and "replicate.backends.verl.logs" in inner and "--rc $rc" in inner


def test_import_step_marks_finished_or_failed(tmp_path):
    """The command each scheduled run ends with: finished only with status 0 and every step logged."""
    from replicate.specs import find_spec
    config = find_spec("fig1").variant_configs("paper")["main"].model_copy(deep=True)
    config.train.steps = 3
    run = Run(tmp_path / "r")
    run.begin(config, 0, {})
    fixture = (Path(__file__).parent / "data" / "verl_log.jsonl").read_text()
    (run.path / "verl_log-1.jsonl").write_text(fixture)
    cmd = [sys.executable, "-m", "replicate.backends.verl.logs", str(run.path)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run(cmd + ["--rc", "137"], capture_output=True, text=True, env=env)
    assert res.returncode == 1 and "failed: verl exited with status 137" in res.stdout
    assert (run.path / "FAILED").exists() and not run.done and len(run.metrics()) == 4
    res = subprocess.run(cmd + ["--rc", "0"], capture_output=True, text=True, env=env)
    assert res.returncode == 0 and run.done and not (run.path / "FAILED").exists()
    res = subprocess.run([*cmd[:-1], str(tmp_path / "nothing"), "--rc", "0"], capture_output=True, text=True, env=env)
    assert res.returncode == 2 and "no config.json" in res.stderr


def test_a_resumed_run_merges_its_log_files(tmp_path):
    """verl's FileLogger truncates its file on a relaunch, so each launch has its own; later files win."""
    from replicate.backends.verl.logs import import_verl_log, log_files
    (tmp_path / "verl_log-2.jsonl").write_text('{"step": 2, "data": {"actor/entropy": 0.4}}\n'
                                               '{"step": 3, "data": {"actor/entropy": 0.3}}\n')
    (tmp_path / "verl_log-1.jsonl").write_text('{"step": 1, "data": {"actor/entropy": 0.6}}\n'
                                               '{"step": 2, "data": {"actor/entropy": 0.5}}\n')
    files = log_files(tmp_path)
    assert [f.name for f in files] == ["verl_log-1.jsonl", "verl_log-2.jsonl"]
    run = Run(tmp_path)
    assert import_verl_log(files, run) == 3
    assert [r["entropy"] for r in run.metrics()] == [0.6, 0.4, 0.3]


def test_table2_reuses_fig11s_finished_verl_runs(home, capsys):
    """fig11 and table2 train the same arms: a run finished for one is skipped by the other (not under --force)."""
    from replicate.backends.verl.launch import verl_run
    from replicate.specs import find_spec
    for variant, config in find_spec("fig11").variant_configs("paper").items():
        run = verl_run(home / "runs", "fig11", variant, config, 0, "paper", "ours")
        run.begin(config, 0, {})
        run.append_metrics({"step": 0, "entropy": 0.5})
        run.finish()
    assert main(["table2", "--scale", "paper", "--backend", "verl", "--seeds", "2", "--dry-run"]) == 0
    cap = capsys.readouterr()
    assert cap.err.count("finished, skipped") == 4 and cap.err.count("/fig11/paper-") == 4
    assert [_kv(shlex.split(x))["data.seed"] for x in cap.out.strip().splitlines()] == ["1"] * 4
