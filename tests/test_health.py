"""Run health (runners/rl/health.py): which rule trips, when, and that the trainer's watch logs it once."""

from hypothesis import given, settings, strategies as st

from replicate.runners.rl.health import BLOWUP, WINDOW, Watch, first_break, run_health


def rows(entropy, length=None, acc=None):
    """Metric rows: entropy per step, response length (default 2), val_acc at the given {step: value}."""
    out = []
    for i, h in enumerate(entropy):
        r = {"step": i, "entropy": h, "response_length": 2.0 if length is None else length[i]}
        if acc and i in acc:
            r["val_acc"] = acc[i]
        out.append(r)
    return out


def test_a_healthy_collapse_is_not_flagged():
    h = [1.0 * 0.98 ** i for i in range(100)]
    assert first_break(rows(h, acc={0: 0.3, 50: 0.4, 99: 0.42}), 4) is None


def test_each_rule_trips_at_the_expected_step():
    flat = [1.0] * 30
    # no EOS: lengths reach the cap 4 from step 10; the 5-step mean first reaches 0.97 x 4 = 3.88 at step 14
    length = [2.0] * 10 + [4.0] * 20
    step, why = first_break(rows(flat, length), 4)
    assert step == 14 and why.startswith("no EOS")
    # accuracy 0 at the third eval
    step, why = first_break(rows(flat, acc={0: 0.3, 10: 0.2, 20: 0.0}), 4)
    assert step == 20 and "accuracy fell to 0" in why
    # entropy jumps to 2 at step 15: the trailing 5-step mean passes 1.5 once 3 of its 5 steps are 2 (1.6), step 17
    h = [1.0] * 15 + [2.0] * 15
    step, why = first_break(rows(h), 4)
    assert step == 17 and why.startswith("entropy")
    # a run starting at accuracy 0 is not "fallen to 0"
    assert first_break(rows(flat, acc={0: 0.0, 10: 0.0}), 4) is None
    # the trainer's eos_share, where logged, decides instead of the length: EOS share 0 from step 8 trips at 12
    eos_rows = [{**r, "eos_share": 1.0 if r["step"] < 8 else 0.0} for r in rows(flat, [4.0] * 30)]
    step, why = first_break(eos_rows, 4)
    assert step == 12 and why.startswith("no EOS: 0 of responses")
    assert first_break([{**r, "eos_share": 1.0} for r in rows(flat, [4.0] * 30)], 4) is None  # full answers, all EOS
    # no cap known: the EOS rule is off
    assert first_break(rows(flat, [4.0] * 30), None) is None


@settings(max_examples=50, deadline=None)
@given(st.floats(0.05, 3.0), st.floats(0.1, 1.45))
def test_entropy_below_the_blowup_factor_never_trips(start, factor):
    h = [start] * WINDOW + [start * factor] * 40
    assert first_break(rows(h), 4) is None
    assert first_break(rows([start] * WINDOW + [start * (BLOWUP + 0.1)] * 40), 4) is not None


def test_watch_logs_one_line_the_first_time():
    lines = []
    w = Watch(4, lines.append, "fig11-clip_higher-s1")
    for r in rows([1.0] * 20, [2.0] * 5 + [4.0] * 15):
        w.add(r)
    assert len(lines) == 1 and "fig11-clip_higher-s1 flagged: no EOS" in lines[0]
    # resumed with the rows so far: already tripped, so it stays silent
    w2 = Watch(4, lines.append, "x", rows([1.0] * 20, [4.0] * 20))
    w2.add({"step": 20, "entropy": 1.0, "response_length": 4.0})
    assert len(lines) == 1


def test_run_health_counts_per_arm():
    good, bad = rows([1.0] * 20), rows([1.0] * 20, acc={0: 0.3, 10: 0.0})
    out = run_health({"grpo": {0: good, 1: good}, "clip_higher": {0: good, 1: bad}}, {"grpo": 4, "clip_higher": 4})
    assert out["grpo"] == {"seeds": 2, "healthy": 2, "flagged": {}}
    assert out["clip_higher"]["healthy"] == 1 and list(out["clip_higher"]["flagged"]) == [1]


def test_claims_md_shows_stability_and_sensitivity(tiny_spec_file, tmp_path, monkeypatch):
    """End to end on the tiny test spec: runs judged healthy give a 2 / 2 row; a run made to trip (seed 1) gives
    1 / 2, a sensitivity line judged without it, and the pre-registered verdict still over both seeds. The verdicts
    are set here: whether the test spec's runs trip a rule on their own depends on the CPU kind's rounding (seed 0
    loses its validation accuracy on an AMD EPYC), and the rules themselves are tested above on known rows."""
    import json
    from replicate.runners.rl import health
    from replicate.experiment import reproduce
    from replicate.specs import load_spec
    spec = load_spec(tiny_spec_file)
    store = tmp_path / "store"  # its own: warm_store/tinytest must hold only the runs other tests expect there
    monkeypatch.setattr(health, "first_break", lambda rows, cap: None)
    res = reproduce(spec, out=tmp_path / "a", store=store, log=lambda *_: None)
    md = (tmp_path / "a" / "claims.md").read_text()
    assert "| main | 2 / 2 | - |" in md and "Sensitivity" not in md and "after Holm" in md
    monkeypatch.setattr(health, "first_break", lambda rows, cap: (3, "test break") if rows is res["runs"]["main"][1]
                        or rows == res["runs"]["main"][1] else None)
    reproduce(spec, out=tmp_path / "b", store=store, log=lambda *_: None)
    md = (tmp_path / "b" / "claims.md").read_text()
    data = json.loads((tmp_path / "b" / "claims.json").read_text())
    assert "| main | 1 / 2 | seed 1: test break |" in md
    sens = data["health"]["sensitivity"][0]
    assert sens["n"] == 1 and sens["verdict"] == "inconclusive"  # one seed left cannot decide
    assert len(data["claims"][0]["values"]) == 2  # the claim itself still counts both runs
    assert "Sensitivity" in md and (tmp_path / "b" / "tinytest.png").stat().st_size > 0


