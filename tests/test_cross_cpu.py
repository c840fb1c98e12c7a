"""figures/cross-cpu/EQUAL_KINDS: the CPU kinds besides the references' own on which .ci/run gates fig1
(scripts/gate_kind.sh). A kind is listed only with a committed record (scripts/cross_cpu_record.py) of tiny
references re-run there at the references' code fingerprint, fig1's among them, every verdict the same and every
per-seed value equal to the reference's up to float rounding."""
import json
import math
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CROSS = ROOT / "figures" / "cross-cpu"


def equal_kinds() -> list[list[str]]:
    lines = (CROSS / "EQUAL_KINDS").read_text().splitlines()
    return [line.split("\t") for line in lines if line.strip() and not line.startswith("#")]


def tiny_references() -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in (ROOT / "figures").glob("*/claims.json")}


def close(x, y) -> bool:
    """Equal up to float rounding; None only with None, NaN only with NaN."""
    if x is None or y is None:
        return x is None and y is None
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12)


def assert_rows_match(record: dict, refs: dict[str, dict], stale: str) -> None:
    """Side b of each row is the reference's claim as committed; side a has its verdict and every value up to float
    rounding; values_equal counts the values equal as stored."""
    for spec, rows in record["specs"].items():
        ref = {c["id"]: c for c in refs[spec]["claims"]}
        assert [r["id"] for r in rows] == list(ref), f"{spec}: {stale}"
        for r in rows:
            b, want = r["b"]["values"], ref[r["id"]]["values"]
            assert list(map(repr, b)) == list(map(repr, want)), f"{spec}/{r['id']}: {stale}"
            assert r["a"]["verdict"] == r["b"]["verdict"], f"{spec}/{r['id']}"
            assert len(r["a"]["values"]) == len(b) and all(map(close, r["a"]["values"], b)), f"{spec}/{r['id']}"
            assert r["values_equal"] == sum(repr(x) == repr(y) for x, y in zip(r["a"]["values"], b))


def counts_quote(record: dict) -> str:
    """How docs/cross-cpu.md states a record: verdicts the same, and values equal bit for bit, counted from its rows."""
    rows = [r for rs in record["specs"].values() for r in rs]
    same = sum(r["a"]["verdict"] == r["b"]["verdict"] for r in rows)
    values = sum(len(r["b"]["values"]) for r in rows)
    equal = sum(r["values_equal"] for r in rows)
    return f"**{same} of {len(rows)} verdicts are the same; {equal:,} of {values:,} per-seed values"


def test_every_equal_kind_reproduces_the_current_references():
    kinds, refs = equal_kinds(), tiny_references()
    assert all(len(k) == 2 for k in kinds), "EQUAL_KINDS: one '<scripts/cpu_kind.sh line>\\t<record>' per line"
    made_at = {r["provenance"]["code_fingerprint"] for r in refs.values()}
    assert len(made_at) == 1
    for kind, name in kinds:
        record = json.loads((CROSS / name).read_text())
        stale = f"{kind}: re-run docs/cross-cpu.md's check on that kind or remove its line from EQUAL_KINDS"
        assert record["a"]["cpu_kind_line"] == kind, f"{name} was not made on {kind}"
        assert record["b"]["cpu_kind_line"] == (ROOT / "figures" / "CPU_KIND").read_text().strip() != kind, stale
        assert {record["a"]["code_fingerprint"], record["b"]["code_fingerprint"]} == made_at, stale
        assert "fig1" in record["specs"] and set(record["specs"]) <= set(refs), stale  # fig1: the spec .ci/run gates
        assert_rows_match(record, refs, stale)


def test_the_docs_quote_the_equal_kinds_records():
    """docs/cross-cpu.md quotes each listed record's counts, counted here from its rows."""
    doc = " ".join((ROOT / "docs" / "cross-cpu.md").read_text().split())
    for _, name in equal_kinds():
        assert counts_quote(json.loads((CROSS / name).read_text())) in doc, name


@pytest.mark.parametrize("kind, gated", [("REF;", True), ("LISTED;", True), ("OTHER;", False), ("", False),
                                         ("# a comment;", False)])
