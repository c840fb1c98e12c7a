"""The paper-scale road on verl end to end, without a GPU: data -> launch every arm x seed -> a failure reported
and the rest finished -> relaunch of the failed run only -> import -> claims, figure, table.csv -> `check`.

verl's entry point is replaced by tests/data/verl_standin.py ($REPLICATE_VERL_ENTRY): it loads the parquet files
and the custom reward the launch points it to (and scores a right and a wrong answer with it, as verl's reward
manager calls it), then replays file-logger lines in verl 0.9.1's key format for 2 arms x 2 seeds
(tests/data/verl_replay/; synthetic values, not recorded from a GPU run), one run crashing halfway.
"""
from __future__ import annotations

import csv
import json
import sys
import textwrap
from pathlib import Path

import pytest

from replicate.cli import main

pytest.importorskip("pyarrow")
DATA = Path(__file__).parent / "data"
STANDIN = DATA / "verl_standin.py"
SPEC = textwrap.dedent("""\
    id: verle2e
    base: fig1
    paper: entropy-mechanism
    reproduces: "test: table2's GRPO and Clip-Cov arms at the paper scale on verl (a stand-in), 2 seeds"
    body:
      seeds: [0, 1]
    scales:
      paper:
        task: {name: math, params: {train: BytedTsinghua-SIA/DAPO-Math-17k, validation: [aime24, math500],
                                    validation_split: test}}
        train: {steps: 10, ppo_mini_batches: 8}
        eval: {every: 2, n_prompts: 530}
        seeds: [0, 1]
    variants:
      - name: grpo
      - name: clip_cov
        overrides:
          algorithm:
            policy_loss: clip_cov
            policy_loss_params: {clip_ratio: 1.0, clip_ratio_c: null, clip_cov_ratio: 2.0e-4, clip_cov_lb: 1.0,
                                 clip_cov_ub: 5.0}
    analyses: [arm_compare]
    panels:
      - {kind: arm_entropy, title: "Policy entropy"}
      - {kind: arm_accuracy, title: "Validation accuracy"}
      - {kind: level_bars, title: "Final accuracy per benchmark"}
    claims:
      - {id: clip_cov_holds_entropy, statement: "Clip-Cov ends with more entropy than GRPO", source: test,
         metric: entropy_end_minus_ref_end@clip_cov, op: ">", threshold: 0.0, beats: "GRPO's final entropy"}
      - {id: clip_cov_above_grpo_average, statement: "Clip-Cov above GRPO on the average", source: test,
         metric: acc_avg_minus_ref@clip_cov, op: ">", threshold: 0.0, beats: "GRPO on the same seed"}
    """)


