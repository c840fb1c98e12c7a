"""The code sandbox: correct programs pass; hostile ones are contained, score 0, and the host stays healthy."""
import os
import shutil
import time
import uuid

import pytest

from evaluators import _jail
from evaluators.code import UID_RANGE, close_warm_jails, evaluate_code, sandbox_processes, wait_until_gone

ADD = {"asserts": "assert add(1, 2) == 3\nassert add(-1, 1) == 0\nassert add(2.5, 0.5) == 3.0"}
HUMANEVAL = {"asserts": "def check(candidate):\n    assert candidate([1, 2, 3]) == (6, [3, 2, 1])\n"
                        "    assert candidate([]) == (0, [])\ncheck(summary)"}
STDIO = {"stdio": [{"input": "1 2\n", "output": "3"}, {"input": "5 5\n", "output": "10\n"}]}



def test_bubblewrap_is_installed():
    """The sandbox tests below fail (status error) without it; this says why in one line."""
    assert shutil.which("bwrap"), "bubblewrap not installed: apt-get install bubblewrap"


def test_correct_programs_pass():
    r = evaluate_code("def add(a, b):\n    return a + b\n", ADD)
    assert r.passed and r.status == "passed"
    r = evaluate_code("def summary(xs):\n    return sum(xs), list(reversed(xs))\n", HUMANEVAL)
    assert r.passed, r.detail
    r = evaluate_code("a, b = map(int, input().split())\nprint(a + b)\n", STDIO)
    assert r.passed and r.cases == [True, True]


def test_tests_expecting_an_exception_still_work():
    prog = "def div(a, b):\n    if b == 0:\n        raise ValueError('b=0')\n    return a / b\n"
    tests = {"asserts": "try:\n    div(1, 0)\n    assert False\nexcept ValueError:\n    pass\nassert div(4, 2) == 2.0"}
    assert evaluate_code(prog, tests).passed


def test_wrong_answers_fail():
    assert evaluate_code("def add(a, b):\n    return a - b\n", ADD).status == "failed"
    assert evaluate_code("a, b = map(int, input().split())\nprint(a * b)\n", STDIO).status == "failed"
    assert evaluate_code("def add(a, b) return a\n", ADD).status == "failed"  # does not parse
    assert evaluate_code("def add(a, b):\n    raise KeyError(1)\n", ADD).status == "failed"