def _row(cid, values, op=">", thr=0.0, metric="m", over="mean"):
    from replicate.report.claims import verdict
    return {"id": cid, "statement": "s", "paper_value": "-", "values": values, "metric": metric, "op": op,
            "threshold": thr, "over": over, "beats": "-", "threshold_reason": "", "source": "", "mean": 0.0,
            "ci95": [0.0, 0.0], "verdict": verdict(values, op, thr, over)}


def test_a_verdict_that_rests_on_a_flagged_run_is_marked():
    """The claims audit's F4: fig11 small's kl_cov_holds_entropy read replicated over all runs and inconclusive
    without the broken GRPO seed; claims.md marks such a verdict † and says what it is without the flagged runs."""
    from replicate.report.claims import claims_markdown, rests_on_flagged
    rows = [_row("holds", [0.1, 0.12, 0.09, 0.11]), _row("same", [0.3, 0.31, 0.29, 0.3])]
    health = {"arms": {"grpo": {"seeds": 4, "healthy": 3, "flagged": {2: "no EOS"}}},
              "sensitivity": [{"id": "holds", "n": 3, "mean": 0.1, "ci95": [-0.01, 0.2], "verdict": "inconclusive"},
                              {"id": "same", "n": 3, "mean": 0.3, "ci95": [0.28, 0.32], "verdict": "replicated"}]}
    assert rests_on_flagged(rows, health) == {"holds": "inconclusive"}
    md = claims_markdown("x", "tiny", rows, None, health)
    assert "| replicated † |" in md and md.count("†") == 2
    assert "† 1 verdict(s) change without the flagged runs: holds inconclusive" in md
    assert rests_on_flagged(rows, None) == {} and "†" not in claims_markdown("x", "tiny", rows)
    failed = {**health, "sensitivity": [], "sensitivity_error": "KeyError: 'grpo'"}
    assert "could not be judged without the flagged runs (KeyError: 'grpo')" in claims_markdown("x", "tiny", rows,
                                                                                                None, failed)


def test_a_failed_sharpening_claim_is_said_beside_the_others():
    from replicate.report.claims import claims_markdown
    law = _row("law", [0.9, 0.95, 0.92], op="<", thr=1.0, metric="exp_vs_linear_heldout_ratio@all")
    sharp = _row("rl_beats", [0.2, -0.01, 0.1], metric="rl_gain_over_sharpening@all", over="every")
    assert sharp["verdict"] == "not replicated"
    md = claims_markdown("x", "tiny", [law, sharp])
    assert "Sharpening null: rl_beats not replicated (RL not > 0 in 1 of 3 values)." in md
    assert "Sharpening null" not in claims_markdown("x", "tiny", [law, _row("ok", [0.2, 0.3], metric=sharp["metric"],
                                                                             over="every")])


def test_an_inconclusive_sharpening_claim_with_no_failing_value_says_so_plainly():
    """A mean sharpening claim whose interval holds 0 (every value above 0) names no run where RL did no better,
    so the line must not say the other claims stand on such runs."""
    from replicate.report.claims import sharpening_lines
    mean = _row("grpo_beats", [0.3, 0.01, 0.02], metric="rl_gain_over_sharpening@grpo")
    assert mean["verdict"] == "inconclusive"
    assert sharpening_lines([mean]) == ["", "Sharpening null: grpo_beats inconclusive (RL not > 0 in 0 of 3 values)."]
    every = _row("every", [0.3, None, -0.2], metric="rl_gain_over_sharpening@all", over="every")
    assert "in 1 of 2 values; 1 unmeasured). The spec's other claims" in sharpening_lines([every])[1]


def test_a_claim_with_no_values_says_its_metric_was_never_recorded():
    """The stats audit's F6: a claim on an arm no analysis records (e.g. `@unit` where none is recorded) read
    'nan [nan, nan]' and inconclusive; it now says what is missing."""
    from replicate.report.claims import claims_markdown
    md = claims_markdown("x", "tiny", [_row("ghost", [], metric="law_rmse_paper@unit")])
    assert "no values: no analysis recorded law_rmse_paper@unit in this result" in md and "| inconclusive |" in md
