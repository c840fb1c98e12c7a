"""Run untrusted programs against their tests in an OS-level sandbox, with verdicts the program cannot forge.

Isolation: bubblewrap (read-only root, private /tmp, home and project dirs hidden, no network, own PID/IPC/UTS
namespaces, cleared environment, dies with its parent), an unprivileged uid (setpriv, when we are root: root
ignores RLIMIT_NPROC), and rlimits on CPU time, address space, processes, file size and open files; wall time
and output size are enforced by the parent. The sandbox fails closed: without bubblewrap it refuses to run,
unless the caller passes allow_unsandboxed=True (then, as root: the uid drop, rlimits and private network, mount
and PID namespaces via `unshare`, but the filesystem stays readable).

Cleanup: as root each evaluation leases a uid no other live sandbox holds (a lock file per uid), and
evaluate_code returns only once no process of that uid is left (SIGKILL, then a bounded wait).

Verdicts: the tests never enter the sandbox. Function-with-asserts tests run in the parent with every name the
program defines replaced by a stub that calls into the sandboxed process and gets back plain data (exact
builtin types), so pass/fail comes from the parent's own comparisons. Stdin/stdout cases compare the captured
output in the parent. Nothing the program prints, and no exit status, can make a failing program pass.
The tests are trusted input (they come from the benchmark); the program is not.
"""
from __future__ import annotations

import ast
import builtins
import fcntl
import json
import os
import random
import resource
import select
import shlex
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
UID_RANGE = range(40000, 60000)  # uids the sandboxes run as (when we are root)
REAP_TIMEOUT_S = 10.0            # how long to wait for a sandbox's killed processes to be gone
NO_BWRAP = ("bubblewrap (bwrap) is not on PATH, so the code sandbox refuses to run untrusted code: "
            "apt-get install bubblewrap (or pass allow_unsandboxed=True to accept weaker isolation)")


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


class _Refused(Exception):
    """The sandbox cannot be set up, or cleaned up, safely; evaluate_code reports it as status 'error'."""


_warned = False


def bwrap_available() -> bool:
    return shutil.which("bwrap") is not None


# ---- sandbox processes: found by uid, killed, and waited for ------------------------------------------

def _uids_of(pid: str) -> set[int]:
    """Real, effective, saved and filesystem uids of a process (zombies included); empty if it is gone.
    From /proc/PID/status, not the owner of /proc/PID, which a non-dumpable process turns into root."""
    try:
        fd = os.open(f"/proc/{pid}/status", os.O_RDONLY)
    except (FileNotFoundError, ProcessLookupError):
        return set()
    try:
        text = os.read(fd, 8192)
    except ProcessLookupError:
        return set()
    finally:
        os.close(fd)
    at = text.find(b"\nUid:")
    return {int(u) for u in text[at + 5:text.index(b"\n", at + 1)].split()} if at >= 0 else set()


def sandbox_processes(uid: int | None = None) -> list[int]:
    """Pids of every process (zombies included) running as `uid`, or as any sandbox uid when uid is None."""
    wanted = UID_RANGE if uid is None else range(uid, uid + 1)
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and any(u in wanted for u in _uids_of(p))]


