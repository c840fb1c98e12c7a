"""`replicate check`: reported tables as data, cell-by-cell comparison, tolerances, claims, bad input."""
import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from replicate.report.check import (REPORTED_DIR, binomial_se, default_tolerance, load_reported, parse_tolerances,
                             tolerance)
from replicate.cli import main
from replicate.errors import UserError

T2 = "entropy-mechanism/table2"
BENCHES = ["aime24", "aime25", "amc", "math500", "omni_math", "olympiadbench", "minerva", "average"]


@pytest.fixture
def exported(tmp_path, capsys) -> Path:
    path = tmp_path / "res" / "table.csv"
    assert main(["check", "--export", T2, "--out", str(path)]) == 0
    capsys.readouterr()
    return path


def edit(path: Path, model: str, method: str, column: str, fn) -> None:
    rows = list(csv.DictReader(path.open()))
    for r in rows:
        if r["model"] == model and r["method"] == method:
            r[column] = fn(r[column])
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_reported_yaml_every_cell_has_a_source_and_the_papers_numbers():
    data = yaml.safe_load((REPORTED_DIR / "entropy-mechanism" / "table2.yaml").read_text())
    cells = [(m, meth, b, c) for m, rows in data["cells"].items() for meth, row in rows.items() for b, c in row.items()]
    assert len(cells) == 2 * 4 * 8
    for model, method, bench, cell in cells:
        src = cell["source"]
        assert src["paper"].startswith("arXiv 2505.22617v") and src["table"] == "Table 2"
        assert model in src["row"] and src["column"] and src["secondary"] is False
        assert isinstance(cell["value"], float) and 0 < cell["value"] < 100
    rep = load_reported(T2)
    assert rep["cells"][("Qwen2.5-7B", "GRPO", "aime24")] == 21.2
    assert rep["cells"][("Qwen2.5-32B", "KL-Cov", "average")] == 52.2
    assert rep["cells"][("Qwen2.5-32B", "Clip-Cov", "olympiadbench")] == 57.2
    for b, cfg in rep["benchmarks"].items():
        assert "of" in cfg or (cfg["n"] > 0 and cfg["k"] in (1, 32) and "n_source" in cfg)
    t1 = yaml.safe_load((REPORTED_DIR / "entropy-mechanism" / "table1.yaml").read_text())
    assert [r["mean_cov"] for r in t1["rows"]] == [5.654, 3.112, 1.385, 0.351, 0.152, 0.003]
    assert all(r["secondary"] for r in t1["rows"])
    rec = yaml.safe_load((REPORTED_DIR / "entropy-mechanism" / "recipes.yaml").read_text())
    kl = rec["methods"]["KL-Cov"]
    assert kl["k"]["Qwen2.5-7B"] == pytest.approx(kl["k_percent"]["Qwen2.5-7B"] / 100)
    assert rec["methods"]["Clip-Cov"]["ratio"] == 2e-4 and rec["methods"]["Clip-higher"]["clip_ratio"]["high"] == 0.28


def test_tolerance_formula_on_known_values():
    # greedy MATH-500 at 78.8%: 100*sqrt(.788*.212/500) = 1.8277 points; z=2 -> 3.655
    assert binomial_se(78.8, 500) == pytest.approx(100 * math.sqrt(0.788 * 0.212 / 500))
    assert tolerance(78.8, 500, 1) == pytest.approx(3.6555, abs=1e-3)
    # AIME avg@32, rho 0.5: k_eff = 32/16.5; 30 problems are far noisier than 500
    k_eff = 32 / 16.5
    assert tolerance(21.2, 30, 32) == pytest.approx(2 * 100 * math.sqrt(0.212 * 0.788 / (30 * k_eff)))
    assert tolerance(21.2, 30, 32) > 2.5 * tolerance(78.8, 500, 1)
    assert binomial_se(50, 100, k=4, rho=0.0) == pytest.approx(2.5)       # independent samples: n*k
    assert binomial_se(50, 100, k=4, rho=1.0) == pytest.approx(5.0)       # all-or-nothing: n only
    assert tolerance(99.9, 4428, 1) == 1.0                                # the floor
    rep = load_reported(T2)
    assert default_tolerance(rep, "Qwen2.5-7B", "GRPO", "omni_math") == pytest.approx(
        2 * binomial_se(27.9, 4428))
    assert parse_tolerances(["3", "AIME24=5,amc=6"], rep) == {"*": 3.0, "aime24": 5.0, "amc": 6.0}
    with pytest.raises(UserError, match="unknown benchmark"):
        parse_tolerances(["aime=5"], rep)
    with pytest.raises(UserError, match="positive"):
        parse_tolerances(["aime24=-1"], rep)