HOSTILE = {
    # fake passes
    "sys_exit_0": ("import sys\nsys.exit(0)\ndef add(a, b):\n    return 0\n", {"failed"}),
    "os_exit_0": ("import os\nos._exit(0)\n", {"failed"}),
    "os_exit_in_call": ("import os\ndef add(a, b):\n    os._exit(0)\n", {"failed"}),
    "fake_markers": ("print('ALL TESTS PASSED')\nprint('{\"ok\": {\"i\": \"3\"}}')\ndef add(a, b):\n    print('PASS')\n", {"failed"}),
    "raw_fd_write": ("import os\ndef add(a, b):\n    os.write(1, b'{\"ok\": {\"i\": \"3\"}}\\n')\n    return None\n", {"failed"}),
    "eq_always_true": ("class X:\n    def __eq__(self, o):\n        return True\ndef add(a, b):\n    return X()\n", {"failed"}),
    "int_subclass": ("class I(int):\n    def __eq__(self, o):\n        return True\ndef add(a, b):\n    return I(0)\n", {"failed"}),
    "override_builtins": ("import builtins\nbuiltins.AssertionError = type('E', (BaseException,), {})\n"
                          "builtins.print = lambda *a: None\ndef add(a, b):\n    return 0\n", {"failed"}),
    "patch_harness": ("import sys\nm = sys.modules['__main__']\nm.enc = lambda o, d=0: {'i': '3'}\n"
                      "def add(a, b):\n    return 0\n", {"failed"}),
    # resource abuse
    "infinite_loop": ("def add(a, b):\n    while True:\n        pass\n", {"timeout"}),
    "sleep": ("import time\ntime.sleep(60)\n", {"timeout"}),
    "fork_bomb": ("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n", {"timeout", "failed"}),
    "memory_bomb": ("x = bytearray(10 ** 10)\ndef add(a, b):\n    return a + b\n", {"limit"}),
    "memory_bomb_in_call": ("def add(a, b):\n    return len([0] * 10 ** 10)\n", {"limit"}),
    "stdout_flood": ("import sys\nwhile True:\n    sys.stdout.write('x' * 100000)\n", {"timeout"}),
    # escapes
    "network": ("import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=2)\ndef add(a, b):\n    return a + b\n", {"failed"}),
    "write_outside": ("open('/root/replicate-pwned', 'w').write('x')\ndef add(a, b):\n    return a + b\n", {"failed"}),
    "write_tmp_of_host": ("import glob\nfor d in glob.glob('/tmp/*'):\n    open(d + '/pwned', 'w')\n"
                          "open('/etc/pwned', 'w')\n", {"failed"}),
    "kill_parent": ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\ndef add(a, b):\n    return a + b\n", {"failed"}),
    "kill_everything": ("import os, signal\nos.kill(-1, signal.SIGKILL)\ndef add(a, b):\n    return a + b\n", {"failed", "error"}),
    "read_secrets": ("import os\nassert 'REPLICATE_TEST_SECRET' not in os.environ\nassert not os.path.exists('/root/.ssh')\n"
                     "def add(a, b):\n    raise RuntimeError(open('/proc/1/environ').read())\n", {"failed"}),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_program_is_contained_and_scores_zero(name, monkeypatch):
    monkeypatch.setenv("REPLICATE_TEST_SECRET", "hunter2")
    program, statuses = HOSTILE[name]
    t0 = time.monotonic()
    r = evaluate_code(program, ADD, timeout_s=3)
    assert not r.passed and r.status in statuses, (r.status, r.detail)
    assert time.monotonic() - t0 < 15
    assert "hunter2" not in r.detail


def test_hostile_stdio_programs():
    assert evaluate_code("print(3)\nimport os\nos._exit(0)\n", STDIO).status == "failed"  # unflushed, exit 0
    flood = evaluate_code("import sys\nwhile True:\n    sys.stdout.write('x' * 100000)\n", STDIO, timeout_s=5)
    assert flood.status in ("limit", "timeout") and not flood.passed
    assert evaluate_code("while True:\n    pass\n", STDIO, timeout_s=2).status == "timeout"


# ---- without bubblewrap: refused unless explicitly allowed --------------------------------------------

@pytest.fixture
def no_bwrap(monkeypatch):
    monkeypatch.setattr(_jail, "bwrap_available", lambda: False)


def test_without_bubblewrap_it_refuses(no_bwrap):
    for program, tests in (("def add(a, b):\n    return a + b\n", ADD),
                           ("a, b = map(int, input().split())\nprint(a + b)\n", STDIO)):
        r = evaluate_code(program, tests)
        assert not r.passed and r.status == "error"
        assert "apt-get install bubblewrap" in r.detail and "allow_unsandboxed=True" in r.detail


@pytest.mark.filterwarnings("ignore:evaluate_code\\(allow_unsandboxed=True\\)")
def test_unsandboxed_when_explicitly_allowed(no_bwrap):
    run = lambda program, tests, **kw: evaluate_code(program, tests, allow_unsandboxed=True, **kw)  # noqa: E731
    r = run("def add(a, b):\n    return a + b\n", ADD)
    assert r.passed and r.status == "passed", r.detail
    assert run("def summary(xs):\n    return sum(xs), list(reversed(xs))\n", HUMANEVAL).passed
    r = run("a, b = map(int, input().split())\nprint(a + b)\n", STDIO)
    assert r.passed and r.cases == [True, True], r.detail
    assert run("def add(a, b):\n    return a - b\n", ADD).status == "failed"
    assert run("a, b = map(int, input().split())\nprint(a * b)\n", STDIO).status == "failed"
    assert run("def add(a, b):\n    while True:\n        pass\n", ADD, timeout_s=2).status == "timeout"
    if os.geteuid() == 0:  # still not root in there
        assert run("import os\ndef uid():\n    return os.getuid()\n", {"asserts": "assert uid() != 0"}).passed


# ---- nothing of the sandbox outlives evaluate_code --------------------------------------------------------

LINGER = """import os, sys
def spawn():
    r, w = os.pipe()
    if os.fork() == 0:
        os.setsid()
        pid = os.fork()
        if pid == 0:
            os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(300)', 'MARKER'])
        os.write(w, str(pid).encode())
        os._exit(0)
    os.close(w)
    pid = int(os.read(r, 32))
    os.wait()
    return pid
SLEEPER = spawn()
def probe():
    os.kill(SLEEPER, 0)  # raises if the sleeper is not running
    return os.getuid()
"""


def _is_supervisor(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return b"/sbx/harness.py" in fh.read()
    except OSError:
        return True  # gone


def _marked(marker):
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                found += [pid] if marker.encode() in fh.read() else []
        except OSError:
            pass
    return found


@pytest.mark.filterwarnings("ignore:evaluate_code\\(allow_unsandboxed=True\\)")
@pytest.mark.parametrize("mode", ["bwrap", "unsandboxed"])
def test_a_lingering_child_is_gone_when_evaluate_code_returns(mode, monkeypatch, tmp_path):
    if mode == "unsandboxed":
        monkeypatch.setattr(_jail, "bwrap_available", lambda: False)
    marker = f"replicate-sleeper-{uuid.uuid4().hex}"
    program = LINGER.replace("MARKER", marker)
    seen = tmp_path / "uid"
    tests = {"asserts": f"open({str(seen)!r}, 'w').write(str(probe()))"}  # the tests run in this process
    r = evaluate_code(program, tests, allow_unsandboxed=True)
    assert r.passed, r.detail  # the sleeper was running while the tests ran
    assert not _marked(marker), "the double-forked sleeper outlived evaluate_code"
    if os.geteuid() == 0:  # of the sandbox uid, at most a warm jail's supervisor is left
        uid = int(seen.read_text())
        assert uid in UID_RANGE and all(_is_supervisor(pid) for pid in sandbox_processes(uid))
    stdio = {"stdio": [{"input": "", "output": "up"}]}
    r = evaluate_code(program + "probe()\nprint('up')\n", stdio, allow_unsandboxed=True)
    assert r.passed, r.detail
    assert not _marked(marker), "the double-forked sleeper outlived evaluate_code (stdio)"


def test_host_stays_healthy_after_the_suite():
    close_warm_jails()
    assert not os.path.exists("/root/replicate-pwned") and not os.path.exists("/etc/pwned")
    assert wait_until_gone() == [], "sandboxed processes survived"  # bounded: others' sandboxes may be running
    assert evaluate_code("def add(a, b):\n    return a + b\n", ADD).passed


@pytest.mark.skipif(os.geteuid() != 0, reason="the workdir is handed to another uid only when we are root")
def test_links_planted_in_the_workdir_do_not_hand_host_files_to_the_sandbox(tmp_path):
    target = tmp_path / "host-file"
    target.write_text("root's")
    program = f"import os\nif not os.path.islink('evil'):\n    os.symlink({str(target)!r}, 'evil')\nprint(3)\n"
    evaluate_code(program, {"stdio": [{"input": "", "output": "3"}] * 2})
    assert target.stat().st_uid == 0
