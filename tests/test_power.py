"""Seeds for a decisive verdict (analysis/power.py) and Holm's correction over a spec's claims (claims.py)."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy import stats

from replicate.analysis.power import (claim_power, power_at, power_table, power_text, sd_upper,
                                      seeds_for_power, seeds_needed)
from replicate.report.claims import holm, holm_reject, mean_ci, p_value, verdict
from replicate.cli import main


def test_seeds_needed_known_values():
    # sd 1, effect 1: t_{0.975,n-1}/sqrt(n) < 1 first at n = 7 (2.447/2.449 = 0.9992; n = 6: 2.571/2.449 = 1.05)
    assert seeds_needed(1.0, 1.0, 0.0) == 7
    # fig11's grpo_collapses from the committed reference (issue 21 counted 4 seeds): mean 0.4538, sd 0.0265
    assert seeds_needed(0.45383708466802936, 0.02650, 0.5) == 4
    assert seeds_needed(0.5, 1.0, 0.5) is None  # no effect: no seed count decides it
    assert seeds_needed(0.5, 0.0, 0.4) == 2     # no spread: two seeds decide it


@settings(max_examples=60, deadline=None)
@given(st.floats(0.01, 3), st.floats(0.05, 2))
def test_seeds_needed_is_the_smallest_deciding_n(effect, sd):
    n = seeds_needed(effect, sd, 0.0)
    half = lambda k: stats.t.ppf(0.975, k - 1) * sd / math.sqrt(k)
    if n is None:
        assert half(10_000) >= effect
    else:
        assert half(n) < effect and (n == 2 or half(n - 1) >= effect)


@settings(max_examples=60, deadline=None)
@given(st.integers(3, 8), st.floats(-1, 1), st.integers(0, 10_000))
def test_at_the_needed_n_the_interval_decides(n, shift, seed):
    """Cross-check: values with the planned mean and sd, n = seeds_needed of them, give a decisive verdict
    (and one seed fewer does not)."""
    z = np.random.default_rng(seed).standard_normal(n)
    if z.std(ddof=1) < 1e-6:
        return
    v = shift + (z - z.mean()) / z.std(ddof=1) * 0.3  # mean `shift`, sd 0.3 exactly
    need = seeds_needed(shift, 0.3, 0.0)
    if need is not None and need == n:
        assert verdict(list(v), ">", 0.0) != "inconclusive"
    if need is not None and n < need:
        assert verdict(list(v), ">", 0.0) == "inconclusive"


def test_claim_power_warns_below_three_seeds_and_skips_every_claims():
    row = {"id": "c", "metric": "m", "values": [0.1, 0.3], "threshold": 0.0, "over": "mean"}
    out = claim_power(row)
    assert out["n"] == 2 and "only 2" in out["warning"] and out["needed"] == seeds_needed(0.2, math.sqrt(0.02), 0.0)
    assert claim_power({**row, "over": "every"})["needed"] is None
    assert "warning: only 2" in power_text("x", "test", [out])


def test_power_cli_on_a_pilot(tmp_path, capsys):
    """The fig11 AMD reference's GRPO entropy ratios (issue 21 counted 4 seeds for grpo_collapses), as a pilot; the
    spec's other claims have no values in it and say so."""
    import json
    per_seed = {"entropy_final_over_initial": {"grpo": [0.45774801437538876, 0.47820126644968025, 0.425561973179019]}}
    (tmp_path / "claims.json").write_text(json.dumps({"seeds": [0, 1, 2], "per_seed": per_seed}))
    assert main(["power", "fig11", "--pilot", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    # effect/sd 1.74: 80% power at 5 seeds, 8 at Holm's 0.05 / 7 (fig11 has seven mean claims); at the spec's 33
    # judged seeds, power 1 (at 10 it would be 0.998)
    assert next(l for l in lines if l.startswith("grpo_collapses")).split() == [
        "grpo_collapses", "3", "0.0265", "-0.0462", "4", "5", "8", "1"]
    assert f"{power_at(-0.0462, 0.0265, 10):.3g}" == "0.998"
    assert "only 0 measured seed(s)" in next(l for l in lines if l.startswith("kl_cov_holds_entropy"))
    assert main(["power", "fig11"]) == 0  # the committed reference (whatever its values) reads too


def test_power_cli_reads_an_unmeasured_seed_as_missing(tmp_path, capsys):
    """claims.json writes an unmeasured seed as null (fig8 small's easy_prompts_larger_cov has two): power plans on
    the measured values, the same row as a pilot without that seed (it raised TypeError on the null)."""
    import json
    ratios = [0.45774801437538876, 0.47820126644968025, 0.425561973179019]
    rows = {}
    for name, values in (("with", [ratios[0], None, *ratios[1:]]), ("without", ratios)):
        (tmp_path / name).mkdir()
        per_seed = {"entropy_final_over_initial": {"grpo": values}}
        (tmp_path / name / "claims.json").write_text(json.dumps({"seeds": [0, 1, 2, 3][:len(values)],
                                                                 "per_seed": per_seed}))
        assert main(["power", "fig11", "--pilot", str(tmp_path / name)]) == 0
        rows[name] = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("grpo_collapses")).split()
    assert rows["with"][:7] == rows["without"][:7] == ["grpo_collapses", "3", "0.0265", "-0.0462", "4", "5", "8"]


def test_power_cli_bad_pilot_is_one_line(tmp_path, capsys):
    assert main(["power", "fig11", "--pilot", str(tmp_path)]) == 2
    assert "no claims.json" in capsys.readouterr().err


@settings(max_examples=80, deadline=None)
@given(st.lists(st.floats(-5, 5), min_size=2, max_size=8), st.floats(-2, 2))
def test_p_value_is_the_t_test_and_matches_the_interval(values, thr):
    v = np.array(values)
    if v.std(ddof=1) < 1e-6:
        return
    p = p_value(values, thr)
    assert p == pytest.approx(stats.ttest_1samp(v, thr).pvalue, rel=1e-9, abs=1e-12)
    _, lo, hi = mean_ci(values)
    if abs(p - 0.05) > 1e-9:
        assert (p < 0.05) == (not lo <= thr <= hi)  # the interval excludes the threshold exactly when p < 0.05


def test_holm_hand_example():
    # m = 3, alpha 0.05: thresholds 0.0167, 0.025, 0.05
    assert holm_reject([0.001, 0.02, 0.04]) == [True, True, True]
    assert holm_reject([0.01, 0.03, 0.04]) == [True, False, False]  # 0.03 >= 0.025 stops the walk
    assert holm_reject([0.04, 0.01, 0.03]) == [False, True, False]  # order does not matter
    assert holm_reject([0.02, 0.001]) == [True, True]               # 0.001 < 0.025, 0.02 < 0.05
    assert holm_reject([0.03, 0.001]) == [True, True]
    assert holm_reject([0.03, 0.03]) == [False, False]              # 0.03 >= 0.025


def _row(values, thr, op=">", over="mean"):
    return {"values": values, "threshold": thr, "op": op, "over": over, "unmeasured": 0,
            "verdict": verdict(values, op, thr, over)}


def test_holm_over_claim_rows():
    strong = _row([1.0, 1.1, 0.9, 1.05], 0.0)        # p ~ 1e-5: stays replicated
    # by hand: mean 0.225, sd 0.1323, t = 0.225 / (0.1323 / 2) = 3.402 on 3 df: p = 0.0424
    weak = _row([0.3, 0.05, 0.35, 0.2], 0.0)
    against = _row([-1.0, -1.1, -0.9, -1.05], 0.0)   # decided against: stays not replicated
    every = _row([0.2, 0.4], 0.0, over="every")      # not in the family
    assert p_value(weak["values"], 0.0) == pytest.approx(0.0424, abs=5e-4)
    assert weak["verdict"] == "replicated"
    # m = 4: strong and against (p ~ 1e-5) pass 0.0125 and 0.0167; the first weak one meets 0.05 / 2 = 0.025 and
    # fails, so both weak ones become inconclusive
    assert holm([strong, weak, against, weak, every]) == ["replicated", "inconclusive", "not replicated",
                                                          "inconclusive", "replicated"]
    assert holm([strong, weak]) == ["replicated", "replicated"]  # 0.042 < 0.05 / 1 after the strong one


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-3, 3), min_size=2, max_size=6), st.floats(-1, 1))
def test_holm_of_one_claim_is_its_verdict(values, thr):
    if np.std(values) < 1e-6 or abs(p_value(values, thr) - 0.05) < 1e-9:
        return
    row = _row(values, thr)
    assert holm([row]) == [row["verdict"]]


