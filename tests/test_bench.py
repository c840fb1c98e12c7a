"""`python -m replicate bench {rollout,update,entropy,rl-step,rl-rows}` with a tiny budget: each writes its JSON with
ratios and positive rates."""
import json
import shutil
from pathlib import Path

import pytest

from replicate.cli import main
from replicate.errors import UserError
from replicate.paths import REPO


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


needs_git = pytest.mark.skipif(not (REPO / ".git").exists() or shutil.which("git") is None,
                               reason="--against needs this repository's git history")


def test_a_run_that_skipped_a_step_is_refused():
    from replicate.bench.revisions import clean_steps
    rows = [{"step": i, "wall_time": float(i)} for i in (0, 1, 3, 4)]
    with pytest.raises(UserError, match="not 0..3"):
        clean_steps(rows)


@needs_git
@pytest.mark.parametrize("rev", ["no-such-rev-xyz", "--output=x", "-h", "here"])
def test_bench_against_a_revision_that_is_not_a_commit_is_one_line(rev, tmp_path, capsys):
    assert main(["bench", "small-step", f"--against={rev}", "--quick", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert rev in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists() and not list(tmp_path.iterdir())


def test_against_belongs_to_small_step_only(tmp_path, capsys):
    assert main(["bench", "rollout", "--against", "HEAD", "--quick", "--out", str(tmp_path)]) == 2
    assert "small-step" in capsys.readouterr().err and not list(tmp_path.iterdir())


FAKE_MAIN = """import json, os, sys
from pathlib import Path
args = sys.argv[1:]
if {fail!r}:
    sys.exit("boom: this revision cannot run")
assert os.environ["CUDA_VISIBLE_DEVICES"] == "" and os.environ["OMP_NUM_THREADS"] == "1", "child env"
run = Path(args[args.index("--store") + 1]) / "run"
run.mkdir(parents=True)
rows = [dict(step=i, wall_time={dt} * i, time_rollout=1.0, time_update=2.0, response_length=9.0,
             who=__file__) for i in range(int(args[args.index("--steps") + 1]))]
(run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\\n" for r in rows))
"""


def fake_tree(root: Path, dt: float, fail: bool = False) -> Path:
    """A source tree whose `python -m replicate` logs steps `dt` seconds apart (or fails), without training."""
    (root / "replicate").mkdir(parents=True)
    (root / "replicate" / "__init__.py").write_text("")
    (root / "replicate" / "__main__.py").write_text(FAKE_MAIN.format(dt=dt, fail=fail))
    return root


def test_each_revision_runs_its_own_code_in_its_own_store(tmp_path, monkeypatch):
    """The two arms' steps are their own trees' (2 s and 5 s apart), each command run in a CPU-only child whose
    imports come from its tree, reps alternating; not the code of the process that asks."""
    from replicate.bench import revisions
    monkeypatch.setattr(revisions, "unpack", lambda commit, into: fake_tree(into, 2.0))
    steps = revisions.step_times("a" * 40, "fig1", "tiny", 2, 1, here=fake_tree(tmp_path / "here", 5.0))
    assert [s["step_s"] for s in steps["a" * 40]] == [2.0] * 4 and [s["step_s"] for s in steps["here"]] == [5.0] * 4


def test_a_revision_that_fails_is_one_line_naming_its_output(tmp_path, monkeypatch, capsys):
    from replicate.bench import revisions
    monkeypatch.setattr(revisions, "unpack", lambda commit, into: fake_tree(into, 2.0, fail=True))
    with pytest.raises(UserError, match="boom: this revision cannot run") as exc:
        revisions.step_times("b" * 40, "fig1", "tiny", 1, 1, here=fake_tree(tmp_path / "here", 5.0))
    log = Path(str(exc.value).rsplit("its output: ", 1)[1])
    assert "boom" in log.read_text() and "\n" not in str(exc.value)
    log.unlink()


@needs_git
@pytest.mark.slow
def test_bench_against_head_times_both_revisions(tmp_path, capsys):
    """The tiny preset at HEAD against the working tree: both arms time clean steps of their own runs, and with the
    same preset the two run at about one speed."""
    assert main(["bench", "small-step", "--against", "HEAD", "--quick", "--reps", "1", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "small-step-vs-HEAD-cpu.json").read_text())
    assert set(data["steps"]) == {"HEAD", "here"} and 1 / 3 < data["speedup"] < 3
    assert len(data["against_commit"]) == 40 and data["here"]["commit"] == data["against_commit"]
    assert all(len(s) == 2 and min(x["step_s"] for x in s) > 0 for s in data["steps"].values())


def test_bench_all_without_trl_skips_rl_step_in_one_line_and_runs_the_rest(monkeypatch, capsys):
    import sys

    import replicate.bench as bench
    ran = []
    monkeypatch.setitem(sys.modules, "trl", None)  # as if the `bench` extra were not installed
    monkeypatch.setattr(bench, "load", lambda name: lambda args: ran.append(name))
    bench.bench_all(None)
    out = capsys.readouterr().out
    assert ran == ["rollout", "update", "entropy"]
    assert "bench rl-step: skipped: `bench rl-step` times our step against TRL's" in out and "[bench]" in out


def test_bench_evaluators_writes_its_ratios(tmp_path, capsys):
    """A short run of both comparisons: the JSON holds positive rates, their ratios, and full verdict agreement."""
    pytest.importorskip("math_verify")
    if shutil.which("bwrap") is None:
        pytest.skip("the code sandbox needs bubblewrap")
    assert main(["bench", "evaluators", "--seconds", "0.2", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "evaluators-cpu.json").read_text())
    m, c = data["math"], data["code"]
    assert m["agree"] == 1.0 and m["pool_over_single"] == pytest.approx(m["pool"] / m["single"])
    assert min(c["plain"], c["sandbox"], c["cold"]) > 0 and c["programs"] == 20
    assert c["sandbox_over_plain"] == pytest.approx(c["sandbox"] / c["plain"])
    assert "evaluators-cpu.json" in capsys.readouterr().out


def test_the_memory_profile_hides_kinetos_lines_but_not_what_fn_writes(capfd):
    import os

    import torch

    from replicate.bench.core import peak_extra_bytes

    def fn():
        os.write(2, b"from fn\n")
        return torch.ones(1000) * 2

    assert peak_extra_bytes(fn, "cpu") >= 4000  # the 1000-float result, at least
    err = capfd.readouterr().err
    assert "from fn" in err and "USDT" not in err and "profiler_start" not in err
