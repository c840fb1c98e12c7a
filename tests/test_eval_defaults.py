"""`eval` without lm-eval names its extra; on a run it defaults to the run's task and generation budget (within the
model's positions); --help lists every task; `bench` names its extra without TRL and writes under results/bench/."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from replicate.specs import RunConfig, deep_merge, load_spec
from replicate.store import Run

REPO = Path(__file__).resolve().parent.parent


def _py(code, cwd):
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO), "REPLICATE_HOME": str(cwd)})


def test_eval_without_lm_eval_names_the_extra(tmp_path):
    res = _py("import sys; sys.modules['lm_eval'] = None\nfrom replicate.cli import main\n"
              "sys.exit(main(['eval', '--model', 'x', '--tasks', 'tiny_addition']))", tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip() == ("error: `eval` needs lm-eval (lm_eval is not installed): pip install "
                                  "'replicate-rl[eval]' (or pip install 'lm-eval>=0.4.5')")


def test_bench_without_trl_names_the_extra_and_writes_under_results(tmp_path, monkeypatch):
    monkeypatch.delenv("REPLICATE_HOME", raising=False)  # results/ is relative to $REPLICATE_HOME when it is set
    res = _py("import sys; sys.modules['trl'] = None\nfrom replicate.cli import main\n"
              "sys.exit(main(['bench', 'rl-step', '--quick']))", tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert "pip install 'replicate-rl[bench]'" in res.stderr and res.stderr.count("\n") == 1
    from replicate.bench.core import default_out
    assert default_out() == Path("results") / "bench"
    monkeypatch.setenv("REPLICATE_HOME", str(tmp_path))
    assert default_out() == tmp_path / "results" / "bench"


def test_eval_help_lists_every_task():
    from evaluators.lmeval import BENCHMARKS, SYNTHETIC
    res = subprocess.run([sys.executable, "-m", "replicate", "eval", "--help"], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "400"}, timeout=120)
    assert all(t in res.stdout for t in [*BENCHMARKS, *SYNTHETIC]) and "tiny_short_answer" in res.stdout


def test_eval_of_a_run_defaults_to_its_task_and_fits_its_positions(tiny_spec_file, warm_store, tmp_path):
    pytest.importorskip("lm_eval")
    from replicate.benchmarks import run_eval
    from replicate.errors import UserError
    from replicate.runners.rl.trainer import train
    cfg = load_spec(tiny_spec_file).resolve("tiny")  # max_position_embeddings 64: 2048 new tokens do not fit
    cfg = RunConfig.model_validate(deep_merge(cfg.model_dump(), {"train": {"steps": 2}}))
    run = Run(tmp_path / "run")
    train(run, cfg, 0, warm_store, log=lambda *_: None)
    res = run_eval(str(run.path), None, batch_size=32)
    assert res["out"].name.startswith("eval-tiny_addition-")
    table = json.loads(res["out"].with_suffix(".json").read_text())["results"]["tiny_addition"]
    assert table["n"] == 32
    with pytest.raises(UserError, match=r"--max-gen-toks 2048 does not fit the model: 64 positions"):
        run_eval(str(run.path), None, max_gen_toks=2048)
