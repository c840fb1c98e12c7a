"""The predictability specs (fig2, fig3, fig4, fig5, fig7): one body, shared arms, the sizes fig7 needs, and the
spec checks they rely on (panel arms, claims over every run as `metric@all`)."""
import pytest

from conftest import TINY_SPEC
from replicate.errors import UserError
from replicate.runners.rl.models import char_tokenizer, non_embedding_params, tiny_model
from replicate.specs import find_spec, load_spec
from replicate.tasks import make_task

SPECS = ("fig2", "fig3", "fig4", "fig5", "fig7")


def test_one_body_for_every_predictability_spec():
    bodies = {name: find_spec(name).body for name in SPECS}
    assert all(body == bodies["fig3"] for body in bodies.values())


def test_fig2_and_fig5_train_exactly_the_arms_of_fig3_fig4_fig6_and_fig7():
    union = {}
    for name in ("fig3", "fig4", "fig6", "fig7"):
        for arm, cfg in find_spec(name).variant_configs().items():
            assert union.setdefault(arm, cfg.digest()) == cfg.digest(), (name, arm)  # one arm name, one config
    for name in ("fig2", "fig5"):
        assert {arm: cfg.digest() for arm, cfg in find_spec(name).variant_configs().items()} == union


def test_fig7_has_five_sizes_of_one_family_spanning_30x():
    cfgs = find_spec("fig7").variant_configs()
    tok = char_tokenizer(make_task("short_answer").alphabet)
    sizes = sorted(non_embedding_params(tiny_model(c.model.config, tok)) for c in cfgs.values())
    assert len(sizes) >= 5 and sizes[-1] / sizes[0] >= 30
    assert len({c.model.config["model_type"] for c in cfgs.values()}) == 1
    bodies = [c.model_dump(exclude={"model"}) for c in cfgs.values()]
    assert all(b == bodies[0] for b in bodies)  # trained identically


def test_families_and_tasks_differ_where_they_should():
    fig4 = find_spec("fig4").variant_configs()
    assert {c.task.name for c in fig4.values()} == {"short_answer", "code_expr"}
    fig3 = find_spec("fig3").variant_configs()
    assert {c.model.config["model_type"] for c in fig3.values()} == {"qwen2", "llama", "mistral"}


def _variant_spec(tmp_path, extra):
    text = TINY_SPEC.replace("analyses: [exp_law, early_share]", "variants: [{name: a}, {name: b}]\nanalyses: [law_per_run]")
    text = text.replace("metric: entropy_final_over_initial", "metric: fit_r2@all, over: every") + extra
    path = tmp_path / "v.yaml"
    path.write_text(text)
    return path


def test_claims_over_every_run_and_panel_arms(tmp_path):
    spec = load_spec(_variant_spec(tmp_path, ""))
    assert spec.claims[0].metric == "fit_r2@all"
    bad = _variant_spec(tmp_path, "").read_text().replace("panels: [{kind: curves}", "panels: [{kind: curves, arms: [c]}")
    (tmp_path / "w.yaml").write_text(bad)
    with pytest.raises(UserError, match="names arms \\['c'\\]"):
        load_spec(tmp_path / "w.yaml")


def test_all_needs_arms(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text(TINY_SPEC.replace("analyses: [exp_law, early_share]", "analyses: [law_per_run]")
                    .replace("metric: entropy_final_over_initial", "metric: fit_r2@all"))
    with pytest.raises(UserError, match="name the arm"):
        load_spec(path)
