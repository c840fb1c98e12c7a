"""Run untrusted programs against their tests in an OS-level sandbox, with verdicts the program cannot forge.

Isolation: bubblewrap (read-only root, private /tmp, home and project dirs hidden, no network, own PID/IPC/UTS
namespaces, cleared environment, dies with its parent), an unprivileged uid (setpriv, when we are root: root
ignores RLIMIT_NPROC), and rlimits on CPU time, address space, processes, file size and open files; wall time
and output size are enforced by the parent, which kills the whole process group. Without bubblewrap: a
warning, and rlimits + the uid drop + `unshare --net` where permitted.

Verdicts: the tests never enter the sandbox. Function-with-asserts tests run in the parent with every name the
program defines replaced by a stub that calls into the sandboxed process and gets back plain data (exact
builtin types), so pass/fail comes from the parent's own comparisons. Stdin/stdout cases compare the captured
output in the parent. Nothing the program prints, and no exit status, can make a failing program pass.
The tests are trusted input (they come from the benchmark); the program is not.
"""
from __future__ import annotations

import ast
import builtins
import itertools
import json
import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from evaluators._sandbox_harness import dec, enc

HARNESS = Path(__file__).with_name("_sandbox_harness.py")
STATUSES = ("passed", "failed", "timeout", "error", "limit")


@dataclass
class CodeResult:
    passed: bool
    status: str  # passed | failed | timeout | error | limit
    detail: str = ""
    cases: list = field(default_factory=list)


@dataclass
class Limits:
    timeout_s: float = 10.0       # wall time for the whole evaluation
    cpu_s: int = 10               # CPU seconds per sandboxed process
    memory_mb: int = 1024         # address space
    processes: int = 32           # processes/threads of the sandbox uid
    output_bytes: int = 1_000_000 # stdout captured per case; more is a limit breach
    file_bytes: int = 10_000_000  # largest file the program may write


class _Budget(Exception):
    def __init__(self, status, detail):
        super().__init__(detail)
        self.status, self.detail = status, detail


_uids = itertools.count()
_uid_lock = threading.Lock()
_warned = False


def _next_uid() -> int:
    """A distinct unprivileged uid per sandbox, so concurrent sandboxes do not share a process quota."""
    with _uid_lock:
        return 40000 + (os.getpid() * 97 + next(_uids)) % 20000


def bwrap_available() -> bool:
    return shutil.which("bwrap") is not None


def _command(workdir: Path, argv: list[str]) -> list[str]:
    global _warned
    py_prefixes = sorted({sys.base_prefix, sys.prefix, os.path.dirname(os.path.realpath(sys.executable))})
    drop = []
    if os.geteuid() == 0 and shutil.which("setpriv"):
        uid = _next_uid()
        drop = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--no-new-privs", "--"]
        os.chown(workdir, uid, uid)
        for f in workdir.iterdir():
            os.chown(f, uid, uid)
    if bwrap_available():
        hide = [a for d in ("/root", "/home", "/tmp", "/var/tmp", "/run", "/work", "/mnt", "/srv", "/opt")
                if os.path.isdir(d) for a in ("--tmpfs", d)]
        binds = [a for p in py_prefixes for a in ("--ro-bind", p, p)]
        unshare_user = [] if drop else ["--unshare-user"]
        return (["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", *hide, *binds,
                 "--bind", str(workdir), str(workdir), "--chdir", str(workdir), "--unshare-net", "--unshare-pid",
                 "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", *unshare_user, "--die-with-parent",
                 "--new-session", "--clearenv", "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin",
                 "--setenv", "HOME", str(workdir), "--setenv", "PYTHONDONTWRITEBYTECODE", "1", "--"] + drop + argv)
    if not _warned:
        warnings.warn("bubblewrap (bwrap) not found: untrusted code runs with rlimits, an unprivileged uid and no "
                      "network where permitted, but can read the filesystem; install it: apt-get install bubblewrap",
                      RuntimeWarning, stacklevel=3)
        _warned = True
    net = ["unshare", "--net", "--"] if os.geteuid() == 0 and shutil.which("unshare") else []
    return net + drop + ["env", "-i", "PATH=/usr/bin:/bin", f"HOME={workdir}"] + argv


