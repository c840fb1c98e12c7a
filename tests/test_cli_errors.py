"""Bad input and damaged run stores: one line on stderr, exit 2, nothing trained, nothing lost.

Also the store's integrity rules in process: a torn last metrics line on --resume, --resume without a
checkpoint, extension of finished runs to more steps, `--set` overrides and `key: null` in spec merges.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from replicate.errors import UserError
from replicate.experiment import plan
from replicate.runners.rl import run_rl
from replicate.specs import apply_overrides, load_spec, parse_overrides
from replicate.store import Run
from replicate.runners.rl.trainer import train

REPO = Path(__file__).resolve().parent.parent
QUIET = dict(log=lambda *_: None)


def _strip(rows):
    return [{k: v for k, v in r.items() if k != "wall_time" and not k.startswith("time_")} for r in rows]


def _cli(*args, cwd, env=None):
    env = {**os.environ, "PYTHONPATH": str(REPO), "REPLICATE_HOME": str(cwd), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "replicate", *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=600)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, warm_store):
    """A spec file (2 steps, seed 0) and a store holding its one finished run (the warm-up stays in warm_store)."""
    from conftest import TINY_SPEC
    tmp = tmp_path_factory.mktemp("finished")
    spec_file = tmp / "tinytest.yaml"
    spec_file.write_text(TINY_SPEC.replace("steps: 8", "steps: 2").replace("seeds: [0, 1]", "seeds: [0]"))
    spec = load_spec(spec_file)
    configs, seeds = plan(spec, "tiny", None, None)
    run_rl(spec, "tiny", configs, seeds, warm_store, **QUIET)
    run = next(p for p in (warm_store / "tinytest").iterdir() if Run(p).done)
    return spec_file, run


def _store_copy(finished, tmp):
    """A store of its own holding a copy of the finished run (to damage), and the copy's path."""
    run = tmp / "store" / "tinytest" / finished[1].name
    shutil.copytree(finished[1], run)
    return run


def _garbage_in_middle(run):
    lines = run.metrics_file.read_text().splitlines(keepends=True)
    run.metrics_file.write_text(lines[0] + "{not json\n" + "".join(lines[1:]))


def _edit_config(run):
    cfg = json.loads(run.config_file.read_text())
    cfg["train"]["optimizer"]["lr"] = 0.5
    run.config_file.write_text(json.dumps(cfg))


def _unfinish(run):
    shutil.rmtree(run.path / "model")
    run.done_file.unlink()


# (argv with {spec} {run} {tmp} {store}, setup on a Run copy of the finished run or None, needle in the error)
ROWS = [
    ("run {spec} --steps 0", None, "--steps must be at least 1"),
    ("run {spec} --steps -5", None, "--steps must be at least 1"),
    ("run {spec} --seeds 0", None, "--seeds must be at least 1"),
    ("run {spec} --seeds -1", None, "--seeds must be at least 1"),
    ("run {spec} --out {tmp}/afile/out", None, "afile is a file, not a folder"),
    ("run {spec} --out /proc/replicate-out", None, "cannot write --out /proc/replicate-out: /proc takes no new files"),
    ("report --out /proc/REPORT.md", None, "its folder /proc: it takes no new files"),
    ("run {spec} --store {tmp}/afile/store", None, "cannot write --store"),
    ("run {spec} --out {tmp}", None, "holds every spec's results"),
    ("report --out {tmp}/afile/REPORT.md", None, "cannot write --out"),
    ("compare {tmp} {tmp} --out {tmp}/afile/c", None, "cannot write --out"),
    ("check --export entropy-mechanism/table2 --out {tmp}/afile/t.csv", None, "cannot write --out"),
    ("check {tmp}/t.csv --against entropy-mechanism/table2 --out {tmp}/afile/c", None, "cannot write --out"),
    ("bench entropy --quick --out {tmp}/afile/b", None, "cannot write --out"),
    ("eval --model {run} --tasks tiny_addition --out {tmp}/afile/e", None, "cannot write --out"),
    ("fgi1", None, "did you mean fig1"),
    ("compare fig1 fgi1", None, "fgi1 has no claims.json; did you mean fig1 or"),
    ("run {spec} --resume --force", None, "--resume and --force contradict each other"),
    ("lemma --scale huge --out {tmp}/lemma-huge", None, "lemma has no scale 'huge'; it has tiny"),
    ("run {spec} --set nosuch.key=1", None, "unknown key 'nosuch'"),
    ("run {spec} --set rollout.group_size=abc", None, "--set rollout.group_size"),
    ("eval --model {run} --tasks tiny_addition --k 0", None, "--k must be at least 1"),
    ("eval --model {run} --tasks math500 --limit 2", None, "pass --data-dir"),
    ("eval --model {run} --tasks tiny_addition --data-dir /nonexistent", None, "is not a directory"),
    ("eval --model {copy} --tasks tiny_addition", _unfinish, "is not finished"),
    ("eval --model {tmp}/nosuch --tasks tiny_addition", None, "does not exist; fix --model"),
    ("run {spec} --store {store}", _garbage_in_middle, "line 2 is not JSON (corrupt run); pass --force"),
    ("run {spec} --store {store}", _edit_config, "config.json does not match the run's config"),
    ("run {spec} --store {store}", lambda r: r.config_file.write_text("{garbage"), "config.json does not match"),
    ("run {spec} --store {store}", lambda r: r.metrics_file.unlink(), "has no metrics; pass --force"),
]


