"""`python -m replicate bench {rollout,update,entropy,rl-step,rl-rows}` with a tiny budget: each writes its JSON with
ratios and positive rates."""
import json
import os
import shutil
import subprocess
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
    assert data["machine"]["cpu_family_model_stepping"]
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


def test_another_revisions_command_runs_without_our_setting(tmp_path, monkeypatch):
    """`bench small-step --against REV` times REV's code as it ran alone: the GLIBC_TUNABLES this process set for
    itself are not passed on to REV's command (nor to the fake 'here' tree, which does not set them either)."""
    from replicate import allocator
    from replicate.bench import revisions
    monkeypatch.setenv("GLIBC_TUNABLES", allocator.TUNABLES)
    monkeypatch.setattr(allocator, "AS_GIVEN", None)
    seen, run = [], subprocess.run
    monkeypatch.setattr(revisions.subprocess, "run", lambda *a, **k: seen.append(k["env"]) or run(*a, **k))
    monkeypatch.setattr(revisions, "unpack", lambda commit, into: fake_tree(into, 2.0))
    revisions.step_times("c" * 40, "fig1", "tiny", 1, 1, here=fake_tree(tmp_path / "here", 5.0))
    assert len(seen) == 2 and all("GLIBC_TUNABLES" not in env for env in seen)


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


def test_rollout_static_cache_arms_sample_every_token_and_table_them():
    """The GPU rollout's static-cache arms (transformers compiles its decode on CUDA only, so hf_static runs eager
    here; ours_static_compiled is left to the GPU run: inductor on a CPU takes minutes): every arm samples T tokens
    for each row, and the table shows each static arm's rate and first call."""
    import torch

    from replicate.bench.core import build_model, first_call_seconds, interleave, rollout_arms, rollout_table
    model, vocab = build_model("tiny", "cpu")
    ids = torch.randint(10, vocab, (3, 5), generator=torch.Generator().manual_seed(1))
    seen = {}
    arms = rollout_arms(model, ids, torch.ones_like(ids), 4, torch.Generator().manual_seed(0), seen, static=True)
    assert list(arms) == ["ours", "hf_generate", "hf_static", "ours_static", "ours_static_compiled"]
    arms.pop("ours_static_compiled")
    first = first_call_seconds(arms, "cpu")
    times = interleave(arms, 2, warm=False)
    assert seen == {name: (3, 4) for name in arms} and min(first.values()) > 0
    assert all(len(ts) == 2 and min(ts) > 0 for ts in times.values())
    row = {"shape": "tiny", "B": 3, "P": 5, "T": 4, "ours_tok_s": 10.0, "hf_generate_tok_s": 5.0, "ours_over_hf": 2.0,
           "hf_static_tok_s": 40.0, "ours_static_tok_s": 12.0, "ours_static_compiled_tok_s": 50.0,
           "first_call_s": {"hf_static": 31.0, "ours_static": 0.2, "ours_static_compiled": 20.0}}
    header, line = rollout_table([row], "cpu").splitlines()[1:]
    assert [c for c in header.split("  ") if c.strip()] == [
        "shape", "B", "P", "T", "ours", "HF generate", "ours/HF", "HF static+compiled", "1st call s", "ours static",
        "1st call s", "ours static+compiled", "1st call s"]
    assert line.split() == ["tiny", "3", "5", "4", "10", "5", "2", "40", "31", "12", "0.2", "50", "20"]