def test_claims_md_counts_controls_apart():
    from replicate.report.claims import count_line
    rows = [{"verdict": "replicated", "verdict_holm": "replicated", "control_of": ""},
            {"verdict": "inconclusive", "verdict_holm": "inconclusive", "control_of": ""},
            {"verdict": "not replicated", "verdict_holm": "inconclusive", "control_of": "a"}]
    line = count_line(rows)
    assert line.startswith("1 of 2 claims replicated (1 after a Holm correction")
    assert "0 not replicated (0 after Holm); 1 inconclusive (1 after Holm)." in line  # all three counted
    assert "Controls (a null judged by a claim's own rule; each must come out not replicated): 1 of 1 not " \
           "replicated (0 after Holm)" in line


def test_power_text_marks_effects_beyond_reach():
    rows = [claim_power({"id": "tiny_effect", "metric": "m", "values": [1e-6, 1.0, -1.0], "threshold": 0.0}),
            claim_power({"id": "one", "metric": "m", "values": [0.4], "threshold": 0.0})]
    text = power_text("x", "test", rows)
    row = {line.split()[0]: line.split() for line in text.splitlines() if line.startswith(("tiny_effect", "one "))}
    assert row["tiny_effect"][4:7] == [">10000"] * 3 and row["one"][4:7] == ["?"] * 3