def write_sources(src: Path):
    """Small local copies of each set in its own field names: DAPO-Math-17k in verl's form (parquet, its own
    'Answer:' template), AIME24 (`problem`/`answer`/`id`), MATH-500 (`problem`/`answer`/`level`/`unique_id`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from replicate.backends.verl.data import DAPO_TEMPLATE
    pre, post = DAPO_TEMPLATE
    dapo = [{"data_source": "math_dapo", "prompt": [{"role": "user", "content": f"{pre}What is {i} + {i}?{post}"}],
             "ability": "MATH", "reward_model": {"style": "rule", "ground_truth": str(2 * i)},
             "extra_info": {"index": f"d{i}"}} for i in range(6)]
    pq.write_table(pa.Table.from_pylist(dapo), src / "dapo_math_17k.parquet")
    (src / "aime24.jsonl").write_text("".join(json.dumps({"id": str(60 + i), "problem": f"Find {i} squared.",
                                                          "answer": str(i * i)}) + "\n" for i in range(3)))
    (src / "math500.jsonl").write_text("".join(json.dumps({"problem": f"Simplify $\\frac{{{i}}}{{2}}$.",
                                                           "answer": f"\\frac{{{i}}}{{2}}", "level": str(1 + i % 5),
                                                           "unique_id": f"test/algebra/{i}.json"}) + "\n"
                                               for i in range(1, 5)))


@pytest.fixture
def env(tmp_path, monkeypatch):
    for d in ("src", "data", "home"):
        (tmp_path / d).mkdir()
    write_sources(tmp_path / "src")
    monkeypatch.setenv("REPLICATE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VERL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("REPLICATE_VERL_ENTRY", f"{sys.executable} {STANDIN}")
    monkeypatch.setenv("STANDIN_CALLS", str(tmp_path / "calls.txt"))
    (tmp_path / "verle2e.yaml").write_text(SPEC)
    return tmp_path


def calls(tmp_path) -> list[str]:
    path = tmp_path / "calls.txt"
    return path.read_text().split() if path.exists() else []


def test_verl_end_to_end_with_a_failed_run_relaunched(env, monkeypatch, capsys):
    spec, store, out = env / "verle2e.yaml", env / "store", env / "result"
    assert main(["data", str(spec), "--from", str(env / "src")]) == 0
    manifest = json.loads((env / "data" / "manifest.json").read_text())["files"]
    assert {k: v["rows"] for k, v in manifest.items()} == {
        "BytedTsinghua-SIA__DAPO-Math-17k/train.parquet": 6, "aime24/test.parquet": 3, "math500/test.parquet": 4}

    launch = ["run", str(spec), "--scale", "paper", "--backend", "verl", "--store", str(store), "--out", str(out)]
    monkeypatch.setenv("STANDIN_FAIL", "clip_cov-s1")
    capsys.readouterr()
    assert main(launch) == 1  # one run failed, the other three ran to the end
    err = capsys.readouterr().err
    print(err)
    assert "1 of 4 run(s) failed" in err and "verle2e clip_cov s1: verl exited with status 1" in err
    assert sorted(calls(env)) == ["paper-clip_cov-s0", "paper-clip_cov-s1", "paper-grpo-s0", "paper-grpo-s1"]
    runs = {p.name.rsplit("-", 1)[0]: p for p in (store / "verle2e").iterdir()}
    assert sorted(runs) == ["paper-clip_cov-s0", "paper-clip_cov-s1", "paper-grpo-s0", "paper-grpo-s1"]
    assert [(runs[n] / "DONE").exists() for n in sorted(runs)] == [True, False, True, True]
    assert "status 1" in (runs["paper-clip_cov-s1"] / "FAILED").read_text()
    half = [json.loads(x) for x in (runs["paper-clip_cov-s1"] / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in half] == [0, 1, 2, 3, 4]  # imported up to the crash (verl step 5 = our step 4)
    assert not (out / "claims.json").exists()
    prov = json.loads((runs["paper-grpo-s0"] / "provenance.json").read_text())
    assert prov["backend"] == "verl" and prov["reward"] == "ours"
    assert {Path(k).name for k in prov["data"]} == {"train.parquet", "test.parquet"} and len(prov["data"]) == 3
    assert all(e["sha256"] == manifest[str(Path(k).relative_to(env / "data"))]["sha256"] for k, e in prov["data"].items())

    monkeypatch.delenv("STANDIN_FAIL")
    assert main(launch) == 0  # finished runs skipped, the failed one relaunched (a second log file)
    assert calls(env).count("paper-clip_cov-s1") == 2 and len(calls(env)) == 5
    assert sorted(p.name for p in runs["paper-clip_cov-s1"].glob("verl_log*")) == ["verl_log-1.jsonl", "verl_log-2.jsonl"]
    assert all((p / "DONE").exists() for p in runs.values())

    rows = [json.loads(x) for x in (runs["paper-grpo-s0"] / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(10))
    assert rows[0]["val_acc"] == pytest.approx((0.2 * 0.8 + 0.786 * 0.8) / 2)
    assert rows[-1]["val_acc_after_last_step@aime24"] == 0.2 and rows[-1]["val_acc_after_last_step@math500"] == 0.786

    claims = {c["id"]: c for c in json.loads((out / "claims.json").read_text())["claims"]}
    assert claims["clip_cov_holds_entropy"]["verdict"] == "replicated"
    # per seed: the mean over the two benchmarks of Clip-Cov's final accuracy minus GRPO's, same seed; the
    # replayed numbers disagree in sign across seeds, so the claim is not called replicated
    per_seed = json.loads((out / "claims.json").read_text())["per_seed"]["acc_avg_minus_ref"]["clip_cov"]
    assert per_seed == pytest.approx([(0.2333 + 0.802 - 0.2 - 0.786) / 2, (0.2 + 0.806 - 0.2333 - 0.79) / 2])
    assert claims["clip_cov_above_grpo_average"]["verdict"] == "inconclusive"
    with open(out / "table.csv") as fh:
        table = {r["method"]: r for r in csv.DictReader(fh)}
    assert list(next(iter(table.values()))) == ["model", "method", "aime24", "math500"]
    assert table["grpo"]["model"] == "Qwen2.5-7B"
    assert float(table["grpo"]["aime24"]) == pytest.approx(100 * (0.2 + 0.2333) / 2, abs=0.01)
    assert float(table["clip_cov"]["math500"]) == pytest.approx(100 * (0.802 + 0.806) / 2, abs=0.01)
    assert (out / "verle2e.png").exists()

    capsys.readouterr()
    # two of seven benchmarks: every measured cell is within tolerance, but the table is incomplete (exit 3)
    assert main(["check", str(out), "--against", "entropy-mechanism/table2"]) == 3
    assert "INCOMPLETE" in capsys.readouterr().out
    res = json.loads((out / "check.json").read_text())
    measured = [c for c in res["cells"] if c["measured"] is not None]
    assert {(c["method"], c["benchmark"]) for c in measured} == {
        ("GRPO", "aime24"), ("GRPO", "math500"), ("Clip-Cov", "aime24"), ("Clip-Cov", "math500")}
    assert all(c["within"] for c in measured)
    # the ordering claims need all seven benchmarks (the paper's average): with two measured they are not judged
    assert {c["holds"] for c in res["claims"]} == {None}

    assert main(launch) == 0 and len(calls(env)) == 5  # all finished: nothing relaunched, analysed again
