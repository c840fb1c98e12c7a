"""`compare A B` and its gate: a fresh fig1 smoke run gated against itself passes; a moved mean or a changed
verdict fails with the claim named; the difference's interval is Welch's."""
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from scipy import stats

from replicate.report.compare import diff_interval, gate_problem

REPO = Path(__file__).resolve().parent.parent


def _cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(REPO), "REPLICATE_HOME": str(cwd), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "replicate", *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=900)


def test_diff_interval_is_welch_on_known_values():
    a, b = [1.0, 2.0, 3.0], [2.0, 4.0, 6.0, 8.0]
    d, lo, hi = diff_interval(a, b)
    va, vb = 1.0 / 3, (20 / 3) / 4
    df = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 3)
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    assert d == pytest.approx(-3.0) and (lo, hi) == pytest.approx((-3 - half, -3 + half))
    assert math.isnan(diff_interval([1.0], [2.0, 3.0])[1])  # one seed: no interval
    assert diff_interval([1.0, 1.0], [1.0, 1.0]) == (0.0, 0.0, 0.0)


def test_gate_rule():
    ref = {"verdict": "replicated", "mean": 0.5, "ci95": [0.4, 0.6]}
    assert gate_problem({"verdict": "replicated", "mean": 0.55, "ci95": [0, 1]}, ref) is None
    assert "outside the reference's 95% interval" in gate_problem({"verdict": "replicated", "mean": 0.65}, ref)
    assert gate_problem({"verdict": "inconclusive", "mean": 0.5}, ref) == "verdict replicated -> inconclusive"
    one = {"verdict": "inconclusive", "mean": 0.5, "ci95": [None, None]}
    assert gate_problem({"verdict": "inconclusive", "mean": 0.5}, one) is None
    assert "single-seed" in gate_problem({"verdict": "inconclusive", "mean": 0.51}, one)


def test_fresh_fig1_smoke_gated_against_itself(tmp_path, fig_store):
    """Two fig1 smoke results from the same runs pass the gate; moving a mean or a verdict fails it, named."""
    for out in ("a", "b"):
        res = _cli("fig1", "--seeds", "2", "--steps", "12", "--out", str(tmp_path / out), "--store", str(fig_store),
                   cwd=tmp_path)
        assert res.returncode == 0, res.stderr[-2000:]
    ok = _cli("compare", str(tmp_path / "a"), str(tmp_path / "b"), "--gate", "--out", str(tmp_path / "cmp"), cwd=tmp_path)
    assert ok.returncode == 0 and "GATE PASS" in ok.stdout, ok.stdout + ok.stderr
    claims = json.loads((tmp_path / "a" / "claims.json").read_text())["claims"]
    first = claims[0]
    per_seed = ", ".join(f"{v:.3g}" for v in first["values"])
    assert f"| {first['id']} | " in ok.stdout and f"({per_seed})" in ok.stdout
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 10_000

    moved = tmp_path / "moved"
    shutil.copytree(tmp_path / "b", moved)
    payload = json.loads((moved / "claims.json").read_text())
    c = next(c for c in payload["claims"] if c["ci95"][0] is not None)
    width = c["ci95"][1] - c["ci95"][0]
    c["ci95"] = [c["ci95"][0] + 2 * width, c["ci95"][1] + 2 * width]  # the reference's interval moves away
    other = next(x for x in payload["claims"] if x["id"] != c["id"])
    other["verdict"] = "replicated" if other["verdict"] != "replicated" else "not replicated"
    (moved / "claims.json").write_text(json.dumps(payload))
    bad = _cli("compare", str(tmp_path / "a"), str(moved), "--gate", "--out", str(tmp_path / "cmp2"), cwd=tmp_path)
    assert bad.returncode == 1 and "GATE FAIL" in bad.stdout, bad.stdout + bad.stderr
    assert f"{c['id']}: mean" in bad.stdout and "outside the reference's 95% interval" in bad.stdout
    assert f"{other['id']}: verdict {other['verdict']} -> " in bad.stdout
    assert f"**{other['id']}** (changed)" in bad.stdout  # verdict changes are highlighted in the table


def test_a_near_miss_of_a_spec_id_is_named_and_a_missing_reference_folder_is_not_an_error(tmp_path, monkeypatch):
    import replicate.paths
    from replicate.report.compare import _did_you_mean
    assert _did_you_mean("fgi1").startswith("did you mean fig1") and _did_you_mean("results/fgi1") == ""
    monkeypatch.setattr(replicate.paths, "reference_dir", lambda: tmp_path / "none")  # an install without figures/
    assert _did_you_mean("fgi1") == ""
