"""docs/specs.md: its generated tables match the registries, and its worked example spec loads."""
import re
import shutil
from pathlib import Path

import pytest

from replicate.specs import docs
from replicate.specs import load_spec

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "specs.md"


def example_yaml() -> str:
    m = re.search(r"<!-- example-spec -->\n```yaml\n(.*?)```", DOC.read_text(), re.S)
    assert m, "docs/specs.md has no fenced yaml block after <!-- example-spec -->"
    return m.group(1)


def test_generated_sections_up_to_date():
    text = DOC.read_text()
    assert docs.regenerate(text) == text, "docs/specs.md is out of date: run `python -m replicate.specs.docs`"
    assert docs.main(["--check"]) == 0


def test_every_field_and_registry_entry_is_documented():
    assert docs.MISSING_NOTE not in DOC.read_text()


@pytest.mark.parametrize("registry", ["panels", "analyses", "runners", "tasks", "policy_losses"])
def test_check_fails_when_a_registry_changes(monkeypatch, registry):
    from replicate.algorithms import POLICY_LOSSES
    from replicate.analysis import ANALYSES, Analysis
    from replicate.report.figures import PANELS
    from replicate.runners import RUNNERS, Runner
    from replicate.tasks import TASKS

    def fake(x: float = 1.0):
        """A new entry."""

    added = {"panels": (PANELS, fake), "analyses": (ANALYSES, Analysis(fake, ("new_metric",))),
             "runners": (RUNNERS, Runner(fake)), "tasks": (TASKS, type("NewTask", (), {"__init__": fake})),
             "policy_losses": (POLICY_LOSSES, fake)}
    reg, value = added[registry]
    monkeypatch.setitem(reg, "zz_new", value)
    text = DOC.read_text()
    assert docs.regenerate(text) != text


def test_check_fails_when_a_default_changes(monkeypatch):
    from replicate.specs import RolloutSpec
    monkeypatch.setattr(RolloutSpec.model_fields["group_size"], "default", 16)
    text = DOC.read_text()
    assert docs.regenerate(text) != text


def test_worked_example_loads(tmp_path):
    path = tmp_path / "clip_higher.yaml"
    path.write_text(example_yaml())
    spec = load_spec(path)  # base: fig1 resolves from the shipped experiments/
    assert spec.id == "clip-higher"
    for scale in ("tiny", "small", "paper"):
        arms = spec.variant_configs(scale)
        assert set(arms) == {"grpo", "clip_higher"}
        assert arms["grpo"].algorithm.policy_loss_params == {"clip_ratio": 0.2, "clip_ratio_c": 10.0}
        assert arms["clip_higher"].algorithm.policy_loss_params["clip_ratio_high"] == 0.28
    assert {c.metric.partition("@")[2] for c in spec.claims} == {"grpo", "clip_higher"}
    assert any(c.beats for c in spec.claims) and any(c.over == "every" for c in spec.claims)


def test_worked_example_loads_beside_the_experiments_tree(tmp_path):
    """Written into a copy of experiments/ (where it would be saved), it is found by id and its base too."""
    tree = tmp_path / "experiments"
    shutil.copytree(ROOT / "experiments", tree)
    path = tree / "entropy-mechanism" / "clip_higher.yaml"
    path.write_text(example_yaml())
    from replicate.specs import all_specs
    assert all_specs(tree)["clip-higher"] == path
    assert load_spec(path).variants[1].name == "clip_higher"


def test_readme_links_the_reference():
    assert "docs/specs.md" in (ROOT / "README.md").read_text()