def test_static_decode_draws_the_same_tokens_as_our_sampler():
    """bench/static_decode.py's loop over a static cache (left padding included) samples the very tokens our
    KV-cached sampler does from the same generator state, at temperatures 1 and 0.7, and each decode step's logits
    are one forward's over the whole sequence (positions counted past the padding): the prototype the GPU bench
    times computes the same rollout. (A random tiny model's flat softmax alone would hide wrong positions.)"""
    import torch

    from replicate.bench.core import build_model
    from replicate.bench.static_decode import decode_step, static_cache, static_generate
    from replicate.runners.rl.rollout import generate
    model, vocab = build_model("tiny", "cpu")
    ids = torch.randint(10, vocab, (4, 6), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    mask[0, :3] = mask[2, :1] = 0
    cache = static_cache(model, 6 + 7)  # one cache for every call: reset between them
    for temperature in (1.0, 0.7):
        ours = generate(model, ids, mask, 7, temperature, [-1], 0, torch.Generator().manual_seed(5))[0]
        static = static_generate(model, ids, mask, 7, temperature, torch.Generator().manual_seed(5),
                                 decode_step(model, False), cache)
        assert torch.equal(ours, static), temperature
    step_logits = []

    def recorded(**kw):
        out = model(**kw)
        step_logits.append(out.logits[:, -1].clone())
        return out
    tokens = static_generate(model, ids, mask, 7, 1.0, torch.Generator().manual_seed(6), recorded, cache)
    seq, full_mask = torch.cat([ids, tokens], 1), torch.cat([mask, torch.ones_like(tokens)], 1)
    with torch.no_grad():
        whole = model(input_ids=seq, attention_mask=full_mask, position_ids=(full_mask.cumsum(-1) - 1).clamp(min=0)).logits
    assert len(step_logits) == 6
    for t, logits in enumerate(step_logits):  # step t has read token t; it predicts token t + 1
        torch.testing.assert_close(logits, whole[:, 6 + t], atol=1e-5, rtol=1e-5)


def test_static_arms_compile_only_the_compiled_one(monkeypatch):
    """ours_static runs its decode step eager and ours_static_compiled compiled (the flags are not swapped)."""
    import torch

    from replicate.bench import static_decode
    from replicate.bench.core import build_model, rollout_arms
    asked = []
    monkeypatch.setattr(static_decode, "decode_step", lambda model, compiled: asked.append(compiled) or model.forward)
    model, vocab = build_model("tiny", "cpu")
    ids = torch.randint(10, vocab, (2, 3), generator=torch.Generator().manual_seed(1))
    arms = rollout_arms(model, ids, torch.ones_like(ids), 2, torch.Generator().manual_seed(0), {}, static=True)
    assert asked == [False, True] and list(arms)[-2:] == ["ours_static", "ours_static_compiled"]


def test_device_check_script_flow_on_a_cpu(tmp_path):
    """scripts/device_check.sh (issue 25's GPU checks in one device call): without a GPU it says why and exits 2;
    DEVICE=cpu runs its flow here (preflight import, a phase under its limit, the log under $OUT, exit 0); an unknown
    phase exits 2. A broken script would waste a GPU lease, so its flow is tried where no GPU is needed."""
    import os
    import subprocess
    import sys

    import torch
    script = REPO / "scripts" / "device_check.sh"

    def run(*phases, **env):
        out = tmp_path / "-".join(phases or ("all",)) / env.get("DEVICE", "cuda")
        return out, subprocess.run(["bash", str(script), *phases], capture_output=True, text=True, timeout=300,
                                   env={**os.environ, "OUT": str(out), "PYTHON": sys.executable, **env})
    if not torch.cuda.is_available():
        out, done = run()
        assert done.returncode == 2 and "no CUDA GPU here" in done.stdout
        assert "no CUDA GPU here" in (out / "log.txt").read_text()
    out, done = run("tests", DEVICE="cpu")
    assert done.returncode == 0, done.stdout[-2000:]
    log = (out / "log.txt").read_text()
    assert "== tests: exit 0" in log and "every phase passed" in log and "| transformers" in log
    assert run("nosuch", DEVICE="cpu")[1].returncode == 2


def test_cpu_fields_reads_the_first_processors_kind(tmp_path):
    """The bench records family, model and stepping beside the model name: "AMD EPYC" alone is Zen 4 (family 25)
    and Zen 5 (family 26) alike. Only the first processor's block is read; a missing file gives no fields."""
    from replicate.bench.core import cpu_fields
    block = "processor\t: {n}\nvendor_id\t: AuthenticAMD\ncpu family\t: {f}\nmodel\t\t: 17\nmodel name\t: AMD EPYC\n" \
            "stepping\t: 1\nflags\t\t: fpu avx512f\n\n"
    info = tmp_path / "cpuinfo"
    info.write_text(block.format(n=0, f=25) + block.format(n=1, f=26))
    assert cpu_fields(str(info)) == {"family": "25", "model": "17", "cpu": "AMD EPYC", "stepping": "1"}
    assert cpu_fields(str(tmp_path / "absent")) == {}