def _kill(pid: int, wanted: range) -> None:
    """SIGKILL `pid` through a pidfd after re-checking its uid, so a recycled pid is never hit."""
    try:
        fd = os.pidfd_open(pid)
    except (ProcessLookupError, OSError):
        return
    try:
        if any(u in wanted for u in _uids_of(str(pid))):
            signal.pidfd_send_signal(fd, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    finally:
        os.close(fd)


def wait_until_gone(uid: int | None = None, timeout_s: float = REAP_TIMEOUT_S, kill: bool = False) -> list[int]:
    """Wait (bounded) until no process of `uid` (None: of any sandbox uid) is left; with kill, SIGKILL them
    each round. Returns the pids still there at the timeout (empty when all are gone)."""
    wanted = UID_RANGE if uid is None else range(uid, uid + 1)
    end, delay = time.monotonic() + timeout_s, 0.002
    while True:
        pids = sandbox_processes(uid)
        if not pids or time.monotonic() >= end:
            return pids
        if kill:
            for pid in pids:
                _kill(pid, wanted)
        time.sleep(delay)
        delay = min(2 * delay, 0.05)


class _UidLease:
    """An unprivileged uid held by one sandbox at a time on this host (an flock'd file per uid), so killing
    and waiting by uid never touches another sandbox, and a per-uid process quota is not shared."""

    def __init__(self):
        lock_dir = Path(tempfile.gettempdir()) / "replicate-sbx-uids"
        lock_dir.mkdir(mode=0o700, exist_ok=True)
        start = random.randrange(len(UID_RANGE))
        for i in range(len(UID_RANGE)):
            uid = UID_RANGE[(start + i) % len(UID_RANGE)]
            fd = os.open(lock_dir / str(uid), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            if not sandbox_processes(uid):  # not a leftover of a crashed worker
                self.uid, self._fd = uid, fd
                return
            os.close(fd)
        raise _Refused("no free sandbox uid: every uid in 40000-59999 is in use")

    def release(self) -> None:
        os.close(self._fd)


# ---- the command line that confines one process ---------------------------------------------------------

def _py_paths() -> list[str]:
    """The interpreter's directories the sandbox must see, without ones nested in another."""
    paths = sorted({sys.base_prefix, sys.prefix, os.path.dirname(os.path.realpath(sys.executable))})
    return [p for p in paths if not any(p != q and p.startswith(q.rstrip("/") + "/") for q in paths)]


def _bwrap_command(workdir: Path, drop: list[str]) -> list[str]:
    hide = [a for d in ("/root", "/home", "/tmp", "/var/tmp", "/run", "/work", "/mnt", "/srv", "/opt")
            if os.path.isdir(d) for a in ("--tmpfs", d)]
    binds = [a for p in _py_paths() for a in ("--ro-bind", p, p)]
    unshare_user = [] if drop else ["--unshare-user"]
    return ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", *hide, *binds,
            "--bind", str(workdir), str(workdir), "--chdir", str(workdir), "--unshare-net", "--unshare-pid",
            "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", *unshare_user, "--die-with-parent",
            "--new-session", "--clearenv", "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin",
            "--setenv", "HOME", str(workdir), "--setenv", "PYTHONDONTWRITEBYTECODE", "1", "--"] + drop


def _blocking_ancestor(path: str) -> str | None:
    """The outermost directory above `path` that other users cannot enter (e.g. /root, 0700), if any."""
    parts = Path(path).parts
    for i in range(2, len(parts)):
        d = os.path.join(*parts[:i])
        if not os.stat(d).st_mode & 0o001:
            return d
    return None


def _reach_script(stage: Path) -> list[str]:
    """Shell lines, run as root in a private mount namespace, that let the dropped uid reach the interpreter
    when it lives under a directory others cannot enter (pyenv under /root): stage a bind of each interpreter
    directory, cover the blocking directory with an empty tmpfs, and bind the staged directories back."""
    blocked = [(p, a) for p in _py_paths() if (a := _blocking_ancestor(p))]
    if not blocked:
        return []
    q = shlex.quote
    lines = ["set -e"]
    lines += [f"mkdir -p {q(f'{stage}/{i}')} && mount --bind {q(p)} {q(f'{stage}/{i}')}"
              for i, (p, _) in enumerate(blocked)]
    lines += [f"mount -t tmpfs -o mode=0755 tmpfs {q(a)}" for a in sorted({a for _, a in blocked})]
    lines += [f"mkdir -p {q(p)} && mount --bind {q(f'{stage}/{i}')} {q(p)} && umount {q(f'{stage}/{i}')}"
              for i, (p, _) in enumerate(blocked)]
    return lines


def _unsandboxed_command(workdir: Path, stage: Path, drop: list[str], argv: list[str]) -> list[str]:
    """Without bubblewrap (explicitly allowed): as root, private network, mount and PID namespaces and the uid
    drop; otherwise only a cleared environment (and the rlimits)."""
    env = ["env", "-i", "PATH=/usr/bin:/bin", f"HOME={workdir}", "PYTHONDONTWRITEBYTECODE=1"]
    if not drop:
        return env + argv
    script = "\n".join(_reach_script(stage) + ["exec " + shlex.join(drop + env + argv)])
    return ["unshare", "--net", "--mount", "--pid", "--fork", "--kill-child", "--propagation", "private",
            "--", "/bin/sh", "-c", script]


class _Jail:
    """Where and as whom one evaluation's processes run: the program's workdir, and a staging dir for mounts
    (ours, 0700, outside the workdir, so the program can neither see into it nor replace it)."""

    def __init__(self, workdir: Path, stage: Path, sandboxed: bool, uid: int | None):
        self.workdir, self.stage, self.sandboxed, self.uid = workdir, stage, sandboxed, uid
        self._handed_over = False
        os.chmod(workdir, 0o700)

    def command(self, argv: list[str]) -> list[str]:
        """The confining command line; the first call hands the workdir to the sandbox uid (only then: later
        the program may have planted links there that a chown would follow)."""
        drop = [] if self.uid is None else ["setpriv", f"--reuid={self.uid}", f"--regid={self.uid}",
                                            "--clear-groups", "--no-new-privs", "--"]
        if self.uid is not None and not self._handed_over:
            for f in [self.workdir, *self.workdir.iterdir()]:
                os.chown(f, self.uid, self.uid, follow_symlinks=False)
        self._handed_over = True
        if self.sandboxed:
            return _bwrap_command(self.workdir, drop) + argv
        return _unsandboxed_command(self.workdir, self.stage, drop, argv)


def _check_tools(allow_unsandboxed: bool) -> bool:
    """Whether bubblewrap will be used; raises _Refused when the sandbox cannot be set up safely."""
    global _warned
    sandboxed = bwrap_available()
    if not sandboxed and not allow_unsandboxed:
        raise _Refused(NO_BWRAP)
    root = os.geteuid() == 0
    needed = ["setpriv"] * root + ["unshare", "mount", "umount"] * (root and not sandboxed)
    missing = [t for t in needed if shutil.which(t) is None]
    if missing:
        raise _Refused(f"{', '.join(missing)} not found (needed to drop root in the sandbox): "
                       "apt-get install util-linux mount")
    if not sandboxed and not _warned:
        warnings.warn("evaluate_code(allow_unsandboxed=True) without bubblewrap: untrusted code can read the "
                      "filesystem; install it: apt-get install bubblewrap", RuntimeWarning, stacklevel=3)
        _warned = True
    return sandboxed


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

    def __init__(self, jail: _Jail, argv: list[str], lim: Limits, deadline: float):
        self.lim, self.deadline, self.uid = lim, deadline, jail.uid
        self.proc = subprocess.Popen(jail.command(argv), cwd=jail.workdir, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_limits(lim))
        self._buf = b""

    def kill(self):
        """Kill everything the sandbox started and return once it is all gone (as root: every process of the
        sandbox uid, killed while the root-owned launcher is still there to reap them; then the launcher)."""
        if self.uid is not None:
            wait_until_gone(self.uid, kill=True)
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
        if self.uid is not None and (left := wait_until_gone(self.uid, kill=True)):
            raise _Refused(f"{len(left)} sandbox processes of uid {self.uid} survived SIGKILL for {REAP_TIMEOUT_S}s")

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


def _run_asserts(jail: _Jail, program: str, tests: str, lim: Limits, deadline: float) -> CodeResult:
    try:
        defined = _defined_names(program)
    except SyntaxError as exc:
        return CodeResult(False, "failed", f"program does not parse: {exc.msg} (line {exc.lineno})")
    try:
        test_code = compile(tests, "<tests>", "exec")
    except SyntaxError as exc:
        return CodeResult(False, "error", f"tests do not parse: {exc.msg} (line {exc.lineno})")
    (jail.workdir / "program.py").write_text(program)
    shutil.copy(HARNESS, jail.workdir / "harness.py")
    box = _Sandbox(jail, [os.path.realpath(sys.executable), "-I", "-S", "harness.py"], lim, deadline)
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


def _run_stdio(jail: _Jail, program: str, cases: list[dict], lim: Limits, deadline: float) -> CodeResult:
    (jail.workdir / "program.py").write_text(program)
    results = []
    for i, case in enumerate(cases):
        box = _Sandbox(jail, [os.path.realpath(sys.executable), "-I", "-S", "program.py"], lim, deadline)
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


def _run(jail: _Jail, program: str, tests: dict, lim: Limits, deadline: float) -> CodeResult:
    if "asserts" in tests:
        return _run_asserts(jail, program, tests["asserts"], lim, deadline)
    return _run_stdio(jail, program, list(tests["stdio"]), lim, deadline)


def evaluate_code(program: str, tests: dict, timeout_s: float = 10.0, limits: Limits | None = None,
                  allow_unsandboxed: bool = False) -> CodeResult:
    """Run `program` against `tests` in the sandbox and judge it from outside.

    tests: {"asserts": "<python statements with assert, run against the program's definitions>"} or
           {"stdio": [{"input": "...", "output": "..."}, ...]}.
    Without bubblewrap this refuses (status error) unless allow_unsandboxed=True. Returns once no process of
    the sandbox is left, with .passed and .status in passed | failed | timeout | error | limit.
    """
    if not isinstance(tests, dict) or not {"asserts", "stdio"} & tests.keys():
        return CodeResult(False, "error", "tests must be a dict with an 'asserts' or a 'stdio' key")
    lim = limits or Limits(timeout_s=timeout_s, cpu_s=max(1, int(timeout_s) + 1))
    deadline = time.monotonic() + lim.timeout_s
    lease = None
    try:
        sandboxed = _check_tools(allow_unsandboxed)
        lease = _UidLease() if os.geteuid() == 0 else None
        with tempfile.TemporaryDirectory(prefix="replicate-sbx-") as work, \
                tempfile.TemporaryDirectory(prefix="replicate-sbx-mnt-") as stage:
            jail = _Jail(Path(work), Path(stage), sandboxed, lease.uid if lease else None)
            return _run(jail, program, tests, lim, deadline)
    except _Refused as exc:
        return CodeResult(False, "error", str(exc))
    except OSError as exc:
        return CodeResult(False, "error", f"sandbox failed to start: {exc}")
    finally:
        if lease is not None:
            lease.release()


# ---- many calls through one sandbox start: values come back as data, the caller judges ------------------

def _call_all(jail: _Jail, program: str, calls: list, lim: Limits, deadline: float) -> tuple[str, list]:
    try:
        defined = _defined_names(program)
    except SyntaxError as exc:
        return f"failed: program does not parse: {exc.msg}", [None] * len(calls)
    (jail.workdir / "program.py").write_text(program)
    shutil.copy(HARNESS, jail.workdir / "harness.py")
    box = _Sandbox(jail, [os.path.realpath(sys.executable), "-I", "-S", "harness.py"], lim, deadline)
    values: list = []
    try:
        if not box.first().get("ready"):
            return "failed: program failed to load", [None] * len(calls)
        for name, args in calls:
            try:
                values.append(_stub(box, name)(*args) if name in defined else None)
            except (_CandidateError, ValueError, TypeError, ArithmeticError, LookupError, NameError,
                    AttributeError, RuntimeError, AssertionError):
                values.append(None)
        return "passed", values
    except _Budget as exc:
        return f"{exc.status}: {exc.detail}", values + [None] * (len(calls) - len(values))
    except (EOFError, json.JSONDecodeError):
        return "failed: the program's process ended early", values + [None] * (len(calls) - len(values))
    finally:
        box.kill()


def call_in_sandbox(program: str, calls: list, timeout_s: float = 10.0, limits: Limits | None = None,
                    allow_unsandboxed: bool = False) -> tuple[str, list]:
    """Load `program` once in the sandbox and make each call (name, args) through it, in order.

    For scoring many small candidates with one sandbox start: the caller compares the returned values itself
    (plain data of exact builtin types, as with asserts), so nothing the program does can forge a verdict.
    Returns (status, values): status "passed" when every call was made (a call that raised gives None),
    otherwise "<status>: detail" (failed | timeout | limit | error) with None for the calls not made.
    """
    lim = limits or Limits(timeout_s=timeout_s, cpu_s=max(1, int(timeout_s) + 1))
    deadline = time.monotonic() + lim.timeout_s
    lease = None
    try:
        sandboxed = _check_tools(allow_unsandboxed)
        lease = _UidLease() if os.geteuid() == 0 else None
        with tempfile.TemporaryDirectory(prefix="replicate-sbx-") as work, \
                tempfile.TemporaryDirectory(prefix="replicate-sbx-mnt-") as stage:
            jail = _Jail(Path(work), Path(stage), sandboxed, lease.uid if lease else None)
            return _call_all(jail, program, list(calls), lim, deadline)
    except _Refused as exc:
        return f"error: {exc}", [None] * len(calls)
    except OSError as exc:
        return f"error: sandbox failed to start: {exc}", [None] * len(calls)
    finally:
        if lease is not None:
            lease.release()
