"""scripts/regenerate.sh resumes a store only on the CPU kind that began it (a reference is bit-exact only there)."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "regenerate.sh"
pytestmark = pytest.mark.skipif(not shutil.which("lscpu"), reason="needs lscpu")


def _run(store: Path, *specs: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "REPLICATE_STORE": str(store), "REPLICATE_HOME": str(store)}
    return subprocess.run(["bash", str(SCRIPT), *specs], capture_output=True, text=True, env=env, timeout=60)


def test_a_store_begun_on_another_cpu_kind_is_refused(tmp_path):
    (tmp_path / "CPU_KIND").write_text("Model name: Some Other CPU;CPU family: 6;\n")
    done = _run(tmp_path, "fig1")
    assert done.returncode == 2
    assert "Some Other CPU" in done.stderr and "new store" in done.stderr
    assert (tmp_path / "CPU_KIND").read_text().startswith("Model name: Some Other CPU")  # left as it was
    assert not (tmp_path / "fig1").exists()


def test_a_new_store_is_stamped_with_this_cpu_kind(tmp_path):
    done = _run(tmp_path, "no-such-spec")  # fails fast in the CLI, after the stamp
    kind = (tmp_path / "CPU_KIND").read_text()
    assert "Model name:" in kind and "CPU family:" in kind
    assert "no-such-spec FAILED" in done.stdout
    assert _run(tmp_path, "no-such-spec").returncode == 0  # same kind: resumed, not refused


def test_the_references_name_the_cpu_kind_that_made_them():
    """figures/CPU_KIND is scripts/cpu_kind.sh's line on the machine that regenerated the references; .ci/run gates
    fig1 on it, so its form must be what the script prints (here or on any machine)."""
    root = SCRIPT.parent.parent
    kind = (root / "figures" / "CPU_KIND").read_text()
    here = subprocess.run(["bash", str(root / "scripts" / "cpu_kind.sh")], capture_output=True, text=True).stdout
    fields = lambda line: [f.split(":")[0] for f in line.strip().split(";") if f]
    assert fields(kind) == fields(here) == ["Model name", "CPU family", "Model", "Stepping"]
    assert "figures/CPU_KIND" in (root / ".ci" / "run").read_text()
