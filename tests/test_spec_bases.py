"""`base:` chains of any depth, a cycle as one line, and errors at the line that caused them (a variant's
override, an inherited field); a non-text spec and a --store that is a file are one-line errors."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from replicate.errors import UserError
from replicate.specs import find_spec, load_spec

REPO = Path(__file__).resolve().parent.parent
HEAD = 'paper: entropy-mechanism\nreproduces: "x"\n'


def _write(tmp_path, name, text):
    (tmp_path / name).write_text(textwrap.dedent(text))
    return tmp_path / name


def test_base_chain_of_three_levels_resolves(tmp_path):
    """mid -> fig11 -> fig1: fig11's body over fig1's, then mid's; top sets one more key."""
    _write(tmp_path, "mid.yaml", f"id: mid\nbase: fig11\n{HEAD}body:\n  train: {{steps: 7}}\npanels: [{{kind: curves}}]\n")
    top = _write(tmp_path, "top.yaml", f"id: top\nbase: mid\n{HEAD}body:\n  rollout: {{group_size: 2}}\n"
                                       "panels: [{kind: curves}]\n")
    fig11 = find_spec("fig11").resolve("tiny")
    cfg = load_spec(top).resolve("tiny")
    assert cfg.train.steps == 7 and cfg.rollout.group_size == 2
    assert cfg.algorithm == fig11.algorithm and cfg.model == fig11.model and cfg.task == fig11.task
    assert cfg.rollout.prompts_per_step == fig11.rollout.prompts_per_step


def test_base_cycle_is_one_line_naming_the_chain(tmp_path):
    _write(tmp_path, "a.yaml", f"id: a\nbase: b\n{HEAD}panels: [{{kind: curves}}]\n")
    _write(tmp_path, "b.yaml", f"id: b\n{HEAD}base: c\n")
    _write(tmp_path, "c.yaml", f"id: c\n{HEAD}\n\nbase: a\n")
    with pytest.raises(UserError) as exc:
        load_spec(tmp_path / "a.yaml")
    assert str(exc.value) == (f"{tmp_path / 'c.yaml'}:6: base chain a -> b -> c -> a is a cycle; point one of them "
                              "at a spec outside it")


def test_error_in_a_variant_override_points_at_its_line(tmp_path):
    path = _write(tmp_path, "v.yaml", f"""\
        id: v
        base: fig1
        {HEAD.splitlines()[0]}
        {HEAD.splitlines()[1]}
        panels: [{{kind: curves}}]
        variants:
          - name: fine
          - name: broken
            overrides:
              rollout: {{group_size: 0}}
        """)
    with pytest.raises(UserError, match=r"v.yaml:10: variants.1.overrides.rollout.group_size: .*\(arm broken, "
                                        r"scale tiny\)"):
        load_spec(path)


def test_error_in_an_inherited_field_points_at_the_base_file(tmp_path):
    _write(tmp_path, "parent.yaml", f"id: parent\n{HEAD}body:\n  model: {{kind: tiny}}\n  task: {{name: addition}}\n"
                                    "  rollout:\n    nosuchkey: 3\n")
    child = _write(tmp_path, "child.yaml", f"id: child\nbase: parent\n{HEAD}panels: [{{kind: curves}}]\n")
    with pytest.raises(UserError) as exc:
        load_spec(child)
    assert str(exc.value).startswith(f"{tmp_path / 'parent.yaml'}:8: body.rollout.nosuchkey: unknown field")
    assert f"(inherited by {child} through `base:`)" in str(exc.value)


def test_a_spec_without_panels_fails_before_training(tmp_path):
    from replicate.experiment import reproduce
    path = _write(tmp_path, "np.yaml", f"id: np\nbase: fig1\n{HEAD}")
    with pytest.raises(UserError, match="panels: none given"):
        reproduce(load_spec(path), store=tmp_path / "store", out=tmp_path / "out")
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize("argv,needle", [
    ("run {png}", "is not a text file (a YAML spec is text)"),
    ("run {tmp}", "is not a file; pass a spec .yaml file"),
    ("fig1 --store {png}", "--store {png} is a file, not a directory"),
])
def test_png_spec_and_store_file_are_one_line(tmp_path, argv, needle):
    png = tmp_path / "fig.png"
    png.write_bytes((REPO / "figures" / "fig1" / "fig1.png").read_bytes())
    args = argv.format(png=png, tmp=tmp_path).split()
    res = subprocess.run([sys.executable, "-m", "replicate", *args], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO), "REPLICATE_HOME": str(tmp_path)}, timeout=120)
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert needle.format(png=png) in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "results").exists()


