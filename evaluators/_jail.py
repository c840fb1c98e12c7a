"""One jail set-up for every way the code evaluator runs untrusted programs (evaluate_code and call_in_sandbox).

A jail is one bubblewrap sandbox with the trusted supervisor of `_sandbox_harness.py` in it; candidates are
forked from the supervisor, each in its own fresh process and directory (see there). What the jail holds:
- a minimal root: only the interpreter, its standard library and the shared libraries they load, read-only;
  nothing else of the host (site-packages hidden); a size-capped tmpfs /tmp is the only writable place;
- no network, own PID/IPC/UTS namespaces, no /proc, cleared environment, dies with its parent; seccomp refuses
  ptrace, process_vm_*, pidfd_getfd, kernel keyrings, bpf, perf, userfaultfd, io_uring, mount and namespaces;
- as root: an unprivileged uid that no other live jail holds (an flock'd file per uid);
- a cgroup (v1 or v2) capping memory and process count for the whole jail, not per process;
- a watchdog thread that kills the jail at its deadline whatever the host is blocked on.
It fails closed: without bubblewrap, or without a cgroup it can create, it refuses (allow_unsandboxed=True
accepts weaker isolation: then, as root, private network/mount/PID namespaces and the uid drop, but the host's
filesystem stays readable, and limits are per process where no cgroup can be made).
"""
from __future__ import annotations

import atexit
import fcntl
import json
import os
import random
import resource
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import warnings
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from evaluators._sandbox_harness import rmtree

HARNESS = Path(__file__).with_name("_sandbox_harness.py")
UID_RANGE = range(40000, 60000)  # uids the sandboxes run as (when we are root)
REAP_TIMEOUT_S = 10.0            # how long to wait for a sandbox's killed processes to be gone
NO_BWRAP = ("bubblewrap (bwrap) is not on PATH, so the code sandbox refuses to run untrusted code: "
            "apt-get install bubblewrap (or pass allow_unsandboxed=True to accept weaker isolation)")
NO_CGROUP = ("no cgroup with memory and pids controllers can be created here, so the sandbox cannot cap the "
             "memory and process count of a whole jail: run as root with /sys/fs/cgroup writable (or pass "
             "allow_unsandboxed=True to accept per-process limits)")


class Refused(Exception):
    """The sandbox cannot be set up, or cleaned up, safely (reported as status 'error')."""


class JailDied(Exception):
    """The jail ended or was killed mid-request; .why: timeout | limit | failed."""

    def __init__(self, why, detail):
        super().__init__(detail)
        self.why, self.detail = why, detail


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
    """An unprivileged uid held by one jail at a time on this host (an flock'd file per uid), so killing
    and waiting by uid never touches another jail, and a per-uid process quota is not shared."""

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
        raise Refused("no free sandbox uid: every uid in 40000-59999 is in use")

    def release(self) -> None:
        os.close(self._fd)


# ---- a cgroup for the whole jail -------------------------------------------------------------------------

class Cgroup:
    """A fresh cgroup (v1: one in the memory and one in the pids hierarchy; v2: one) with memory and process
    caps; the jail joins it before it execs, so every process in the jail counts against one budget."""

    def __init__(self, memory_bytes: int, pids: int):
        self.dirs = _make_cgroup_dirs(f"replicate-sbx-{os.getpid()}-{random.getrandbits(48):x}")
        if not self.dirs:
            raise Refused(NO_CGROUP)
        try:
            for d in self.dirs:
                for name, value in (("memory.limit_in_bytes", memory_bytes), ("memory.memsw.limit_in_bytes",
                                    memory_bytes), ("memory.max", memory_bytes), ("memory.swap.max", 0),
                                    ("pids.max", pids)):
                    if (d / name).exists():
                        (d / name).write_text(str(value))
        except OSError as exc:
            self.remove()
            raise Refused(f"{NO_CGROUP} ({exc})") from None

    def join_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    def pids(self) -> list[int]:
        out = []
        for d in self.dirs:
            try:
                out += [int(p) for p in (d / "cgroup.procs").read_text().split()]
            except OSError:
                pass
        return out

    def oom_kills(self) -> int:
        """How many processes the kernel killed for the memory cap (v1 memory.oom_control, v2 memory.events)."""
        for d in self.dirs:
            for name in ("memory.events", "memory.oom_control"):
                try:
                    for line in (d / name).read_text().splitlines():
                        key, _, value = line.partition(" ")
                        if key == "oom_kill":
                            return int(value)
                except OSError:
                    continue
        return 0

    def kill_all(self) -> None:
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def remove(self) -> None:
        end = time.monotonic() + REAP_TIMEOUT_S
        for d in self.dirs:
            while True:
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > end:
                        break
                    self.kill_all()
                    time.sleep(0.005)