def test_seeds_for_power_known_values():
    """A one-sample two-sided t-test at 0.05 with power 0.8 (G*Power's table): d 0.5 -> 34, 0.8 -> 15, 1 -> 10."""
    assert [seeds_for_power(d, 1.0) for d in (0.5, 0.8, 1.0)] == [34, 15, 10]
    assert seeds_for_power(-1.0, 1.0) == 10  # the side does not matter
    assert power_at(1.0, 1.0, 10) == pytest.approx(0.8031, abs=1e-4)
    assert seeds_for_power(0.0, 1.0) is None and seeds_for_power(1e-6, 1.0) is None  # beyond 10,000 seeds
    assert seeds_for_power(0.5, 0.0) == 2 and power_at(0.5, 0.0, 2) == 1.0


@pytest.mark.parametrize("effect,n", [(1.0, 10), (0.5, 7), (2.0, 3)])
def test_power_at_is_the_rate_verdict_decides(effect, n):
    """Cross-check: normal per-seed values, judged by claims.verdict 3,000 times, come out replicated at the rate
    power_at gives (within 4 binomial SEs)."""
    rng = np.random.default_rng(int(effect * 100) + n)
    hits = sum(verdict(list(effect + rng.standard_normal(n)), ">", 0.0) == "replicated" for _ in range(3000))
    p = power_at(effect, 1.0, n)
    assert abs(hits / 3000 - p) < 4 * math.sqrt(p * (1 - p) / 3000)


@settings(max_examples=60, deadline=None)
@given(st.floats(0.02, 5), st.floats(0.05, 2))
def test_the_decided_rule_buys_at_least_half_power_and_80_needs_more(effect, sd):
    n = seeds_needed(effect, sd, 0.0)
    if n is None:
        return
    assert power_at(effect, sd, n) >= 0.5
    n80, holm80 = seeds_for_power(effect, sd), seeds_for_power(effect, sd, level=1 - 0.05 / 6)
    if n80 is None:  # beyond the 10,000 cap, where the decided rule still fits: 80% asks ~2x
        assert n > 3000
        return
    assert n80 >= n and power_at(effect, sd, n80) >= 0.8
    assert n80 == 2 or power_at(effect, sd, n80 - 1) < 0.8  # the smallest such n
    assert holm80 is None or holm80 >= n80  # Holm's first step asks more


def test_power_table_takes_the_power_at_the_judged_seeds_values():
    """A claim pooling two values per seed (two arms' runs) of a 3-seed pilot gets 2 x 6 values at 6 judged seeds;
    Holm's m counts only the mean claims."""
    rows = [{"id": "pooled", "metric": "m", "values": [0.1, 0.5, 0.3, 0.2, 0.4, 0.3], "threshold": 0.0},
            {"id": "per_seed", "metric": "m", "values": [0.1, 0.5, 0.3], "threshold": 0.0},
            {"id": "every", "metric": "m", "values": [0.1, 0.5, 0.3], "threshold": 0.0, "over": "every"}]
    pooled, per_seed, every = power_table(rows, judged=6, seeds=3)
    assert (pooled["at"], per_seed["at"], every["needed_power"]) == (12, 6, None)
    sd = np.std([0.1, 0.5, 0.3, 0.2, 0.4, 0.3], ddof=1)
    assert pooled["power_at"] == pytest.approx(power_at(0.3, sd, 12))
    assert per_seed["needed_power_holm"] == seeds_for_power(0.3, 0.2, level=1 - 0.05 / 2)


