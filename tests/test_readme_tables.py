"""The README's two-scale table quotes the committed references: each row's verdict, number and interval equal
figures/<spec>/claims.json (tiny) and figures/<spec>/small/claims.json (small), and every claim of a listed spec
has one row, so a regenerated reference that moves a verdict cannot leave the README behind."""
import functools
import json
import re
from pathlib import Path

import pytest

from replicate.report.claims import rests_on_flagged as claims_rests_on_flagged

ROOT = Path(__file__).resolve().parent.parent
ROW = re.compile(r"^\| (?P<spec>[\w-]+) \| (?P<claim>\w+) \| (?P<tiny>[^|]+) \| (?P<small>[^|]+) \|$")
CELL = re.compile(r"^(not replicated|replicated|inconclusive)(?P<flagged>†?) \((?:worst (?P<worst>\S+)|(?P<mean>\S+) "
                  r"\[(?P<lo>\S+), (?P<hi>\S+)\])\)$")


def rows() -> list[dict]:
    """Rows of the README's table whose header reads `| spec | claim | tiny... | small... |`."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("| spec | claim | tiny")), None)
    assert start is not None, "README.md has no two-scale table (a header `| spec | claim | tiny ... | small ... |`)"
    out = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        m = ROW.match(line)
        assert m, f"README two-scale table: cannot read row {line!r}"
        out.append(m.groupdict())
    return out


def parse_cell(cell: str) -> dict:
    """'replicated (0.1 [-0.0025, 0.202])' -> verdict, mean, lo, hi; 'not replicated (worst 1.19)' -> verdict, worst."""
    m = CELL.match(cell.strip())
    assert m, f"README two-scale table: cannot read cell {cell!r}"
    numbers = {k: float(v) for k, v in m.groupdict().items() if v is not None and k != "flagged"}
    return {"verdict": m.group(1), "flagged": m.group("flagged") == "†", **numbers}


@functools.cache
def reference(spec: str, scale: str) -> dict:
    return json.loads((ROOT / "figures" / spec / ("" if scale == "tiny" else scale) / "claims.json").read_text())


def claims(spec: str, scale: str) -> dict:
    return {c["id"]: c for c in reference(spec, scale)["claims"]}


def rests_on_flagged(spec: str, scale: str, claim: str) -> bool:
    """Whether the reference's verdict differs without its flagged runs (claims.md's † rule)."""
    ref = reference(spec, scale)
    return claim in claims_rests_on_flagged(ref["claims"], ref.get("health"))


def test_every_claim_of_each_listed_spec_has_one_row():
    table = [(r["spec"], r["claim"]) for r in rows()]
    assert len(table) == len(set(table)), "README two-scale table: a claim has two rows"
    for spec in {s for s, _ in table}:
        assert {c for s, c in table if s == spec} == set(claims(spec, "tiny")) | set(claims(spec, "small")), spec
    assert {s for s, _ in table} >= {"fig1", "fig8", "lemma-lm", "fig11", "table2", "fig3"}


@pytest.mark.parametrize("scale", ["tiny", "small"])
def test_each_row_quotes_its_reference(scale):
    for row in rows():
        cell, claim = parse_cell(row[scale]), claims(row["spec"], scale)[row["claim"]]
        where = f"README row {row['spec']}/{row['claim']} ({scale})"
        assert cell["verdict"] == claim["verdict"], f"{where}: says {cell['verdict']}, the reference {claim['verdict']}"
        assert cell["flagged"] == rests_on_flagged(row["spec"], scale, row["claim"]), f"{where}: † (rests on " \
            "flagged runs) must mark exactly the verdicts that differ without them"
        every = claim.get("over") in ("every", "all")
        assert ("worst" in cell) == every, f"{where}: a claim over {claim.get('over')} is quoted as " + (
            "its worst run" if every else "mean [interval]")
        quoted = ({"worst": claim["worst"]} if every
                  else dict(zip(("mean", "lo", "hi"), [claim["mean"], *claim["ci95"]])))
        for key, value in quoted.items():
            assert f"{cell[key]:.3g}" == f"{value:.3g}", f"{where}: quotes {key} {cell[key]}, the reference {value:.3g}"


def test_parse_cell_reads_both_forms_and_refuses_others():
    assert parse_cell(" not replicated (worst 1.19) ") == {"verdict": "not replicated", "flagged": False, "worst": 1.19}
    assert parse_cell("inconclusive (-0.00931 [-0.0941, 0.0755])") == {
        "verdict": "inconclusive", "flagged": False, "mean": -0.00931, "lo": -0.0941, "hi": 0.0755}
    assert parse_cell("replicated† (0.25 [0.006, 0.5])")["flagged"]
    with pytest.raises(AssertionError):
        parse_cell("replicated (0.999)")


def _cross_cpu(tier: str):
    import json
    record = json.loads((ROOT / "figures" / "cross-cpu" / f"{tier}-amd-epyc-vs-intel-xeon.json").read_text())
    claims = [c for rows in record["specs"].values() for c in rows]
    return record, claims, sum(c["a"]["verdict"] == c["b"]["verdict"] for c in claims)


def test_cross_cpu_small_counts_in_the_docs_are_the_committed_comparisons():
    record, claims, same = _cross_cpu("small")
    values = sum(len(c["a"]["values"]) for c in claims)
    equal = sum(c["values_equal"] for c in claims)
    doc = (ROOT / "docs" / "cross-cpu.md").read_text()
    assert f"**{same} of {len(claims)} verdicts are the same; {equal} of {values} per-seed values" in doc
    assert f"{same} of {len(claims)} the same" in " ".join((ROOT / "README.md").read_text().split())
    moved = [(spec, c["id"]) for spec, rows in record["specs"].items() for c in rows
             if c["a"]["verdict"] != c["b"]["verdict"]]
    assert moved and all(f"| {spec} small `{cid}` |" in doc for spec, cid in moved)


def test_cross_cpu_counts_in_the_docs_are_the_committed_comparisons():
    """docs/cross-cpu.md and the README quote the verdicts and per-seed values that the committed cross-CPU record
    (figures/cross-cpu/) holds: counted here from its per-claim rows, not copied."""
    record, claims, same = _cross_cpu("tiny")
    values = sum(len(c["a"]["values"]) for c in claims)
    equal = sum(sum(x == y for x, y in zip(c["a"]["values"], c["b"]["values"])) for c in claims)
    assert all(c["values_equal"] == sum(x == y for x, y in zip(c["a"]["values"], c["b"]["values"])) for c in claims)
    doc = (ROOT / "docs" / "cross-cpu.md").read_text()
    assert f"**{same} of {len(claims)} verdicts are the same; {equal} of {values} per-seed values" in doc
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert f"{same} of {len(claims)} verdicts the same, {equal} of {values:,} per-seed values" in readme
    for spec, rows in record["specs"].items():
        for c in rows:
            if c["a"]["verdict"] != c["b"]["verdict"]:
                assert f"| {spec} `{c['id']}` |" in doc


def test_the_small_step_ratios_quoted_are_the_committed_bench_runs():
    """The README and docs/testbed/small.md quote `bench small-step --against`'s speedups and medians as the
    committed JSONs hold them (figures/bench/), not typed in."""
    import json
    import statistics
    readme = " ".join((ROOT / "README.md").read_text().split())
    doc = (ROOT / "docs" / "testbed" / "small.md").read_text()
    for name in ("small-step-vs-479b383-amd-epyc-cpu-3", "small-step-vs-479b383-amd-epyc-cpu-4",
                 "small-step-vs-829904b-amd-epyc-cpu", "small-step-vs-479b383-amd-epyc-zen4-cpu"):
        record = json.loads((ROOT / "figures" / "bench" / f"{name}.json").read_text())
        here = statistics.median(s["step_s"] for s in record["steps"]["here"])
        assert record["here"]["dirty"] is False
        assert f"{record['speedup']:.2f}x" in readme and f"{record['speedup']:.2f}x" in doc
        assert f"{here:.2f} s" in readme


def test_the_rl_step_and_sandbox_rows_quote_their_committed_bench_runs():
    """The README's Speed rows for `bench rl-step` and `bench evaluators` carry the step times and ratios their
    JSONs hold (figures/bench/), each row naming its file."""
    import json
    rows = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("| ")]
    for name, extra in (("rl-step-amd-epyc-cpu", ()), ("rl-step-cpu", ()),
                        ("rl-step-amd-epyc-zen4-cpu", ("rl-step-amd-epyc-zen4-cpu-2", "rl-step-amd-epyc-zen4-cpu-3"))):
        record = json.loads((ROOT / "figures" / "bench" / f"{name}.json").read_text())
        row = next(r for r in rows if f"figures/bench/{name}.json" in r)
        cells = [c.strip() for c in row.split("|")]
        assert f"{record['ours']['step_s']:.3f}" == cells[3] and f"{record['trl']['step_s']:.3f}" in cells[4], name
        assert cells[5] == f"{record['ours_over_trl']:.2f}x faster", name
        for other in extra:
            ratio = json.loads((ROOT / "figures" / "bench" / f"{other}.json").read_text())["ours_over_trl"]
            assert f"{ratio:.2f}x" in cells[2], other
    for name in ("evaluators-amd-epyc-cpu", "evaluators-amd-epyc-zen4-cpu"):
        code = json.loads((ROOT / "figures" / "bench" / f"{name}.json").read_text())["code"]
        cells = [c.strip() for c in next(r for r in rows if f"{name}.json" in r).split("|")]
        assert cells[3] == f"{code['sandbox']:.1f} (warm jails)" and cells[4] == f"plain subprocess {code['plain']:.1f}"
        assert cells[5] == f"{code['sandbox_over_plain']:.2f}", name


def test_the_tiny_code_change_record_is_the_references_against_the_old_code_on_one_cpu():
    """figures/cross-cpu/tiny-code-change-amd-epyc.json: its side a is the committed tiny references, its side b the
    AMD re-run of the old code that the cross-CPU record holds (two records agreeing); the docs quote its count."""
    record = json.loads((ROOT / "figures" / "cross-cpu" / "tiny-code-change-amd-epyc.json").read_text())
    older, _, _ = _cross_cpu("tiny")
    moved = set()
    for spec, rows in record["specs"].items():
        ref = claims(spec, "tiny")
        old = {c["id"]: c["a"] for c in older["specs"][spec]}
        for c in rows:
            assert c["b"] == old[c["id"]], f"{spec}/{c['id']}: side b is not the cross-CPU record's AMD re-run"
            if c["a"]["values"] != ref[c["id"]]["values"]:
                moved.add(f"{spec}/{c['id']}")
            else:
                assert c["a"]["verdict"] == ref[c["id"]]["verdict"], f"{spec}/{c['id']}"
    # fresh seeds since 2026-12-07 (DAST 4-19, dast.md's fourth round; fig12 3-18; fig1, fig6, fig8-fig11, table1,
    # table2 20 and up, docs/power.md "Plans at 80% power"; fig2-fig5 and fig7 20-31, its second round; lemma-lm
    # 20-28, its third): every value of theirs moved (the stats audit's analysis fixes had moved some before, fig5's
    # and fig9-fig11's)
    reseeded = {f"{spec}/{c['id']}" for spec in ("dast-levels", "dast-table1", "dast-ablation", "fig12", "fig1", "fig6",
                                                 "fig8", "fig9", "fig10", "fig11", "table1", "table2", "fig2", "fig3",
                                                 "fig4", "fig5", "fig7", "lemma-lm")
                for c in record["specs"][spec]}
    assert reseeded == moved
    rows = [c for r in record["specs"].values() for c in r]
    equal = sum(sum(x == y for x, y in zip(c["a"]["values"], c["b"]["values"])) for c in rows)
    values = sum(len(c["a"]["values"]) for c in rows)
    assert f"bit for bit: {equal:,} of {values:,} per-seed values" in " ".join(
        (ROOT / "docs" / "cross-cpu.md").read_text().split())
