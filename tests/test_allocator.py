"""replicate.allocator: freed memory kept in the process, asked for by the command line for itself and its workers;
never for a caller that passes argv, nor for another revision's command in `bench small-step --against`."""
import os
import subprocess
import sys

import pytest

from replicate import allocator
from replicate.paths import fingerprinted_files

KEPT = """
import sys, torch
from replicate.allocator import keep_freed_memory
took = keep_freed_memory() if sys.argv[1] == "keep" else False
def resident_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
before = resident_mb()
x = torch.empty(28_000_000); x.fill_(1.0); del x  # 112 MB, freed
print(took, resident_mb() - before)
"""


def kept_after_free(arm: str) -> tuple[bool, float]:
    """(took effect, MB still resident after a 112 MB tensor was filled and freed), in a fresh process."""
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    done = subprocess.run([sys.executable, "-c", KEPT, arm], env=env, capture_output=True, text=True, check=True)
    took, mb = done.stdout.split()
    return took == "True", float(mb)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and glibc")
def test_a_freed_large_block_stays_in_the_process_only_when_asked():
    took, kept = kept_after_free("keep")
    if not took:
        pytest.skip("the C library is not glibc")
    assert kept > 100 and kept_after_free("plain") == (False, pytest.approx(0, abs=10))


def test_the_command_line_asks_for_itself_and_its_children_but_not_for_a_caller_with_argv():
    child = "import os; print(os.environ.get('GLIBC_TUNABLES'))"
    code = (f"import subprocess, sys; from replicate.cli import main; sys.argv = ['replicate', 'list']; "
            f"main(['list']); print(subprocess.run([sys.executable, '-c', {child!r}], capture_output=True, "
            f"text=True).stdout.strip()); main(); print(subprocess.run([sys.executable, '-c', {child!r}], "
            f"capture_output=True, text=True).stdout.strip())")
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    lines = out.strip().splitlines()
    assert lines[-1] == allocator.TUNABLES and "None" in lines


def test_a_users_setting_is_kept_and_given_back(monkeypatch):
    monkeypatch.setenv("GLIBC_TUNABLES", "")  # glibc's defaults, asked for
    assert not allocator.keep_freed_memory() and os.environ["GLIBC_TUNABLES"] == ""
    monkeypatch.setenv("GLIBC_TUNABLES", allocator.TUNABLES)
    monkeypatch.setattr(allocator, "AS_GIVEN", None)
    assert "GLIBC_TUNABLES" not in allocator.environment_as_given()
    monkeypatch.setattr(allocator, "AS_GIVEN", "glibc.malloc.arena_max=2")
    assert allocator.environment_as_given()["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2"


def test_where_memory_comes_from_is_outside_the_code_fingerprint():
    assert "allocator.py" not in {rel for rel, _ in fingerprinted_files()}
