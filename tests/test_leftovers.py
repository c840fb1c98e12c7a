"""Leftovers: counts are summed across processes; the per-level final accuracy is of the policy after the last
update; resuming with another process count is refused in one line."""
import pytest
import torch

from replicate.errors import UserError
from replicate.specs import RunConfig, deep_merge, load_spec
from replicate.store import Run
from replicate.runners.rl.trainer import _reduce, train


class TwoProcesses:
    num_processes = 2


def test_reduce_sums_counts_and_averages_the_rest(monkeypatch):
    import accelerate.utils
    parts = [{"step": 3, "entropy": 0.4, "gen_batches": 2, "groups_short": 1, "val_acc_L1": 0.5},
             {"step": 3, "entropy": 0.6, "gen_batches": 3, "groups_short": 0}]
    monkeypatch.setattr(accelerate.utils, "gather_object", lambda _: parts)
    out = _reduce(TwoProcesses(), parts[0])
    assert out == {"step": 3, "entropy": pytest.approx(0.5), "gen_batches": 5, "groups_short": 1, "val_acc_L1": 0.5}


def _cfg(tiny_spec_file, steps):
    cfg = load_spec(tiny_spec_file).resolve("tiny")
    return RunConfig.model_validate(deep_merge(cfg.model_dump(), {"train": {"steps": steps}}))


def test_final_level_accuracy_is_after_the_last_update(tiny_spec_file, warm_store, tmp_path):
    """A run's last-row val_acc_L* equals the evaluation of its saved final model, not of the policy before the
    last update, and no earlier row has per-level accuracy."""
    from replicate.runners.rl.rollout import avg_at_k, make_generator
    from replicate.seeds import derive_seed
    from replicate.tasks import make_task
    from replicate.runners.rl.trainer import accuracy_by_level
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast
    cfg = _cfg(tiny_spec_file, 3)
    run = Run(tmp_path / "run")
    rows = train(run, cfg, 0, warm_store, log=lambda *_: None)
    task = make_task(cfg.task.name, **cfg.task.params)
    problems = task.validation[:cfg.eval.n_prompts]
    tok = PreTrainedTokenizerFast.from_pretrained(run.path / "model")
    tok.padding_side = "left"

    def levels(model):
        scores = avg_at_k(model, tok, task, problems, cfg.eval.k, cfg.eval.temperature, cfg.rollout.max_new_tokens,
                          make_generator(derive_seed(0, "eval-final"), torch.device("cpu")), per_problem=True)
        return accuracy_by_level(problems, scores)
    final = AutoModelForCausalLM.from_pretrained(run.path / "model").eval()
    logged = {k: v for k, v in rows[-1].items() if k.startswith("val_acc_L")}
    assert logged and logged == pytest.approx(levels(final))
    assert all(not k.startswith("val_acc_L") for r in rows[:-1] for k in r)


def test_resume_with_another_process_count_is_refused(tiny_spec_file, warm_store, tmp_path):
    cfg = _cfg(tiny_spec_file, 8)

    def crash(step, m):
        if step == 4:
            raise KeyboardInterrupt
    run = Run(tmp_path / "cut")
    with pytest.raises(KeyboardInterrupt):
        train(run, cfg, 0, warm_store, progress=crash, log=lambda *_: None)
    state = torch.load(run.checkpoint_file, weights_only=False)
    state["rng"]["torch_per_process"] *= 2  # as if two processes of `accelerate launch` had written it
    torch.save(state, run.checkpoint_file)
    with pytest.raises(UserError, match=r"cut was checkpointed by 2 process\(es\) and this launch has 1: resume it "
                                        r"with 2 \(`accelerate launch --num_processes 2`\), or pass --force"):
        train(run, cfg, 0, warm_store, resume=True, log=lambda *_: None)


def test_law_vs_linear_on_constant_accuracy_is_unmeasured_not_a_traceback():
    import math
    from replicate.analysis.fits import law_vs_linear
    out = law_vs_linear([0.9, 0.8, 0.7, 0.6, 0.5], [0.0] * 5)  # a run whose accuracy stayed at 0
    assert all(math.isnan(v) for v in out.values())
    assert law_vs_linear([0.9, 0.8, 0.7, 0.6, 0.5], [0.1, 0.2, 0.2, 0.4, 0.5])["linear_r2"] > 0.8