def test_export_then_check_passes(exported, capsys):
    assert main(["check", str(exported.parent), "--against", T2]) == 0
    out = capsys.readouterr().out
    assert "PASS (all 64 cells asked about within tolerance); 4 ordering claims hold on the measured means" in out
    res = json.loads((exported.parent / "check.json").read_text())
    assert res["passed"] and all(c["within"] and c["delta"] == 0 for c in res["cells"])
    assert all(c["holds"] for c in res["claims"]) and len(res["claims"]) == 4
    assert "| Qwen2.5-7B | GRPO | aime24 | 21.2 | 21.2 | +0.0 |" in (exported.parent / "check.md").read_text()


def test_a_cell_moved_by_ten_points_fails_and_is_named(exported, capsys, tmp_path):
    edit(exported, "Qwen2.5-32B", "Clip-higher", "math500", lambda v: f"{float(v) + 10:.1f}")
    out_dir = tmp_path / "report"
    assert main(["check", str(exported), "--against", T2, "--out", str(out_dir)]) == 1
    out = capsys.readouterr().out
    assert "Qwen2.5-32B / Clip-higher / math500" in out and "+10.0" in out
    assert out.count("outside") == 1
    res = json.loads((out_dir / "check.json").read_text())
    bad = [c for c in res["cells"] if c["within"] is False]
    assert [(c["model"], c["method"], c["benchmark"]) for c in bad] == [("Qwen2.5-32B", "Clip-higher", "math500")]
    # a wide enough override lets it through; a per-benchmark one beats the global one
    assert main(["check", str(exported), "--against", T2, "--out", str(out_dir), "--tolerance", "math500=11"]) == 0
    assert main(["check", str(exported), "--against", T2, "--out", str(out_dir), "--tolerance", "20",
                 "--tolerance", "math500=5"]) == 1
    capsys.readouterr()


def test_ordering_claim_fails_when_grpo_is_best(exported, capsys):
    edit(exported, "Qwen2.5-7B", "GRPO", "average", lambda v: "41.0")   # within ±2.7 of 38.6, above both Cov
    assert main(["check", str(exported), "--against", T2]) == 1
    out = capsys.readouterr().out
    assert "claim failed: Clip-Cov above GRPO on the average (Qwen2.5-7B)" in out
    assert "claim failed: KL-Cov above GRPO on the average (Qwen2.5-7B)" in out
    assert "/ average:" not in out                                      # the cell itself is within tolerance


def test_missing_cells_are_incomplete_exit_3_and_listed(tmp_path, capsys):
    path = tmp_path / "mine.csv"
    path.write_text("Model,Method,AIME24,MATH-500\nQwen2.5-7B,w. KL-Cov,24.0,\nqwen2.5-7b,GRPO,20.0,79.5\n")
    assert main(["check", str(path), "--against", T2]) == 3
    res = json.loads((tmp_path / "check.json").read_text())
    measured = [c for c in res["cells"] if c["within"] is not None]
    assert len(measured) == 3 and all(c["within"] for c in measured) and res["status"] == "incomplete"
    assert sum(c["asked"] and c["within"] is None for c in res["cells"]) == 13  # 2 rows x 8 benchmarks - 3
    assert all(c["holds"] is None for c in res["claims"])             # no averages: not measured, not failed
    out = capsys.readouterr().out
    assert "not measured: Qwen2.5-7B / KL-Cov: aime25, amc, math500, omni_math, olympiadbench, minerva, average" in out
    assert "not measured: claim KL-Cov above GRPO on the average (Qwen2.5-7B)" in out
    assert "INCOMPLETE: 3 measured cells within tolerance and 0 claims hold, but 13 cells" in out
    assert "Qwen2.5-32B" not in out                                   # rows not given are not asked about


