"""lm-eval integration: task files for every benchmark, and a tiny model scored through lm-eval."""
import json
from pathlib import Path

import pytest
import yaml

lm_eval = pytest.importorskip("lm_eval", reason="lm-eval not installed: pip install -e '.[eval]'")

from evaluators.lmeval import BENCHMARKS, write_tasks  # noqa: E402
from replicate.specs import RunConfig, deep_merge, load_spec  # noqa: E402
from replicate.store import Run  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "math"


@pytest.mark.skipif(not SHARED.exists(), reason="needs ../shared/data/math")
def test_task_yaml_for_every_benchmark(tmp_path):
    present = [b for b, (stem, _, _) in BENCHMARKS.items() if (SHARED / f"{stem}.jsonl").exists()]
    names = write_tasks(tmp_path, present, SHARED, k=16, temperature=0.6)
    assert len(names) >= 6 and "omni_math" in BENCHMARKS
    for name in names:
        text = (tmp_path / f"{name}.yaml").read_text()
        assert "!function utils.process_results" in text
        cfg = yaml.safe_load(text.replace("!function ", ""))
        assert cfg["repeats"] == 16 and cfg["generation_kwargs"]["temperature"] == 0.6
        assert Path(cfg["dataset_kwargs"]["data_files"]["test"]).exists()
    with pytest.raises(FileNotFoundError):
        write_tasks(tmp_path, ["math500"], tmp_path / "empty", k=1)


def test_tiny_model_through_lm_eval_matches_our_own_greedy_eval(tiny_spec_file, warm_store, tmp_path):
    from replicate.benchmarks import run_eval
    from replicate.tasks import make_task
    from replicate.runners.rl.rollout import avg_at_k
    from replicate.runners.rl.trainer import train
    cfg = load_spec(tiny_spec_file).resolve("tiny")
    cfg = RunConfig.model_validate(deep_merge(cfg.model_dump(), {"train": {"steps": 2}}))
    run = Run(tmp_path / "run")
    train(run, cfg, 0, warm_store, log=lambda *_: None)
    res = run_eval(str(run.path), ["tiny_addition"], k=1, temperature=0.0, max_gen_toks=8, batch_size=32)
    table = json.loads(res["out"].with_suffix(".json").read_text())["results"]["tiny_addition"]
    assert table["n"] == 32 and res["out"].parent == run.path / "eval"

    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast
    model = AutoModelForCausalLM.from_pretrained(run.path / "model").eval()
    tok = PreTrainedTokenizerFast.from_pretrained(run.path / "model")
    tok.padding_side = "left"
    task = make_task(cfg.task.name, **cfg.task.params)
    import torch
    ours = avg_at_k(model, tok, task, task.validation, 1, 0.0, 8, torch.Generator().manual_seed(0))
    assert table["avg@k"] == pytest.approx(ours, abs=1e-9)


@pytest.mark.skipif(not SHARED.exists(), reason="needs ../shared/data/math")
def test_eval_on_a_real_benchmark_file_and_bad_input(tiny_spec_file, warm_store, tmp_path):
    from replicate.errors import UserError
    from replicate.benchmarks import run_eval
    from replicate.runners.rl.trainer import train
    cfg = RunConfig.model_validate(deep_merge(load_spec(tiny_spec_file).resolve("tiny").model_dump(), {"train": {"steps": 1}}))
    run = Run(tmp_path / "run")
    train(run, cfg, 0, warm_store, log=lambda *_: None)
    res = run_eval(str(run.path), ["math500"], k=2, temperature=0.6, data_dir=SHARED, limit=3, max_gen_toks=8)
    row = json.loads(res["out"].with_suffix(".json").read_text())["results"]["math500"]
    assert row["n"] == 3 and 0 <= row["avg@k"] <= row["pass@2"] <= 1
    with pytest.raises(UserError, match="unknown eval task"):
        run_eval(str(run.path), ["gsm9k"])
    with pytest.raises(UserError, match="needs sampling"):
        run_eval(str(run.path), ["math500"], k=4, temperature=0.0, data_dir=SHARED)


def test_tiny_countdown_through_lm_eval_matches_our_eval_and_tasks_must_match(tiny_spec_file, warm_store, tmp_path):
    """A countdown run is scored by the countdown verifier on its own validation problems; scoring it on
    tiny_addition (or an addition run on tiny_countdown) is an error, not a silent 0.0."""
    import torch
    from replicate.benchmarks import run_eval
    from replicate.errors import UserError
    from replicate.runners.rl.rollout import avg_at_k
    from replicate.tasks import make_task
    from replicate.runners.rl.trainer import train
    cfg = load_spec(tiny_spec_file).resolve("tiny")
    cfg = RunConfig.model_validate(deep_merge(cfg.model_dump(), {
        "task": {"name": "countdown", "params": {"digits": None, "operands": [2], "holdout": 32}},
        "warmup": {"noise": 0.1}, "train": {"steps": 1}}))
    run = Run(tmp_path / "run")
    train(run, cfg, 0, warm_store, log=lambda *_: None)
    res = run_eval(str(run.path), ["tiny_countdown"], k=1, temperature=0.0, max_gen_toks=8, batch_size=32)
    table = json.loads(res["out"].with_suffix(".json").read_text())["results"]["tiny_countdown"]
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast
    model = AutoModelForCausalLM.from_pretrained(run.path / "model").eval()
    tok = PreTrainedTokenizerFast.from_pretrained(run.path / "model")
    tok.padding_side = "left"
    task = make_task("countdown", operands=[2], holdout=32)
    ours = avg_at_k(model, tok, task, task.validation, 1, 0.0, 8, torch.Generator().manual_seed(0))
    assert table["n"] == 32 and ours > 0 and table["avg@k"] == pytest.approx(ours, abs=1e-9)
    with pytest.raises(UserError, match="trained on 'countdown', not 'addition'; use --tasks tiny_countdown"):
        run_eval(str(run.path), ["tiny_addition"])