def _own_cgroups() -> dict[str, str]:
    """{controller (or '' for v2): this process's cgroup path} from /proc/self/cgroup."""
    out = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for c in controllers.split(",") if controllers else [""]:
            out[c] = path
    return out


def _remove_stale(parent: Path) -> None:
    """Remove empty cgroups left by sandboxes of processes that no longer exist (killed before they cleaned up)."""
    try:
        for d in parent.glob("replicate-sbx-*"):
            pid = d.name.split("-")[2]
            if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
                try:
                    d.rmdir()
                except OSError:
                    pass
    except OSError:
        pass


def _make_cgroup_dirs(name: str) -> list[Path]:
    root = Path("/sys/fs/cgroup")
    own = _own_cgroups()
    v1 = [root / c / own[c].lstrip("/") for c in ("memory", "pids") if c in own and (root / c).is_dir()]
    if len(v1) == 2:
        made = []
        for parent in v1:
            _remove_stale(parent)
            try:
                (parent / name).mkdir()
                made.append(parent / name)
            except OSError:
                for d in made:
                    d.rmdir()
                return []
        return made
    if "" in own and (root / "cgroup.controllers").exists():
        parent = root / own[""].lstrip("/")
        try:
            if not {"memory", "pids"} <= set((parent / "cgroup.subtree_control").read_text().split()):
                return []
            (parent / name).mkdir()
            return [parent / name]
        except OSError:
            return []
    return []


# ---- seccomp: a classic BPF program refusing the syscalls a candidate has no business making ------------------

_X86_64_DENY = {  # name: x86_64 syscall number
    "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "pidfd_getfd": 438, "kcmp": 312,
    "add_key": 248, "request_key": 249, "keyctl": 250, "bpf": 321, "perf_event_open": 298, "userfaultfd": 323,
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "unshare": 272, "setns": 308,
    "mount": 165, "umount2": 166, "pivot_root": 155, "open_by_handle_at": 304, "kexec_load": 246,
    "init_module": 175, "finit_module": 313, "delete_module": 176, "fsopen": 430, "fsmount": 432,
    "move_mount": 429, "open_tree": 428, "process_madvise": 440,
    # System V and POSIX message-queue IPC outlive their creator in the jail's IPC namespace: refused, so a
    # candidate can leave nothing there for the next one in a warm jail
    "shmget": 29, "shmat": 30, "shmctl": 31, "semget": 64, "semop": 65, "semctl": 66, "msgget": 68, "msgsnd": 69,
    "msgrcv": 70, "msgctl": 71, "semtimedop": 220, "mq_open": 240, "mq_unlink": 241, "mq_timedsend": 242,
    "mq_timedreceive": 243, "mq_notify": 244, "mq_getsetattr": 245,
}


def seccomp_program() -> bytes | None:
    """The filter (x86_64 only; None elsewhere): other architectures' calling conventions are killed, listed
    syscalls fail with EPERM, the rest are allowed."""
    if os.uname().machine != "x86_64":
        return None
    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06
    allow, kill, eperm = 0x7FFF0000, 0x80000000, 0x00050000 | 1
    nrs = sorted(_X86_64_DENY.values())
    ins = [(ld, 0, 0, 4), (jeq, 1, 0, 0xC000003E), (ret, 0, 0, kill), (ld, 0, 0, 0),
           (jge, len(nrs) + 1, 0, 0x40000000)]  # x32 ABI numbers: refused
    ins += [(jeq, len(nrs) - i, 0, nr) for i, nr in enumerate(nrs)]
    ins += [(ret, 0, 0, allow), (ret, 0, 0, eperm)]
    return b"".join(struct.pack("HBBI", *i) for i in ins)