def test_sd_upper_covers_the_true_sd_at_its_confidence():
    """Known factors (sqrt(2 / chi2_{0.2, 2}) = 2.117 for 3 seeds), and a cross-check: 3-seed SDs of unit normals,
    raised to their 0.8 limit, reach 1 in 80% of 4,000 draws (within 4 binomial SEs)."""
    assert sd_upper(1.0, 3, 0.8) == pytest.approx(2.1169, abs=1e-4)
    assert sd_upper(1.0, 6, 0.8) == pytest.approx(1.4610, abs=1e-4)
    sds = np.random.default_rng(5).standard_normal((4000, 3)).std(axis=1, ddof=1)
    covered = np.mean([sd_upper(s, 3, 0.8) >= 1.0 for s in sds])
    assert abs(covered - 0.8) < 4 * math.sqrt(0.16 / 4000)


def test_power_cli_plans_on_the_sd_upper_limit(tmp_path, capsys):
    import json
    per_seed = {"entropy_final_over_initial": {"grpo": [0.45774801437538876, 0.47820126644968025, 0.425561973179019]}}
    (tmp_path / "claims.json").write_text(json.dumps({"seeds": [100, 101, 102], "per_seed": per_seed}))
    assert main(["power", "fig11", "--pilot", str(tmp_path), "--sd-ucl", "0.8"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("grpo_collapses")).split()
    sd = sd_upper(np.std(per_seed["entropy_final_over_initial"]["grpo"], ddof=1), 3, 0.8)
    assert row[2] == f"{sd:.3g}" and row[5] == str(seeds_for_power(-0.0462, sd))
    assert "one-sided 0.8 upper confidence limit" in out
    with pytest.raises(SystemExit) as exit_:
        main(["power", "fig11", "--sd-ucl", "1.5"])
    assert exit_.value.code == 2
    assert "not a probability between 0 and 1" in capsys.readouterr().err


def test_docs_power_table_is_recomputed_and_its_verdicts_are_the_references():
    """docs/power.md: each row's plans and powers follow from its own effect, SD and judged seeds; its verdict is
    the record's (figures/power/), and the record's is the committed reference's wherever that reference still
    judges the same seeds (the DAST specs moved to fresh seeds since); the counts under the table are the table's."""
    import json
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    record = {(r["spec"], r["scale"], r["claim"]): r for r in
              json.loads((root / "figures" / "power" / "pilot-plans-2026-12-07.json").read_text())["rows"]}
    text = (root / "docs" / "power.md").read_text().split("## What the committed references ask")[0]
    rows = _table_rows(text)
    assert len(rows) == len(record) == 29
    show = lambda n: "-" if n is None else str(n)
    still = 0
    for spec, scale, claim, effect, sd, decided, n80, judged, pw, pw_ucl, verdict_ in rows:
        e, s, n = float(effect), float(sd), int(judged)
        assert (decided, n80) == (show(seeds_needed(e, s, 0.0)), show(seeds_for_power(e, s))), claim
        assert (pw, pw_ucl) == (f"{power_at(e, s, n):.2f}", f"{power_at(e, sd_upper(s, 3, 0.8), n):.2f}"), claim
        rec = record[(spec, scale, claim)]
        assert verdict_ == rec["verdict"] and len(rec["judged_seeds"]) == n, claim
        path = root / "figures" / spec / ("" if scale == "tiny" else scale) / "claims.json"
        ref = json.loads(path.read_text())
        c = next(c for c in ref["claims"] if c["id"] == claim)
        if ref["seeds"] == rec["judged_seeds"]:
            still += 1
            assert c["verdict"] == verdict_ and c["mean"] == rec["mean"], claim
        if verdict_ != "inconclusive":  # decided on the pilot's side: replicated iff the pilot's effect holds
            assert (verdict_ == "replicated") == ((e > 0) == c["op"].startswith(">")), claim
    assert still == 0  # the 11 DAST rows (seeds 0-3), the 9 tiny fig11/table2 rows (0-9) and the 9 small ones (0-5):
    # all since on fresh seeds
    decided_rows = [r for r in rows if r[10] != "inconclusive"]
    promised = [r for r in rows if float(r[8]) >= 0.8]
    flat = " ".join(text.split())
    assert f"**{len(decided_rows)} of the {len(rows)} claims came out decided.**" in flat
    assert f"add up to {sum(float(r[8]) for r in rows):.1f} expected decisions" in flat
    assert f"to {sum(float(r[9]) for r in rows):.1f}. Of the {len(promised)} claims" in flat
    assert f"least 0.8 power, {sum(r[10] != 'inconclusive' for r in promised)} were decided" in flat
    readme = " ".join((root / "README.md").read_text().split())
    assert f"{len(rows)} judged claims expected {sum(float(r[8]) for r in rows):.1f} decisive verdicts and got " \
           f"{len(decided_rows)}" in readme


def test_docs_power_reach_table_is_the_references():
    """docs/power.md's second table: every inconclusive mean claim of the committed references that 80% power,
    planned on the SD's 0.8 upper limit, puts within 50 seeds, with both counts recomputed from claims.json."""
    import json
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    want, inconclusive = set(), 0
    for path in sorted((root / "figures").glob("**/claims.json")):
        if path.parent.name in ("cross-cpu", "reward-leaks") or path.parent.parent.name == "pilots":
            continue
        scale = "small" if path.parent.name == "small" else "tiny"
        spec = path.parent.parent.name if scale == "small" else path.parent.name
        for c in json.loads(path.read_text())["claims"]:
            if c.get("over", "mean") != "mean" or c["verdict"] != "inconclusive" or c.get("control_of"):
                continue
            inconclusive += 1
            v = np.array([x for x in c["values"] if x is not None], float)
            effect, sd = v.mean() - c["threshold"], v.std(ddof=1)
            planned = seeds_for_power(effect, sd_upper(sd, len(v), 0.8))
            if planned is not None and planned <= 50:
                want.add((spec, scale, c["id"], str(len(v)), str(seeds_for_power(effect, sd)), str(planned)))
    text = (root / "docs" / "power.md").read_text()
    table = _section(text, "## What the committed references ask")
    rows = _table_rows(table)
    assert {(r[0], r[1], r[2], r[3], r[6], r[7]) for r in rows} == want and len(rows) == len(want)
    flat = " ".join(table.split())
    assert f"{inconclusive} mean claims are inconclusive" in flat and f"{len(want)} of them need at most 50" in flat


def _table_rows(text):
    """The cells of every body row of the markdown tables in text (header and rule rows left out)."""
    return [[x.strip() for x in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("| ") and not line.startswith(("| spec", "|---"))]


def _section(text, heading):
    """The text from heading up to the next section's heading."""
    rest = text[text.index(heading):]
    end = rest.find("\n## ", 1)
    return rest if end < 0 else rest[:end]


@pytest.mark.parametrize("heading, n_rows, scale", [("## Plans at 80% power, written before the run", 37, "tiny"),
                                                    ("## Plans at 80% power, second round", 11, "tiny"),
                                                    ("## Plans at 80% power, third round", 6, "tiny"),
                                                    ("## Plans at 80% power, fourth round", 22, "small"),
                                                    ("## Plans at 80% power, fifth round", 1, "small")])
def test_docs_power_prospective_plans_are_recomputed_and_their_verdicts_are_the_references(heading, n_rows, scale):
    """docs/power.md's plans written before the run: each row's powers follow from its pilot effect and SD (the SD
    limit on the pilot's own seed count) at the judged seed count, the judged seeds are the reference's, its
    verdict is the committed reference's, and the sums under the table are the table's."""
    import json
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    text = _section((root / "docs" / "power.md").read_text(), heading)
    rows = _table_rows(text)
    span = lambda r: list(range(int(r.split("-")[0]), int(r.split("-")[1]) + 1))
    assert len(rows) == n_rows
    for spec, claim, pilot, effect, sd, judged, pw, pw_ucl, verdict_ in rows:
        e, s, n = float(effect), float(sd), len(span(judged))
        assert (pw, pw_ucl) == (f"{power_at(e, s, n):.2f}", f"{power_at(e, sd_upper(s, len(span(pilot)), 0.8), n):.2f}")
        ref = json.loads((root / "figures" / spec / ("" if scale == "tiny" else scale) / "claims.json").read_text())
        assert ref["seeds"] == span(judged) and not set(span(pilot)) & set(ref["seeds"]), claim
        c = next(c for c in ref["claims"] if c["id"] == claim)
        assert verdict_ == c["verdict"], claim
    flat = " ".join(text.split())
    decided = sum(r[8] != "inconclusive" for r in rows)
    assert f"if the pilots' numbers are true: {sum(float(r[6]) for r in rows):.1f} of {len(rows)}" in flat
    assert f"upper limit: {sum(float(r[7]) for r in rows):.1f}" in flat
    assert f"**{decided} of the {len(rows)} planned claims came out decided" in flat