def test_nothing_measured_or_a_missing_column_is_incomplete_not_pass(exported, tmp_path, capsys):
    empty = tmp_path / "empty.csv"
    empty.write_text("model,method,aime24\nQwen2.5-7B,GRPO,\nQwen2.5-7B,KL-Cov,\n")
    assert main(["check", str(empty), "--against", T2]) == 3
    assert "INCOMPLETE: 0 measured cells" in capsys.readouterr().out
    rows = list(csv.reader(exported.open()))                          # the whole table but the amc column
    i = rows[0].index("amc")
    with exported.open("w", newline="") as fh:
        csv.writer(fh).writerows([r[:i] + r[i + 1:] for r in rows])
    assert main(["check", str(exported), "--against", T2]) == 3
    out = capsys.readouterr().out
    assert out.count("not measured:") == 8 and "not measured: Qwen2.5-32B / Clip-higher: amc" in out
    edit(exported, "Qwen2.5-7B", "GRPO", "math500", lambda v: "90.0")   # a failure outranks incompleteness
    assert main(["check", str(exported), "--against", T2]) == 1
    capsys.readouterr()


def test_check_md_states_each_tolerance_formula_and_inputs(exported, capsys):
    assert main(["check", str(exported.parent), "--against", T2, "--tolerance", "math500=5"]) == 0
    md = (exported.parent / "check.md").read_text()
    # AIME24 avg@32 on 30 problems at 21.2%: the ±10.7 a user asked about, with where it comes from
    assert "| Qwen2.5-7B | GRPO | aime24 | 21.2 | 21.2 | +0.0 | ±10.7 | yes | max(1, 2·100·sqrt(p(1-p)/(n·k_eff))), " \
           "p=21.2%, n=30, k=32, k_eff=1.94 (rho=0.5) |" in md
    assert "| math500 | 78.8 | 78.8 | +0.0 | ±5.0 | yes | --tolerance math500=5 |" in md
    assert "·sqrt(Σ se²)/7) over aime24" in md and "## Tolerances" in md and "rho = 0.5" in md
    capsys.readouterr()