def _limits(lim: Limits):
    def apply():
        os.setsid()
        for res, val in ((resource.RLIMIT_CPU, lim.cpu_s), (resource.RLIMIT_AS, lim.memory_mb * 2 ** 20),
                         (resource.RLIMIT_NPROC, lim.processes), (resource.RLIMIT_FSIZE, lim.file_bytes),
                         (resource.RLIMIT_NOFILE, 64), (resource.RLIMIT_CORE, 0)):
            resource.setrlimit(res, (val, val))
    return apply


class _Sandbox:
    """One sandboxed process with pipes; the parent enforces the wall deadline and the output cap."""

    def __init__(self, workdir: Path, argv: list[str], lim: Limits, deadline: float):
        self.lim, self.deadline = lim, deadline
        self.proc = subprocess.Popen(_command(workdir, argv), cwd=workdir, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_limits(lim))
        self._buf = b""

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                stream.close()
            except OSError:
                pass

    def _read(self, until_newline: bool) -> bytes:
        """Read stdout (draining stderr) until a newline or EOF, within the deadline and the output cap."""
        out, err = self.proc.stdout.fileno(), self.proc.stderr.fileno()
        open_fds = [out, err]
        while True:
            if until_newline and b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                return line
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise _Budget("timeout", "wall-time limit reached")
            ready, _, _ = select.select(open_fds, [], [], left)
            for fd in ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    open_fds.remove(fd)
                    if fd == out and (not until_newline or not self._buf):
                        if until_newline:
                            raise EOFError
                        return self._buf
                elif fd == out:
                    self._buf += chunk
                    if len(self._buf) > self.lim.output_bytes:
                        raise _Budget("limit", f"output over {self.lim.output_bytes} bytes")
            if out not in open_fds and not until_newline:
                return self._buf

    def request(self, payload: dict) -> dict:
        try:
            self.proc.stdin.write((json.dumps(payload) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise EOFError from None
        return json.loads(self._read(until_newline=True))

    def first(self) -> dict:
        return json.loads(self._read(until_newline=True))

    def run_to_end(self, stdin: str) -> tuple[bytes, int]:
        def feed():
            try:
                self.proc.stdin.write(stdin.encode())
                self.proc.stdin.close()
            except (BrokenPipeError, OSError, ValueError):
                pass
        threading.Thread(target=feed, daemon=True).start()
        data = self._read(until_newline=False)
        left = max(0.0, self.deadline - time.monotonic())
        try:
            code = self.proc.wait(timeout=left)
        except subprocess.TimeoutExpired:
            raise _Budget("timeout", "wall-time limit reached") from None
        return data, code


# ---- asserts: tests run here, the program's names are stubs into the sandbox ----------------------------

def _defined_names(program: str) -> set[str]:
    names = set()
    for node in ast.parse(program).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
    return names


class _CandidateError(Exception):
    pass


def _stub(box: _Sandbox, name: str):
    def call(*args, **kwargs):
        reply = box.request({"name": name, "args": enc(list(args)), "kwargs": {k: enc(v) for k, v in kwargs.items()}})
        if "ok" in reply:
            return dec(reply["ok"])
        exc_type = getattr(builtins, reply.get("exc", ""), None)
        if exc_type is MemoryError:
            raise _Budget("limit", "the program ran out of memory")
        if isinstance(exc_type, type) and issubclass(exc_type, Exception):
            raise exc_type(reply.get("msg", ""))  # so tests expecting e.g. ValueError still work
        raise _CandidateError(f"{reply.get('exc')}: {reply.get('msg', '')}")
    return call


def _run_asserts(workdir: Path, program: str, tests: str, lim: Limits, deadline: float) -> CodeResult:
    try:
        defined = _defined_names(program)
    except SyntaxError as exc:
        return CodeResult(False, "failed", f"program does not parse: {exc.msg} (line {exc.lineno})")
    try:
        test_code = compile(tests, "<tests>", "exec")
    except SyntaxError as exc:
        return CodeResult(False, "error", f"tests do not parse: {exc.msg} (line {exc.lineno})")
    (workdir / "program.py").write_text(program)
    shutil.copy(HARNESS, workdir / "harness.py")
    box = _Sandbox(workdir, [os.path.realpath(sys.executable), "-I", "-S", "harness.py"], lim, deadline)
    try:
        hello = box.first()
        if not hello.get("ready"):
            status = "limit" if hello.get("error", "").startswith("MemoryError") else "failed"
            return CodeResult(False, status, f"program failed to load: {hello.get('error', '')}")
        ns = {"__name__": "__tests__", **{n: _stub(box, n) for n in defined}}
        exec(test_code, ns)
        return CodeResult(True, "passed")
    except _Budget as exc:
        return CodeResult(False, exc.status, exc.detail)
    except AssertionError as exc:
        return CodeResult(False, "failed", f"assertion failed {str(exc)[:200]}".strip())
    except EOFError:
        code = box.proc.poll()
        if code is not None and code < 0 and -code in (signal.SIGXCPU, signal.SIGKILL):
            return CodeResult(False, "timeout", "CPU-time limit reached")
        return CodeResult(False, "failed", f"the program's process ended early (exit status {code})")
    except Exception as exc:  # noqa: BLE001 - raised through a stub, a non-data reply, or the tests themselves
        return CodeResult(False, "failed", f"{type(exc).__name__}: {str(exc)[:200]}")
    finally:
        box.kill()


# ---- stdin/stdout cases ---------------------------------------------------------------------------------

def _normalise(text: str) -> list[str]:
    return [line.rstrip() for line in text.strip().splitlines()]


def _run_stdio(workdir: Path, program: str, cases: list[dict], lim: Limits, deadline: float) -> CodeResult:
    (workdir / "program.py").write_text(program)
    results = []
    for i, case in enumerate(cases):
        box = _Sandbox(workdir, [os.path.realpath(sys.executable), "-I", "-S", "program.py"], lim, deadline)
        try:
            out, code = box.run_to_end(case.get("input", ""))
        except _Budget as exc:
            return CodeResult(False, exc.status, f"case {i}: {exc.detail}", results)
        finally:
            box.kill()
        if code < 0 and -code in (signal.SIGXCPU, signal.SIGKILL):
            return CodeResult(False, "timeout", f"case {i}: CPU-time limit reached", results)
        ok = code == 0 and _normalise(out.decode(errors="replace")) == _normalise(str(case.get("output", "")))
        results.append(ok)
        if not ok:
            why = f"exit status {code}" if code != 0 else "wrong output"
            return CodeResult(False, "failed", f"case {i}: {why}", results)
    return CodeResult(True, "passed", f"{len(cases)} cases", results)


def evaluate_code(program: str, tests: dict, timeout_s: float = 10.0, limits: Limits | None = None) -> CodeResult:
    """Run `program` against `tests` in the sandbox and judge it from outside.

    tests: {"asserts": "<python statements with assert, run against the program's definitions>"} or
           {"stdio": [{"input": "...", "output": "..."}, ...]}.
    Returns a CodeResult with .passed and .status in passed | failed | timeout | error | limit.
    """
    lim = limits or Limits(timeout_s=timeout_s, cpu_s=max(1, int(timeout_s) + 1))
    deadline = time.monotonic() + lim.timeout_s
    with tempfile.TemporaryDirectory(prefix="replicate-sbx-") as tmp:
        workdir = Path(tmp)
        os.chmod(workdir, 0o700)
        try:
            if "asserts" in tests:
                return _run_asserts(workdir, program, tests["asserts"], lim, deadline)
            if "stdio" in tests:
                return _run_stdio(workdir, program, list(tests["stdio"]), lim, deadline)
        except OSError as exc:
            return CodeResult(False, "error", f"sandbox failed to start: {exc}")
        return CodeResult(False, "error", "tests must have an 'asserts' or a 'stdio' key")
