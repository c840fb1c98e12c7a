"""scripts/base_vs_rl.py: the per-run base-versus-RL table from a run directory's metrics, on known values."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "base_vs_rl.py"


def fake_run(store: Path, name: str) -> Path:
    """A finished run: step 0 with the sharpening evaluation, 8 steps, evaluations at steps 0, 3, 6 and 7."""
    run = store / name
    run.mkdir(parents=True)
    (run / "config.json").write_text("{}")
    rows = [{"step": 0, "entropy": 1.2, "eos_share": 1.0, "val_acc": 0.4, "base_acc_1": 0.25, "base_acc_0.6": 0.625,
             "base_acc_greedy": 0.5}]
    rows += [{"step": s, "entropy": 1.0 - 0.1 * s, "eos_share": 0.5} for s in range(1, 8)]
    for step, acc in ((3, 0.5), (6, 0.75), (7, 1.0)):
        rows[step]["val_acc"] = acc
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (run / "DONE").write_text("done\n")
    return run


def test_the_row_holds_the_known_values(tmp_path):
    run = fake_run(tmp_path, "small-ent_1e-4-s21-0a1b2c")
    spec = importlib.util.spec_from_file_location("base_vs_rl", SCRIPT)  # as test_two_way loads its script
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    row = script.run_row(run)
    assert (row["arm"], row["seed"], row["base_greedy"], row["base_best"]) == ("ent_1e-4", 21, 0.5, 0.625)
    assert row["rl_final"] == 0.75  # mean of the last three evaluations: 0.5, 0.75, 1.0
    assert abs(row["entropy_end"] - 0.5) < 1e-12  # steps 3-7: 0.7, 0.6, 0.5, 0.4, 0.3
    assert (row["entropy_start"], row["eos_last"]) == (1.2, 0.5)


def test_an_unfinished_run_is_refused_in_one_line(tmp_path):
    run = fake_run(tmp_path, "small-main-s20-0a1b2c")
    (run / "DONE").unlink()
    done = subprocess.run([sys.executable, str(SCRIPT), str(run)], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "not a finished run" in done.stderr
    assert "Traceback" not in done.stderr