@pytest.mark.parametrize("text,needle", [
    ("model,aime24\nQwen2.5-7B,20\n", "missing column(s) method"),
    ("model,method,aime24\nQwen2.5-7B,GRPO,abc\n", "'abc' is not a number"),
    ("model,method,aime_2024x\nQwen2.5-7B,GRPO,20\n", "unknown column"),
    ("model,method,aime24\nQwen2.5-7B,PPO,20\n", "unknown method 'PPO'"),
    ("model,method,aime24,amc\nQwen2.5-7B,GRPO,0.2,0.5\n", "in percent"),
    ("model,method,aime24\nQwen2.5-7B,GRPO,120\n", "0 to 100"),
])
def test_malformed_csv_exits_2_with_one_line(tmp_path, capsys, text, needle):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    assert main(["check", str(path), "--against", T2]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err


def test_bad_table_or_path_exit_2(tmp_path, capsys):
    assert main(["check", str(tmp_path / "none.csv"), "--against", T2]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["check", str(tmp_path), "--against", T2]) == 2                        # dir without table.csv
    assert "has no table.csv" in capsys.readouterr().err
    assert main(["check", "--export", "entropy-mechanism/table9"]) == 2
    assert "unknown reported table" in capsys.readouterr().err
    assert main(["check", "--export", "entropy-mechanism/table1"]) == 2
    assert "no model x method cells" in capsys.readouterr().err


def test_subprocess_exit_codes_and_export_to_stdout(tmp_path):
    root = Path(__file__).resolve().parents[1]
    run = lambda *a: subprocess.run([sys.executable, "-m", "replicate", "check", *a], capture_output=True,
                                    text=True, cwd=root, env={"PYTHONPATH": str(root), "PATH": ""})
    exp = run("--export", T2)
    assert exp.returncode == 0 and exp.stdout.splitlines()[0] == "model,method," + ",".join(BENCHES)
    (tmp_path / "table.csv").write_text(exp.stdout.replace("Qwen2.5-7B,GRPO,21.2", "Qwen2.5-7B,GRPO,oops"))
    bad = run(str(tmp_path), "--against", T2)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr


def test_omni_math_task_and_gold_answers(tmp_path):
    from evaluators.lmeval import BENCHMARKS
    from evaluators.math import gold_answer
    assert BENCHMARKS["omni_math"] == ("omni_math", "KbsdJames/Omni-MATH", "test")
    (tmp_path / "omni_math.jsonl").write_text(
        '{"domain": ["Mathematics -> Algebra"], "difficulty": 5.0, "problem": "Find x.", '
        '"solution": "... so $x = \\\\frac{1}{2}$.", "answer": "$\\\\frac{1}{2}$", "source": "test"}\n'
        '{"domain": ["Mathematics -> Number Theory"], "difficulty": 7.5, "problem": "Find n.", '
        '"solution": "n is 3.", "answer": "\\\\boxed{n = 3}", "source": "test"}\n')
    records = [json.loads(line) for line in (tmp_path / "omni_math.jsonl").read_text().splitlines()]
    assert [gold_answer(r) for r in records] == ["\\frac{1}{2}", "n = 3"]
    from evaluators.math import score
    assert score("so \\boxed{0.5}", gold_answer(records[0])) == 1.0 and score("\\boxed{3}", gold_answer(records[1])) == 1.0
    assert score("\\boxed{2}", gold_answer(records[0])) == 0.0
    pytest.importorskip("lm_eval")
    from evaluators.lmeval import write_tasks
    names = write_tasks(tmp_path / "tasks", ["omni_math"], tmp_path, k=1)
    cfg = yaml.safe_load((tmp_path / "tasks" / f"{names[0]}.yaml").read_text().replace("!function ", ""))
    assert cfg["dataset_kwargs"]["data_files"]["test"].endswith("omni_math.jsonl")


def test_a_check_of_a_committed_reference_writes_under_results_not_into_figures(tmp_path, monkeypatch, capsys):
    """figures/table2 holds the small-scale table2 reference: checking it leaves the git tree as it was."""
    from replicate.paths import reference_dir
    monkeypatch.setenv("REPLICATE_HOME", str(tmp_path))
    ref = reference_dir() / "table2"
    before = sorted(p.name for p in ref.iterdir())
    code = main(["check", str(ref), "--against", T2])
    assert sorted(p.name for p in ref.iterdir()) == before
    res = json.loads((tmp_path / "results" / "check" / "table2" / "check.json").read_text())
    # its rows are the tiny-scale arms, none of the paper's cells; the two orderings among them hold
    assert code == 0 and not any(c["within"] is not None for c in res["cells"])
    assert ("PASS (orderings only: no row is a model of the paper's table, so no cell was compared); 2 ordering "
            "claims hold on the measured means (a point comparison") in capsys.readouterr().out


def test_an_unknown_table_lists_only_tables(capsys):
    """The artifact and recipe lists under experiments/reported/ are not tables to check against."""
    assert main(["check", "x.csv", "--against", "entropy-mechanism/nosuch"]) == 2
    err = capsys.readouterr().err
    assert "entropy-mechanism/table2" in err and "artifacts" not in err and "recipes" not in err
