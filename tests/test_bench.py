"""`python -m replicate bench {rollout,update,entropy,rl-step,rl-rows}` with a tiny budget: each writes its JSON with
ratios and positive rates."""
import json

import pytest

from replicate.cli import main


@pytest.mark.parametrize("what", ["rollout", "update", "entropy", "rl-step"])
def test_bench_arm_writes_ratios(what, tmp_path, capsys):
    if what == "rl-step":
        pytest.importorskip("trl")  # the `bench` extra
    assert main(["bench", what, "--quick", "--device", "cpu", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / f"{what}-cpu.json").read_text())
    assert data["machine"]["torch"] and data["machine"]["torch_threads"] >= 1
    if what == "rl-step":
        assert data["ours_over_trl"] > 0 and data["ours_over_trl_cpu"] > 0 and data["ours"]["step_cpu_s"] > 0
        assert data["ours"]["response_tok_s"] > 0 and data["trl"]["response_tok_s"] > 0
        assert 0 < data["ours"]["response_length"] <= 4
    else:
        assert data["rows"]
        for row in data["rows"]:
            if what == "rollout":
                assert row["ours_tok_s"] > 0 and row["hf_generate_tok_s"] > 0 and row["ours_over_hf"] > 0
            elif what == "update":
                assert row["tok_s"] > 0 and row["peak_matmul_flop_s"] > 0 and 0 < row["mfu"]
            else:
                assert row["seconds"] > 0 and row["extra_over_logits"] > 0
        if what == "entropy":
            chunked = data["rows"][-1]
            assert chunked["memory_over_unchunked"] > 0 and chunked["time_over_unchunked"] > 0
            assert chunked["entropy_only_extra_over_logits"] < data["rows"][0]["entropy_only_extra_over_logits"]
    assert f"{what}-cpu.json" in capsys.readouterr().out


def test_bench_small_step_writes_every_arm(tmp_path, capsys):
    assert main(["bench", "small-step", "--quick", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "small-step-cpu.json").read_text())
    arms = data["rl_step"]["arms"]
    assert list(arms) == ["float32 (before #22)", "bf16 autocast (before)", "preset now"]
    assert all(len(a["step_s"]) == 2 and min(a["step_s"]) > 0 and 0 < min(a["response_length"]) for a in arms.values())
    assert data["rl_step"]["speedup"] > 0 and data["rl_step"]["speedup_over_bf16"] > 0
    assert set(data["update"]["seconds"]) == {"float32", "bf16 autocast", "bf16 + fused AdamW",
                                              "bf16 + eager attention", "bf16 + fused + eager"}
    assert data["update"]["speedup_over_float32"]["float32"] == 1
    assert "small-step-cpu.json" in capsys.readouterr().out


def test_bench_rl_rows_writes_the_batched_seed_ceiling(tmp_path, capsys):
    """N x the rows against 1x, interleaved: the 1x arm's ratios are 1 by construction, the others positive."""
    assert main(["bench", "rl-rows", "--quick", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "rl-rows-cpu.json").read_text())
    one, two = data["arms"]["1"], data["arms"]["2"]
    assert one["time_ratio"] == 1 and one["rows_per_s_ratio"] == 1
    assert two["step_s"] > 0 and two["rows_per_s_ratio"] == pytest.approx(2 / two["time_ratio"])
    assert "rl-rows-cpu.json" in capsys.readouterr().out


def test_clean_steps_are_wall_time_differences_between_validations():
    """Steps 1 .. STEPS-2 of a run (no validation, no checkpoint): the difference of consecutive wall_times."""
    from replicate.bench.revisions import STEPS, clean_steps
    walls = [10.0, 17.5, 25.25, 40.0][:STEPS]
    rows = [{"step": i, "wall_time": w, "time_rollout": 1.0 + i, "time_update": 2.0, "response_length": 9.0}
            for i, w in enumerate(walls)]
    steps = clean_steps(rows)
    assert [s["step_s"] for s in steps] == [7.5, 7.75] and [s["time_rollout"] for s in steps] == [2.0, 3.0]


def test_known_sets_pass_only_keys_the_revision_knows(tmp_path):
    from replicate.bench.revisions import known_sets
    (tmp_path / "replicate").mkdir()
    (tmp_path / "replicate" / "config.py").write_text("probe_prompts: int = 0\n")
    assert known_sets(tmp_path) == ["--set", "train.probe_prompts=0"]


def test_bench_against_an_unknown_revision_is_one_line(tmp_path, capsys):
    assert main(["bench", "small-step", "--against", "no-such-rev-xyz", "--quick", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no-such-rev-xyz" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_bench_against_head_times_both_revisions(tmp_path, capsys):
    """The tiny preset at HEAD against the working tree: both arms time clean steps of their own runs."""
    assert main(["bench", "small-step", "--against", "HEAD", "--quick", "--reps", "1", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "small-step-vs-HEAD-cpu.json").read_text())
    assert set(data["steps"]) == {"HEAD", "here"} and data["speedup"] > 0
    assert all(len(s) == 2 and min(x["step_s"] for x in s) > 0 for s in data["steps"].values())