def test_runner_params_per_scale_merge_and_fail_at_their_line(tmp_path):
    """runner_params' `scales: {small: {...}}` reach the runner at that scale only (spec.at_scale); a parameter the
    runner does not take, or a scale that does not exist, is an error at its line."""
    body = "tuning_seeds: [100]\nrunner: lemma_lm\nanalyses: [lemma_lm]\n"
    good = _write(tmp_path, "good.yaml", f"id: good\nbase: fig1\n{HEAD}{body}"
                                         "runner_params: {lr: 1.0e-2, n_batches: 8, scales: {small: {lr: 1.0e-4}}}\n")
    spec = load_spec(good)
    assert spec.at_scale("tiny").runner_params == {"lr": 1e-2, "n_batches": 8}
    assert spec.at_scale("small").runner_params == {"lr": 1e-4, "n_batches": 8}
    assert spec.at_scale(None).runner_params == {"lr": 1e-2, "n_batches": 8}  # the default scale
    typo = _write(tmp_path, "typo.yaml", f"id: typo\nbase: fig1\n{HEAD}{body}"
                                         "runner_params:\n  lr: 1.0e-2\n  scales:\n    small: {lrr: 1.0e-4}\n")
    with pytest.raises(UserError, match=r"typo.yaml:\d+.*no parameter 'lrr'"):
        load_spec(typo)
    scale = _write(tmp_path, "scale.yaml", f"id: scale\nbase: fig1\n{HEAD}{body}"
                                           "runner_params:\n  lr: 1.0e-2\n  scales:\n    smal: {lr: 1.0e-4}\n")
    with pytest.raises(UserError, match=r"scale.yaml:\d+.*unknown scale 'smal'"):
        load_spec(scale)


def test_two_sibling_files_of_the_base_name_are_refused_not_picked(tmp_path):
    """A local `base:` resolves in the spec's own folder; two files there claiming the name are a one-line error
    naming both (an audit found one of several broken copies picked silently)."""
    for copy in ("fig1-a.yaml", "fig1-b.yaml"):
        _write(tmp_path, copy,
               f"id: fig1\nbase: fig1\n{HEAD}body:\n  train: {{steps: 5}}\npanels: [{{kind: curves}}]\n")
    mine = _write(tmp_path, "mine.yaml", f"id: mine\nbase: fig1\n{HEAD}panels: [{{kind: curves}}]\n")
    with pytest.raises(UserError) as exc:
        load_spec(mine)
    assert str(exc.value) == (f"{mine}:2: base spec 'fig1' is named by 2 files in its folder (fig1-a.yaml, "
                              "fig1-b.yaml); give each its own id")
    (tmp_path / "fig1-b.yaml").unlink()
    assert load_spec(mine).resolve("tiny").train.steps == 5  # the one sibling (itself on the shipped fig1)


def test_a_local_copy_that_names_itself_as_base_extends_the_shipped_spec(tmp_path):
    """`id: fig1` with `base: fig1` beside no other fig1: the shipped fig1 is the base, not a cycle with itself."""
    mine = _write(tmp_path, "fig1.yaml",
                  f"id: fig1\nbase: fig1\n{HEAD}body:\n  train: {{steps: 4}}\npanels: [{{kind: curves}}]\n")
    mine, shipped = load_spec(mine).resolve("tiny"), find_spec("fig1").resolve("tiny")
    assert mine.train.steps == 4 != shipped.train.steps and mine.task == shipped.task


def test_a_base_in_a_sub_folder_is_found_and_a_symlink_to_it_is_the_same_file(tmp_path):
    """Sub-folders are searched too (as the docs say); two names for one file are one file, not two."""
    (tmp_path / "sub").mkdir()
    other = _write(tmp_path / "sub", "other.yaml",
                   f"id: other\nbase: fig1\naliases:\n{HEAD}body:\n  train: {{steps: 6}}\n")
    (tmp_path / "link.yaml").symlink_to(other)
    mine = _write(tmp_path, "mine.yaml", f"id: mine\nbase: other\n{HEAD}panels: [{{kind: curves}}]\n")
    assert load_spec(mine).resolve("tiny").train.steps == 6


@pytest.mark.parametrize("where", ["scales:\n  smal: {train: {steps: 3}}\n",
                                   "variants:\n  - name: a\n    scales:\n      smal: {train: {steps: 3}}\n"])
def test_a_misspelt_scale_preset_is_refused_at_its_line(tmp_path, where):
    """A spec's `scales:` and an arm's `scales:` take the three scales only (one check, specs.known_scales)."""
    path = _write(tmp_path, "preset.yaml", f"id: preset\nbase: fig1\n{HEAD}{where}")
    with pytest.raises(UserError, match=r"preset.yaml:\d+.*unknown scale 'smal'"):
        load_spec(path)