@pytest.mark.parametrize("argv,setup,needle", ROWS, ids=[
    f"{i}-" + "-".join(w.strip("-") for w in r[0].split() if "{" not in w)[:40] for i, r in enumerate(ROWS)])
def test_bad_input_is_one_line_and_exit_2(argv, setup, needle, finished, tmp_path):
    spec_file, run_dir = finished
    (tmp_path / "afile").write_text("a regular file\n")
    copy = _store_copy(finished, tmp_path)
    before = {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()}
    if setup is not None:
        setup(Run(copy))
        before = {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()}
    args = argv.format(spec=spec_file, run=run_dir, copy=copy, tmp=tmp_path, store=tmp_path / "store").split()
    res = _cli(*args, cwd=tmp_path)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2, res.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], res.stderr[-3000:]
    assert "Traceback" not in res.stderr and "model.path in the spec" not in res.stderr
    # nothing trained, nothing lost: the store's files are as they were, and no results were written
    assert {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()} == before
    assert not (tmp_path / "results").exists() and not (tmp_path / "runs").exists()


def test_list_into_a_closed_pipe_prints_no_traceback(tmp_path):
    res = subprocess.run(f"{sys.executable} -m replicate list | head -1", shell=True, cwd=tmp_path, text=True,
                         capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert len(res.stdout.splitlines()) == 1 and res.stderr == "", res.stderr


def test_figure_help_names_the_figure_and_has_no_spec_id(tmp_path):
    res = _cli("fig1", "--help", cwd=tmp_path)
    assert res.returncode == 0 and "usage: python -m replicate fig1" in res.stdout
    assert "spec_id" not in res.stdout and "--set KEY=VALUE" in res.stdout


def _config(spec_file, **over):
    return apply_overrides(load_spec(spec_file).resolve("tiny"), over)


def test_torn_last_metrics_line_is_dropped_on_resume(finished, warm_store, tmp_path):
    cfg = _config(finished[0], train={"steps": 6, "checkpoint_every": 3})
    full = train(Run(tmp_path / "full"), cfg, 0, warm_store, **QUIET)

    def crash(step, m):
        if step == 4:
            raise KeyboardInterrupt
    run = Run(tmp_path / "cut")
    with pytest.raises(KeyboardInterrupt, match="has 5 finished step"):
        train(run, cfg, 0, warm_store, progress=crash, **QUIET)
    with run.metrics_file.open("a") as fh:  # a kill -9 in the middle of writing step 5's line
        fh.write('{"step": 5, "entropy": 0.3')
    with pytest.raises(UserError, match="line 6 is not JSON"):
        run.metrics()
    assert [m["step"] for m in run.metrics(torn_ok=True)] == [0, 1, 2, 3, 4]
    resumed = train(run, cfg, 0, warm_store, resume=True, **QUIET)
    assert run.done and _strip(resumed) == _strip(full)


def test_resume_without_checkpoint_says_so(finished, warm_store, tmp_path):
    cfg = _config(finished[0], train={"steps": 2})
    run = Run(tmp_path / "r")
    run.path.mkdir()
    run.append_metrics({"step": 0})
    said = []
    rows = train(run, cfg, 0, warm_store, resume=True, log=said.append)
    assert f"no checkpoint in {run.path}; starting it from step 0" in said
    assert [r["step"] for r in rows] == [0, 1]


def test_interrupt_before_the_first_step_says_nothing_was_saved(finished, warm_store, tmp_path):
    from replicate.errors import Interrupted
    cfg = _config(finished[0], train={"steps": 2})

    def crash(step):
        raise KeyboardInterrupt
    with pytest.raises(Interrupted, match="no step of it was saved"):
        train(Run(tmp_path / "r"), cfg, 0, warm_store, on_start=crash, **QUIET)


def test_extension_equals_an_uninterrupted_run(finished, warm_store, tmp_path):
    """4 steps extended to 6 (--steps 6 --resume) equals 6 steps from scratch, row for row, except that
    the 4-step run's last step (3) evaluated val_acc (the last step always evaluates; eval.every is 2)."""
    spec = load_spec(finished[0])
    for steps in (4, 6):
        shutil.copytree(warm_store / "_warmup", tmp_path / f"s{steps}" / "_warmup")
    c4, _ = plan(spec, "tiny", 1, 4)
    c6, seeds = plan(spec, "tiny", 1, 6)
    short = run_rl(spec, "tiny", c4, seeds, tmp_path / "s4", **QUIET)["main"][0].metrics()
    extended = run_rl(spec, "tiny", c6, seeds, tmp_path / "s4", resume=True, **QUIET)["main"][0].metrics()
    scratch = run_rl(spec, "tiny", c6, seeds, tmp_path / "s6", **QUIET)["main"][0].metrics()
    assert len(short) == 4 and len(extended) == len(scratch) == 6
    assert "val_acc" in extended[3] and "val_acc" not in scratch[3]
    assert _strip(extended[:4]) == _strip(short)  # the first 4 rows are the short run's, copied
    for key in [k for k in extended[3] if k.startswith("val_acc")]:  # the short run's final evaluation
        extended[3].pop(key)
    assert _strip(extended) == _strip(scratch)
    runs = [Run(p) for p in sorted((tmp_path / "s4" / "tinytest").iterdir())]
    assert all(r.done and r.final_file.exists() for r in runs)  # the 4-step run is kept, as it was
    assert sorted(len(r.metrics()) for r in runs) == [4, 6]


def test_a_worker_process_says_when_it_extends_a_run(finished, warm_store, tmp_path):
    """In a pool's job (the path of 2+ runs) the extension is one of the lines the job reports (it was silent)."""
    from replicate.runners.rl import _train_group
    spec = load_spec(finished[0])
    shutil.copytree(warm_store / "_warmup", tmp_path / "_warmup")
    run_rl(spec, "tiny", plan(spec, "tiny", 1, 3)[0], [0], tmp_path, **QUIET)
    c5 = plan(spec, "tiny", 1, 5)[0]["main"]
    path = Run.for_config(tmp_path, spec.id, "main", c5, 0, "tiny").path
    lines = _train_group([("main", c5.model_dump(), 0, str(path))], str(tmp_path), True)
    assert lines[0].startswith("extending ") and "(3 steps) to 5 steps in " + path.name in lines[0]
    assert lines[1].startswith(f"finished {path.name}: 5 steps")


def test_extension_needs_resume(finished, warm_store, tmp_path, monkeypatch):
    """Without --resume a longer request trains from scratch, beside the shorter finished run."""
    import replicate.runners.rl as runners
    spec = load_spec(finished[0])
    shutil.copytree(warm_store / "_warmup", tmp_path / "_warmup")
    short = run_rl(spec, "tiny", plan(spec, "tiny", 1, 3)[0], [0], tmp_path, **QUIET)["main"][0].metrics()
    calls = []
    monkeypatch.setattr(runners, "extend", lambda *a, **k: calls.append(a))
    rows = run_rl(spec, "tiny", plan(spec, "tiny", 1, 5)[0], [0], tmp_path, **QUIET)["main"][0].metrics()
    assert calls == [] and len(rows) == 5 and _strip(rows[:2]) == _strip(short[:2])


def test_set_overrides_are_typed_validated_and_keyed(finished):
    spec = load_spec(finished[0])
    over = parse_overrides(["rollout.group_size=2", "train.optimizer.lr=1e-4", "algorithm.policy_loss=clip_cov",
                            "algorithm.policy_loss_params.clip_cov_ratio=2e-4"])
    assert over["rollout"] == {"group_size": 2} and over["train"]["optimizer"]["lr"] == "1e-4"  # YAML 1.1
    configs, _ = plan(spec, "tiny", None, None, over)
    cfg = configs["main"]  # the schema types the values
    assert cfg.rollout.group_size == 2 and cfg.train.optimizer.lr == 1e-4 and cfg.algorithm.policy_loss_params["clip_cov_ratio"] == 2e-4
    assert isinstance(cfg.algorithm.policy_loss_params["clip_cov_ratio"], float)
    assert cfg.digest() != plan(spec, "tiny", None, None)[0]["main"].digest()  # never reuses the default run
    for bad, needle in [(["nosuch.key=1"], "unknown key 'nosuch'"), (["rollout.group_size=abc"], "rollout.group_size"),
                        (["rollout.group_size"], "path.to.key=value"), (["train.steps=0"], "train.steps")]:
        with pytest.raises(UserError, match=needle):
            plan(spec, "tiny", None, None, parse_overrides(bad))


def test_null_deletes_an_inherited_key(tmp_path, finished):
    """`key: null` in a variant, a scale preset, a base: child or --set removes the key from the merge."""
    text = finished[0].read_text().replace("policy_loss: vanilla}",
                                           "policy_loss: vanilla, policy_loss_params: {clip_ratio_c: 10.0}}")
    base = tmp_path / "base.yaml"
    base.write_text(text.replace("id: tinytest", "id: basetest").replace("aliases: [tt]", "aliases: []")
                    + "scales:\n  tiny: {algorithm: {policy_loss_params: {clip_ratio: 0.3}}}\n")
    assert load_spec(base).resolve("tiny").algorithm.policy_loss_params == {"clip_ratio_c": 10.0, "clip_ratio": 0.3}
    variant = base.read_text().replace("analyses:", (
        "variants:\n  - {name: clip_cov, overrides: {algorithm: {policy_loss: clip_cov,"
        " policy_loss_params: {clip_ratio_c: null, clip_cov_ratio: 2.0e-4}}}}\nanalyses:"))
    variant = variant.replace("id: basetest", "id: varianttest")
    variant = variant.replace("metric: entropy_final_over_initial,", "metric: entropy_final_over_initial@clip_cov,")
    (tmp_path / "variant.yaml").write_text(variant)
    arm = load_spec(tmp_path / "variant.yaml").variant_configs("tiny")["clip_cov"]
    assert arm.algorithm.policy_loss_params == {"clip_ratio": 0.3, "clip_cov_ratio": 2e-4}
    (tmp_path / "child.yaml").write_text(
        "id: childtest\nbase: basetest\npaper: p\nreproduces: r\n"
        "body: {algorithm: {policy_loss_params: {clip_ratio_c: null}}}\n"
        "scales: {tiny: {algorithm: {policy_loss_params: {clip_ratio: null}}}}\n")
    assert load_spec(tmp_path / "child.yaml").resolve("tiny").algorithm.policy_loss_params == {}
    cfg = apply_overrides(load_spec(base).resolve("tiny"), parse_overrides(["algorithm.policy_loss_params.clip_ratio_c=null"]))
    assert cfg.algorithm.policy_loss_params == {"clip_ratio": 0.3}


def test_figure_title_counts_seeds_in_words():
    from replicate.report.figures import seeds_label
    assert seeds_label(1) == "1 seed" and seeds_label(2) == "2 seeds"


def test_an_out_holding_another_specs_result_is_refused(finished, tmp_path):
    """fig8's result in --out would be overwritten by this spec's: refused before anything trains."""
    spec_file, _ = finished
    (tmp_path / "other").mkdir()
    theirs = json.dumps({"spec": "fig8", "scale": "tiny", "claims": []})
    (tmp_path / "other" / "claims.json").write_text(theirs)
    res = _cli("run", str(spec_file), "--out", str(tmp_path / "other"), cwd=tmp_path)
    assert res.returncode == 2 and res.stderr.strip() == (f"error: --out {tmp_path / 'other'} holds fig8's result, which "
                                                          "tinytest's would overwrite; choose another folder (or remove "
                                                          "that one)")
    assert (tmp_path / "other" / "claims.json").read_text() == theirs and not (tmp_path / "runs").exists()


def test_a_result_folder_listed_for_one_spec_never_shows_another_specs_result(tmp_path, monkeypatch):
    """results/fig1/elsewhere.txt points at a folder where fig8's claims.json now lies (written there later):
    fig1's results leave it out, so `list` and the report never show fig8's verdicts as fig1's."""
    from replicate.report.results import remember, results_of
    monkeypatch.setenv("REPLICATE_HOME", str(tmp_path))
    shared = tmp_path / "elsewhere"
    (shared / "a").mkdir(parents=True)
    (shared / "a" / "claims.json").write_text(json.dumps({"spec": "fig1", "scale": "tiny", "claims": []}))
    (shared / "claims.json").write_text(json.dumps({"spec": "fig8", "scale": "tiny", "claims": []}))
    remember("fig1", shared)
    found = [r for r in results_of("fig1") if r["origin"] == "result"]
    assert [(r["spec"], r["dir"]) for r in found] == [("fig1", shared / "a")]


def test_a_result_without_claims_is_described_as_a_figure_only():
    from replicate.report.results import describe
    line = describe({"claims": [], "origin": "reference", "provenance": {}})
    assert line == "no claims (a figure only) (reference)"
    two = [{"verdict": "replicated"}, {"verdict": "inconclusive", "verdict_holm": "inconclusive"}]
    assert describe({"claims": two, "origin": "reference"}).startswith("1/2 replicated, 1 after Holm (reference)")


@pytest.mark.parametrize("argv,needle", [
    (["fig1", "--seeds", "abc"], "argument --seeds: invalid int value: 'abc'"),
    (["fig1", "--sed", "3"], "unrecognized arguments: --sed 3; did you mean --seeds?"),
    (["run"], "the following arguments are required: spec"),
    (["compare", "results/fig1/tiny"], "the following arguments are required: b"),
    (["run", "x.yaml", "--stesp", "3"], "unrecognized arguments: --stesp 3; did you mean --steps?"),
    (["bench", "rl-step", "--repz", "3"], "unrecognized arguments: --repz 3; did you mean --reps?"),
])
def test_a_malformed_command_line_is_one_line_naming_the_help(argv, needle, capsys):
    from replicate.cli import main
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert needle in err and f"(see python -m replicate {argv[0]} --help)" in err


def test_no_final_state_keeps_the_run_and_model_but_no_final_pt(finished, warm_store, tmp_path):
    """--no-final-state: the run is done with its model and metrics, no final.pt; a longer --resume then trains from
    step 0 (nothing to extend from) and equals a run trained that long from scratch."""
    spec_file = finished[0]
    shutil.copytree(warm_store / "_warmup", tmp_path / "store" / "_warmup")
    common = ("run", str(spec_file), "--store", str(tmp_path / "store"), "--no-final-state")
    assert _cli(*common, "--steps", "3", "--out", str(tmp_path / "o3"), cwd=tmp_path).returncode == 0
    [short] = [Run(p) for p in (tmp_path / "store" / "tinytest").iterdir()]
    assert short.done and (short.path / "model").is_dir() and len(short.metrics()) == 3
    assert not short.final_file.exists()
    res = _cli(*common, "--steps", "5", "--resume", "--out", str(tmp_path / "o5"), cwd=tmp_path)
    assert res.returncode == 0 and "extending" not in res.stdout + res.stderr
    spec = load_spec(spec_file)
    scratch = run_rl(spec, "tiny", plan(spec, "tiny", 1, 5)[0], [0], tmp_path / "s5", **QUIET)["main"][0]
    longer = next(Run(p) for p in (tmp_path / "store" / "tinytest").iterdir() if p != short.path)
    assert _strip(longer.metrics()) == _strip(scratch.metrics()) and scratch.final_file.exists()


def test_an_unknown_spec_id_is_named_before_its_options_are_read(capsys):
    from replicate.cli import main
    assert main(["fgi1", "--nosuch"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown spec 'fgi1'; did you mean fig1") and len(err.strip().splitlines()) == 1