# ---- the minimal root ---------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _root_mounts() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(directories, files) to bind read-only: the interpreter's stdlib dirs, and the interpreter, libpython
    and every shared library they and the stdlib's extension modules load (from ldd, once per process)."""
    paths = sysconfig.get_paths()
    dirs = sorted({os.path.realpath(paths[k]) for k in ("stdlib", "platstdlib")})
    dirs = [d for d in dirs if not any(d != q and d.startswith(q + "/") for q in dirs)]
    exe = os.path.realpath(sys.executable)
    dynload = [str(p) for d in dirs for p in Path(d, "lib-dynload").glob("*.so")
               if not p.name.startswith(("_test", "_tkinter", "xxlimited", "_ctypes_test", "_xxtest"))]
    files = {exe}
    try:
        out = subprocess.run(["ldd", exe, *dynload], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Refused(f"cannot list the interpreter's shared libraries (ldd: {exc})") from None
    for line in out.splitlines():
        for word in line.split():
            if word.startswith("/") and not word.endswith(":") and os.path.exists(word):
                files.add(word)
    files = {f for f in files if not any(f.startswith(d + "/") for d in dirs)}
    return tuple(dirs), tuple(sorted(files))


def _bwrap_command(tmp_bytes: int, seccomp_fd: int | None, as_root: bool) -> list[str]:
    dirs, files = _root_mounts()
    parents = sorted({str(a) for p in (*dirs, *files, "/sbx/harness.py") for a in Path(p).parents if str(a) != "/"},
                     key=lambda p: p.count("/"))
    mkdirs = [a for d in parents for a in ("--perms", "0755", "--dir", d)]  # reachable by the dropped uid
    binds = mkdirs + [a for p in (*dirs, *files) for a in ("--ro-bind", os.path.realpath(p), p)]
    site = [a for d in dirs if os.path.isdir(f"{d}/site-packages") for a in ("--tmpfs", f"{d}/site-packages")]
    return ["bwrap", *binds, *site, "--ro-bind", str(HARNESS), "/sbx/harness.py", "--dev", "/dev",
            "--perms", "01777", "--size", str(tmp_bytes), "--tmpfs", "/tmp", "--remount-ro", "/",
            "--chdir", "/tmp", "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", *([] if as_root else ["--unshare-user"]), "--die-with-parent",
            "--new-session", "--clearenv", "--setenv", "PATH", "/nonexistent", "--setenv", "HOME", "/tmp",
            *(["--seccomp", str(seccomp_fd)] if seccomp_fd is not None else []),
            "--", os.path.realpath(sys.executable), "-I", "-S", "/sbx/harness.py"]


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
    paths = sorted({sys.base_prefix, sys.prefix, os.path.dirname(os.path.realpath(sys.executable))})
    paths = [p for p in paths if not any(p != q and p.startswith(q.rstrip("/") + "/") for q in paths)]
    blocked = [(p, a) for p in paths if (a := _blocking_ancestor(p))]
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


def _unsandboxed_command(base: Path, as_root: bool, tail: list[str]) -> list[str]:
    """Without bubblewrap (explicitly allowed): as root, private network, mount and PID namespaces (the
    supervisor drops the uid itself); otherwise only a cleared environment."""
    argv = ["env", "-i", "PATH=/usr/bin:/bin", f"HOME={base}/work", "PYTHONDONTWRITEBYTECODE=1",
            os.path.realpath(sys.executable), "-I", "-S", str(base / "harness.py"), *tail]
    if not as_root:
        return argv
    script = "\n".join(_reach_script(base / "stage") + ["exec " + shlex.join(argv)])
    return ["unshare", "--net", "--mount", "--pid", "--fork", "--kill-child", "--propagation", "private",
            "--", "/bin/sh", "-c", script]


_warned = False


def _check_tools(allow_unsandboxed: bool) -> bool:
    """Whether bubblewrap will be used; raises Refused when the sandbox cannot be set up safely."""
    global _warned
    sandboxed = bwrap_available()
    if not sandboxed and not allow_unsandboxed:
        raise Refused(NO_BWRAP)
    missing = [t for t in ["unshare", "mount", "umount"] * (os.geteuid() == 0 and not sandboxed)
               if shutil.which(t) is None]
    if missing:
        raise Refused(f"{', '.join(sorted(set(missing)))} not found (needed to drop root in the sandbox): "
                      "apt-get install util-linux mount")
    if not sandboxed and not _warned:
        warnings.warn("evaluate_code(allow_unsandboxed=True) without bubblewrap: untrusted code can read the "
                      "filesystem; install it: apt-get install bubblewrap", RuntimeWarning, stacklevel=4)
        _warned = True
    return sandboxed


# ---- the jail: started once, then requests to its supervisor ---------------------------------------------

class Jail:
    """A running jail: start it, send requests to its supervisor (each with a wall budget the watchdog enforces),
    close it (returns once none of its processes is left). Used as a context manager."""

    def __init__(self, lim, allow_unsandboxed: bool = False):
        self.lim, self.proc, self.fired, self.dead = lim, None, False, False
        self.oom_base, self.sandboxed, self.idle_since = 0, False, 0.0
        self._lock, self._cv = threading.Lock(), threading.Condition()
        self._deadline, self._closed, self._buf = float("inf"), False, b""
        self._lease = self._cgroup = self._base = None
        try:
            self._start(_check_tools(allow_unsandboxed), allow_unsandboxed)
        except BaseException:
            self.close()
            raise

    def _start(self, sandboxed: bool, allow_unsandboxed: bool) -> None:
        as_root, self.sandboxed = os.geteuid() == 0, sandboxed
        lim = self.lim
        try:
            self._cgroup = Cgroup(lim.memory_mb * 2 ** 20, lim.processes)
        except Refused:
            if not allow_unsandboxed:
                raise
        self._lease = _UidLease() if as_root else None
        uid = self._lease.uid if self._lease else -1
        child_lim = {"cpu_s": lim.cpu_s, "memory_mb": lim.memory_mb, "file_bytes": lim.file_bytes,
                     "output_bytes": lim.output_bytes}
        seccomp_fd = None

        def tail(work):  # the supervisor's arguments
            return [work, str(uid), "1" if sandboxed or as_root else "0", json.dumps(child_lim)]
        if sandboxed:
            program = seccomp_program()
            if program is not None:
                seccomp_fd = os.memfd_create("seccomp", 0)
                os.write(seccomp_fd, program)
                os.lseek(seccomp_fd, 0, os.SEEK_SET)
            cmd = _bwrap_command(lim.disk_bytes, seccomp_fd, as_root) + tail("/tmp")
        else:
            self._base = Path(tempfile.mkdtemp(prefix="replicate-sbx-"))
            os.chmod(self._base, 0o711)
            shutil.copy(HARNESS, self._base / "harness.py")
            (self._base / "work").mkdir(mode=0o700)
            (self._base / "stage").mkdir(mode=0o700)
            if uid >= 0:
                os.chown(self._base / "work", uid, uid)
            cmd = _unsandboxed_command(self._base, as_root, tail(str(self._base / "work")))
        self._errors = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._errors,
                                         pass_fds=[seccomp_fd] if seccomp_fd is not None else [],
                                         preexec_fn=_host_limits(lim, self._cgroup))
        finally:
            if seccomp_fd is not None:
                os.close(seccomp_fd)
        threading.Thread(target=self._watch, daemon=True).start()
        hello = self.request(None, lim.start_s)
        if hello.get("version") != list(sys.version_info[:3]):
            raise Refused(f"the jail runs Python {'.'.join(map(str, hello.get('version') or ['?']))}, the caller "
                          f"{sys.version.split()[0]} ({sys.executable}): refusing to judge with another interpreter")

    # the watchdog: kills the jail at the deadline of the request in flight, whatever the host is blocked on
    def _watch(self) -> None:
        with self._cv:
            while not self._closed:
                left = self._deadline - time.monotonic()
                if left <= 0:
                    self.fired = True
                    break
                self._cv.wait(min(left, 3600))
        if self.fired:
            self._kill()

    def _arm(self, deadline: float) -> None:
        with self._cv:
            self._deadline = deadline
            self._cv.notify()

    def _kill(self) -> None:
        with self._lock:
            if self._cgroup:
                self._cgroup.kill_all()
            if self.proc is not None:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                self.proc.kill()
            if self._lease:
                wait_until_gone(self._lease.uid, kill=True)

    def request(self, msg: dict | None, budget_s: float) -> dict:
        """Send msg (None: only read the next line) with `budget_s` seconds for the supervisor to answer;
        the watchdog kills the jail budget_s + 0.25 s from now. Raises JailDied when the jail ends first."""
        self._arm(time.monotonic() + budget_s + 0.25)
        try:
            if msg is not None:
                self.proc.stdin.write((json.dumps({**msg, "budget": budget_s}) + "\n").encode())
                self.proc.stdin.flush()
            line = self._read_line(8 * self.lim.output_bytes + 65536)
            return json.loads(line)
        except (OSError, ValueError, EOFError):
            raise self._death() from None
        finally:
            self._arm(float("inf"))

    def _read_line(self, cap: int) -> bytes:
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            chunk = os.read(fd, 1 << 16)
            if not chunk or len(self._buf) > cap:
                raise EOFError
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line

    def oom_kills(self) -> int:
        """Processes the kernel killed for the memory cap since the current candidate was loaded."""
        return (self._cgroup.oom_kills() if self._cgroup else 0) - self.oom_base

    def new_candidate(self) -> None:
        self.oom_base += self.oom_kills()

    def alive(self) -> bool:
        return not self.dead and self.proc is not None and self.proc.poll() is None

    def _death(self) -> JailDied:
        self.dead = True
        self._kill()
        self.proc.wait()
        if self.fired:
            return JailDied("timeout", "wall-time limit reached")
        if self.oom_kills() > 0:
            return JailDied("limit", "the jail ran out of memory")
        self._errors.seek(0)
        err = self._errors.read()[-300:].decode(errors="replace").strip()
        return JailDied("failed", f"the sandbox ended early (exit status {self.proc.returncode})"
                        + (f": {err}" if err and self.proc.returncode not in (-9, 0) else ""))

    def close(self) -> None:
        """Kill everything the jail started and return once it is all gone."""
        with self._cv:
            self._closed = True
            self._cv.notify()
        try:
            if self.proc is not None:
                for stream in (self.proc.stdin, self.proc.stdout):
                    try:
                        stream.close()
                    except OSError:
                        pass
                self._kill()
                self.proc.wait()
            if self._cgroup:
                self._cgroup.remove()
            if self._lease and (left := wait_until_gone(self._lease.uid, kill=True)):
                raise Refused(f"{len(left)} sandbox processes of uid {self._lease.uid} survived SIGKILL")
        finally:
            if self._lease:
                self._lease.release()
            if self._base is not None and rmtree(str(self._base)):
                raise Refused(f"could not remove the sandbox's work dir {self._base}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _host_limits(lim, cgroup):
    """Run in the jail's first process before it execs: its own session, the cgroup, whole-jail rlimits."""
    files = cgroup.join_files() if cgroup else []

    def apply():
        os.setsid()
        for f in files:
            with open(f, "w") as fh:
                fh.write(str(os.getpid()))
        for res, val in ((resource.RLIMIT_NPROC, lim.processes), (resource.RLIMIT_CORE, 0),
                         (resource.RLIMIT_FSIZE, lim.file_bytes)):
            resource.setrlimit(res, (val, val))
    return apply


# ---- warm jails: started once, reused; every candidate still gets a fresh process, dir and limits -------------

POOL_SIZE = 4        # idle jails kept per (process, limits)
_pool_lock = threading.Lock()
_idle: dict[tuple, list[Jail]] = {}


@contextmanager
def warm_jail(lim, allow_unsandboxed: bool = False):
    """A jail from the pool of idle ones (or a new one); given back after use only if it is healthy and the
    supervisor confirms it killed every process of the last candidate and wiped its files. Jails without
    bubblewrap are never reused (without a PID namespace nothing guarantees a candidate left no process)."""
    key = (os.getpid(), allow_unsandboxed, lim.cpu_s, lim.memory_mb, lim.processes, lim.output_bytes,
           lim.file_bytes, lim.disk_bytes)
    jail, stale = None, []
    with _pool_lock:
        idle = _idle.setdefault(key, []) if _check_tools(allow_unsandboxed) else []
        while idle and jail is None:
            candidate = idle.pop()
            (stale if not candidate.alive() else [None]).append(candidate)
            jail = candidate if candidate.alive() else None
    for old in stale:
        if old is not None:
            old.close()
    jail = jail or Jail(lim, allow_unsandboxed)
    reusable = False
    try:
        yield jail
        if jail.sandboxed and jail.alive():
            try:
                reusable = jail.request({"op": "end"}, 10.0).get("ended") is True
            except JailDied:
                reusable = False
    finally:
        with _pool_lock:
            idle = _idle.setdefault(key, [])
            keep = reusable and len(idle) < POOL_SIZE and key[0] == os.getpid()
            if keep:
                idle.append(jail)
        if not keep:
            jail.close()


def close_warm_jails() -> None:
    """Close every idle jail of this process (also run at exit)."""
    with _pool_lock:
        jails = [j for k, idle in _idle.items() if k[0] == os.getpid() for j in idle]
        _idle.clear()
    for jail in jails:
        try:
            jail.close()
        except Refused:
            pass


atexit.register(close_warm_jails)
