"""Smoke folders are named for what changed and their header shows only the real overrides; fewer than 3 seeds
warn before anything trains."""
from replicate.report.claims import overrides_text, provenance_line, smoke_name
from replicate.experiment import seeds_warning
from replicate.specs import find_spec


def test_smoke_folder_and_header_name_what_changed():
    req = {"seeds": 1, "steps": 20, "overrides": {"rollout": {"group_size": 4}, "algorithm": {"advantage": "rloo"}}}
    assert smoke_name("tiny", req, "ab12cd34") == "tiny-steps20-seeds1-group_size4-advantagerloo-ab12cd34"
    assert smoke_name("tiny", {"seeds": None, "steps": 20, "overrides": {}}, "k") == "tiny-steps20-k"
    assert overrides_text(req) == '--seeds 1 --steps 20 --set rollout.group_size=4 --set algorithm.advantage="rloo"'
    line = provenance_line({"kind": "smoke", "requested": {"seeds": None, "steps": 30, "overrides": {}}})
    assert line.startswith("Smoke run (--steps 30): ") and "None" not in line.split(":")[0] and "{}" not in line


def test_fewer_than_three_seeds_warn():
    said = []
    spec = find_spec("fig1")
    seeds_warning(spec, [0, 1], said.append)
    assert said == ["warning: 2 seeds: a mean claim's 95% interval is ±12.7 standard errors (t, 1 degree of "
                    "freedom), so most come out inconclusive; use --seeds 3 or more (3 seeds: ±4.3)"]
    seeds_warning(spec, [0], said.append)
    assert "1 seed: a claim over the seeds' mean has no interval" in said[-1]
    seeds_warning(spec, [0, 1, 2], said.append)
    assert len(said) == 2


def test_a_pilot_runs_the_tuning_seeds_into_its_own_folder(tmp_path, monkeypatch):
    """--pilot: the spec's tuning_seeds, results/<id>/<scale>-pilot/, kind 'pilot'; refused without tuning_seeds
    or beside --seeds (exit 2 via UserError), so a pilot can never become a judged result."""
    import json
    import pytest
    from replicate.errors import UserError
    from replicate.experiment import reproduce
    monkeypatch.setenv("REPLICATE_HOME", str(tmp_path))
    lemma = find_spec("lemma")
    small = {**lemma.runner_params, "vocab_sizes": [4, 16], "states_per_vocab": 4, "n_etas": 3}
    spec = lemma.model_copy(update={"tuning_seeds": [100, 101], "runner_params": small})
    res = reproduce(spec, pilot=True, store=tmp_path / "store", log=lambda *a: None)
    assert res["out"].name == f"{spec.default_scale}-pilot"
    payload = json.loads((res["out"] / "claims.json").read_text())
    assert payload["seeds"] == [100, 101] and payload["kind"] == "pilot"
    assert "Pilot on the tuning seeds" in (res["out"] / "claims.md").read_text()
    with pytest.raises(UserError, match="drop --seeds"):
        reproduce(spec, pilot=True, seeds=2, store=tmp_path / "store")
    with pytest.raises(UserError, match="--pilot needs tuning_seeds"):
        reproduce(find_spec("lemma"), pilot=True, store=tmp_path / "store")
    assert "pilot" in smoke_name("tiny", {"pilot": True, "steps": 20}, "k")