def test_gate_kind_holds_on_the_references_kind_and_the_listed_ones(tmp_path, kind, gated):
    """scripts/gate_kind.sh: whole lines only; a comment, a blank line or an unreadable kind never gates."""
    (tmp_path / "figures" / "cross-cpu").mkdir(parents=True)
    (tmp_path / "figures" / "CPU_KIND").write_text("REF;\n")
    (tmp_path / "figures" / "cross-cpu" / "EQUAL_KINDS").write_text("# a comment;\n\nLISTED;\trecord.json\n")
    env = {**os.environ, "ROOT": str(tmp_path), "KIND": kind}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gate_kind.sh")], env=env, capture_output=True)
    assert (done.returncode == 0) is gated, done.stderr


def test_the_ci_run_gates_where_gate_kind_says():
    assert "if KIND=\"$cpu\" bash scripts/gate_kind.sh; then\n  python -m replicate compare \"$gate/fig1\" fig1 --gate" in (
        ROOT / ".ci" / "run").read_text()


def write_claims(root: Path, spec: str, scale: str, values: list, verdict: str, kind: str) -> None:
    """A references folder with one spec's claims.json (one claim) and its CPU_KIND, as regenerate.sh leaves them."""
    folder = root / spec / ("" if scale == "tiny" else scale)
    folder.mkdir(parents=True)
    claim = {"id": "c", "over": "mean", "op": "<=", "threshold": 1.0, "verdict": verdict, "mean": 0.5,
             "worst": max(values), "ci95": [0.0, 1.0], "values": values}
    (folder / "claims.json").write_text(json.dumps({"provenance": {"code_fingerprint": "f00"}, "claims": [claim]}))
    (root / "CPU_KIND").write_text(kind + "\n")


@pytest.mark.parametrize("scale", ["tiny", "small"])
def test_the_record_counts_values_equal_bit_for_bit(tmp_path, scale):
    """scripts/cross_cpu_record.py: a value one float64 ulp away, or -0.0 for 0.0, is not equal; NaN is NaN."""
    b_values = [math.nan, math.nan, 0.0, 0.5, 0.75, 0.25]  # bits: 3 equal; ==: 2, isclose: 4, isclose or NaN: 6
    a_values = [math.nan, math.nan, -0.0, math.nextafter(0.5, 1), math.nextafter(0.75, 0), 0.25]
    write_claims(tmp_path / "a", "fig1", scale, a_values, "replicated", "A;")
    write_claims(tmp_path / "b", "fig1", scale, b_values, "replicated", "B;")
    out = tmp_path / "record.json"
    done = subprocess.run(["python", str(ROOT / "scripts" / "cross_cpu_record.py"), str(tmp_path / "a"),
                           str(tmp_path / "b"), "--out", str(out), "--scale", scale, "fig1"], capture_output=True,
                          text=True)  # SPEC after the options, as the docstring writes it
    assert done.returncode == 0, done.stderr
    record = json.loads(out.read_text())
    assert (record["scale"], record["a"]["cpu_kind_line"], record["b"]["cpu_kind_line"]) == (scale, "A;", "B;")
    [row] = record["specs"]["fig1"]
    assert row["values_equal"] == 3 and row["b"]["values"][2:] == b_values[2:]
    assert "1 specs: 1 of 1 verdicts the same; 3 of 6 per-seed values equal bit for bit" in done.stdout


def test_the_small_zen4_record_is_of_the_seeds_0_5_small_references():
    """figures/cross-cpu/small-amd-epyc-zen4-vs-zen5.json: side b is fig1 and fig8's small references on seeds 0-5
    (since 2026-12-07 their fresh seeds' pilot, kept under figures/pilots/), at their fingerprint, and
    docs/cross-cpu.md quotes its counts, counted here from its rows."""
    record = json.loads((CROSS / "small-amd-epyc-zen4-vs-zen5.json").read_text())
    refs = {s: json.loads((ROOT / "figures" / "pilots" / f"{s}-small-0-5" / "claims.json").read_text())
            for s in record["specs"]}
    assert record["scale"] == "small" and set(refs) == {"fig1", "fig8"}
    stale = "re-run the small check (docs/cross-cpu.md) or drop the record"
    assert record["a"]["code_fingerprint"] == record["b"]["code_fingerprint"] == refs["fig1"]["provenance"][
        "code_fingerprint"], stale
    assert_rows_match(record, refs, stale)
    assert counts_quote(record) in " ".join((ROOT / "docs" / "cross-cpu.md").read_text().split())
