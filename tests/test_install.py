"""Installed like a library: a plain (non-editable) `pip install .` lists and runs the shipped specs from any
directory, with runs and results under $REPLICATE_HOME."""
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

from setuptools import find_packages

REPO = Path(__file__).resolve().parent.parent


def test_every_package_is_shipped():
    listed = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    found = find_packages(str(REPO), include=["replicate*", "evaluators*"])
    assert set(listed) == set(found) | {"replicate.experiments"}


def test_a_venv_made_inside_a_venv_sees_the_outer_venvs_packages(tmp_path):
    """Run from inside a virtual environment (how most users run the suite), the install test's venv still
    sees that environment's packages (its torch), not only the system Python's."""
    outer = tmp_path / "outer"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(outer)], check=True)
    purelib = subprocess.run([str(outer / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()"
                              "['purelib'])"], capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "only_in_outer_venv.py").write_text("VALUE = 42\n")
    script = (f"import sys; sys.path.insert(0, {str(REPO / 'tests')!r})\n"
              "from venvs import venv_seeing_this_env\n"
              f"py = venv_seeing_this_env(__import__('pathlib').Path({str(tmp_path / 'inner')!r}), sys.executable)\n"
              "import subprocess\n"
              "print(subprocess.run([str(py), '-c', 'import only_in_outer_venv as m; print(m.VALUE)'],"
              " capture_output=True, text=True).stdout)")
    res = subprocess.run([str(outer / "bin" / "python"), "-c", script], capture_output=True, text=True, timeout=300)
    assert res.stdout.strip() == "42", res.stderr[-2000:]


def test_non_editable_install_lists_and_runs_fig1(tmp_path):
    from venvs import venv_seeing_this_env
    venv = tmp_path / "venv"
    py = venv_seeing_this_env(venv, sys.executable)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(REPO)], check=True, timeout=600)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "REPLICATE_STORE")}
    env["REPLICATE_HOME"] = str(tmp_path / "home")

    def run(*args):
        return subprocess.run([str(py), "-m", "replicate", *args], cwd=work, env=env, capture_output=True,
                              text=True, timeout=900)
    where = subprocess.run([str(py), "-c", "import replicate; print(replicate.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True).stdout
    assert str(venv) in where  # the installed copy, not the checkout
    listed = run("list")
    assert listed.returncode == 0 and "fig1 (teaser" in listed.stdout and "lemma-lm" in listed.stdout
    res = run("fig1", "--seeds", "1", "--steps", "2", "--set", "warmup.steps=20", "--set", "eval.n_prompts=8")
    assert res.returncode == 0, res.stderr[-2000:]
    results = list((tmp_path / "home" / "results" / "fig1").glob("tiny-*/claims.json"))
    assert len(results) == 1 and json.loads(results[0].read_text())["kind"] == "smoke"
    from replicate.specs import find_spec
    first = find_spec("fig1").variant_configs("tiny")["main"].seeds[0]  # `--seeds 1` takes the first judged seed
    assert list((tmp_path / "home" / "runs" / "fig1").glob(f"tiny-main-s{first}-*/DONE"))
