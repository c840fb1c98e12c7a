"""Runs inside the jail (stdlib only, no project imports): the jail's trusted supervisor, and the plain-data codec.

The supervisor starts once per jail, drops to the sandbox uid, says hello with its Python version, and then
answers the host one JSON line at a time (stdin in, stdout out):
  {"op": "load", "src", "budget"}   fork a fresh process in a fresh dir that runs `src` -> {"ready": true, "names"} or
                                    {"ready": false, "error"} or {"died": how}
  {"op": "call", "name", "args", "kwargs", "budget"}  call into it -> {"ok": value} | {"exc", "msg"} | {"died"}
  {"op": "stdio", "src", "input", "budget", "cap"}    a fresh process and dir run `src` as __main__ on `input`
                                    -> {"out", "code"} | {"died"}
  {"op": "end"}                     kill the candidate's processes and wipe its files -> {"ended": true}
Candidate code only runs in a forked child with its own rlimits: the child holds no descriptor to the host (its
replies reach the host only through the supervisor, one per request it was sent), the jail has no /proc and
seccomp refuses ptrace, so a candidate can neither forge another candidate's replies nor reach into the
supervisor. Between candidates every process but the supervisor is killed (kill(-1) in the jail's own PID
namespace) and every file the candidate wrote is removed, so nothing leaks from one candidate to the next.

Only plain data crosses (exact types: None, bool, int, float, complex, str, bytes, list, tuple, dict, set,
frozenset, Counter, OrderedDict, deque, Fraction, Decimal), so a candidate cannot hand the judge an object
with a forged __eq__; the tests themselves never enter the jail.
"""
import builtins
import fcntl
import json
import os
import resource
import select
import signal
import sys
import time
from collections import Counter, OrderedDict, deque
from decimal import Decimal
from fractions import Fraction

MAX_DEPTH = 50


def enc(o, depth=0):
    if depth > MAX_DEPTH:
        raise ValueError("value nested too deeply")
    t, d = type(o), depth + 1
    if o is None or t in (bool, str):
        return o
    if t is int:
        return {"i": format(o, "x")}  # hex: no 4,300-digit cap (that applies to decimal strings only)
    if t is float:
        return {"f": repr(o)}
    if t is list:
        return [enc(x, d) for x in o]
    simple = {tuple: "t", set: "s", frozenset: "z", deque: "q"}
    if t in simple:
        return {simple[t]: [enc(x, d) for x in o]}
    maps = {dict: "d", Counter: "C", OrderedDict: "O"}
    if t in maps:
        return {maps[t]: [[enc(k, d), enc(v, d)] for k, v in o.items()]}
    if t is complex:
        return {"c": [repr(o.real), repr(o.imag)]}
    if t is bytes:
        return {"b": o.hex()}
    if t is Fraction:
        return {"F": [format(o.numerator, "x"), format(o.denominator, "x")]}
    if t is Decimal:
        return {"D": str(o)}
    raise TypeError(f"return value of type {t.__name__} is not plain data")


_DEC = {
    "i": lambda v: int(v, 16), "f": float, "t": lambda v: tuple(dec(x) for x in v),
    "s": lambda v: {dec(x) for x in v}, "z": lambda v: frozenset(dec(x) for x in v),
    "q": lambda v: deque(dec(x) for x in v), "d": lambda v: {dec(k): dec(x) for k, x in v},
    "C": lambda v: Counter({dec(k): dec(x) for k, x in v}), "O": lambda v: OrderedDict((dec(k), dec(x)) for k, x in v),
    "c": lambda v: complex(float(v[0]), float(v[1])), "b": bytes.fromhex,
    "F": lambda v: Fraction(int(v[0], 16), int(v[1], 16)), "D": Decimal,
}


def dec(o):
    """Inverse of enc; raises (ValueError, TypeError, KeyError, ...) on anything enc cannot produce."""
    if isinstance(o, list):
        return [dec(x) for x in o]
    if isinstance(o, dict):
        if len(o) != 1:
            raise ValueError("malformed value")
        (tag, v), = o.items()
        return _DEC[tag](v)
    if o is None or type(o) in (bool, str):
        return o
    raise ValueError(f"malformed value of type {type(o).__name__}")


def rmtree(path, keep_root=False):
    """Remove a directory tree of any depth and any path length, without recursion and without following links:
    each subdirectory is hoisted to the top (a rename through directory descriptors) before it is emptied.
    Returns the number of entries that could not be removed."""
    try:
        root = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return 0 if not os.path.lexists(path) else 1
    failed, serial, token = 0, 0, os.urandom(6).hex()
    try:
        while True:
            entries = list(os.scandir(root))
            if not entries or failed > 10_000:
                break
            for e in entries:
                try:
                    if not e.is_dir(follow_symlinks=False):
                        os.unlink(e.name, dir_fd=root)
                        continue
                    os.chmod(e.name, 0o700, dir_fd=root)
                    fd = os.open(e.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=root)
                    try:
                        for sub in os.scandir(fd):
                            if sub.is_dir(follow_symlinks=False):
                                serial += 1
                                os.rename(sub.name, f".rm-{token}-{serial}", src_dir_fd=fd, dst_dir_fd=root)
                            else:
                                os.unlink(sub.name, dir_fd=fd)
                    finally:
                        os.close(fd)
                    os.rmdir(e.name, dir_fd=root)
                except OSError:
                    failed += 1
    finally:
        os.close(root)
    if not keep_root:
        try:
            os.rmdir(path)
        except OSError:
            failed += 1
    return failed


# ---- inside a candidate's process ------------------------------------------------------------------------

def _builtin_name(exc):
    """The most derived builtin exception class of exc (a class merely named ValueError does not count)."""
    for k in type(exc).__mro__:
        if getattr(builtins, k.__name__, None) is k:
            return k.__name__
    return "BaseException"


def _limit(lim):
    for res, val in ((resource.RLIMIT_CPU, lim["cpu_s"]), (resource.RLIMIT_AS, lim["memory_mb"] * 2 ** 20),
                     (resource.RLIMIT_FSIZE, lim["file_bytes"]), (resource.RLIMIT_NOFILE, 64),
                     (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(res, (val, val))


def _serve_calls(ns, req_fd, rep_fd, calls=None):
    """Answer each request line from req_fd, or each of `calls` (known when the process was forked)."""
    reqs = os.fdopen(req_fd, "rb") if calls is None else calls
    for line in reqs:
        try:
            req = json.loads(line) if calls is None else dict(zip(("name", "args", "kwargs"), line))
            fn = ns[req["name"]]
            reply = {"ok": enc(fn(*dec(req["args"]), **{k: dec(v) for k, v in req["kwargs"].items()}))}
        except BaseException as exc:  # noqa: BLE001 - every exception is the candidate's result
            reply = {"exc": _builtin_name(exc), "msg": str(exc)[:300]}
        data = (json.dumps(reply) + "\n").encode()
        while data:
            data = data[os.write(rep_fd, data):]


def _child(src, mode, fds, lim, calls=None):
    """The candidate's process (never returns). calls: load src, say ready on fd 4, serve calls from fd 3.
    stdio: run src as __main__ with fd 0/1 the case's input and output."""
    code = 1
    try:
        os.setsid()
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in (os.open(os.devnull, os.O_RDWR), *fds)]
        targets = (2, 0, 1) if mode == "stdio" else (0, 3, 4)
        for fd, target in zip(high, targets):
            os.dup2(fd, target)
        if mode != "stdio":
            os.dup2(high[0], 1), os.dup2(high[0], 2)
        os.closerange(3 if mode == "stdio" else 5, 1 << 16)
        _limit(lim)
        sys.stdin = open(0, "r", closefd=False)
        sys.stdout = open(1, "w", closefd=False)
        sys.stderr = open(2, "w", closefd=False)
        ns = {"__name__": "__main__" if mode == "stdio" else "__candidate__", "__builtins__": builtins}
        try:
            exec(compile(src, "program.py", "exec", optimize=0), ns)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException as exc:  # noqa: BLE001
            if mode == "stdio":
                raise
            msg = json.dumps({"ready": False, "error": f"{_builtin_name(exc)}: {str(exc)[:300]}"}) + "\n"
            os.write(4, msg.encode())
            os._exit(0)
        if mode == "stdio":
            sys.stdout.flush()
        else:
            names = [n for n in list(ns)[:10_000] if isinstance(n, str) and n.isidentifier() and not n.startswith("__")]
            os.write(4, (json.dumps({"ready": True, "names": names}) + "\n").encode())
            _serve_calls(ns, 3, 4, calls)
            code = 0
    except BaseException:  # noqa: BLE001
        code = 1
    finally:
        os._exit(code & 0xFF)


# ---- the supervisor -----------------------------------------------------------------------------------------

def _describe(status):
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return "cpu" if sig == signal.SIGXCPU else f"signal {sig}"
    return f"exit {os.WEXITSTATUS(status)}"


class Supervisor:
    def __init__(self, work, pidns, lim, out):
        self.work, self.pidns, self.lim, self.out = work, pidns, lim, out
        self.child = None  # (pid, pidfd, (request fd, reply fd), reply buffer)
        self.serial, self.pending, self.load_deadline = 0, b"", 0.0

    def _fork(self, src, mode, stdin_fd=None, stdout_fd=None, calls=None):
        self.serial += 1
        home = os.path.join(self.work, f"c{self.serial}")
        os.mkdir(home, 0o700)
        if mode == "stdio":
            theirs, ours = (stdin_fd, stdout_fd), None
        else:
            req_r, req_w = os.pipe()
            rep_r, rep_w = os.pipe()
            theirs, ours = (req_r, rep_w), (req_w, rep_r)
        pid = os.fork()
        if pid == 0:
            try:
                os.chdir(home)
                os.environ.update(HOME=home, TMPDIR=home)
            finally:
                _child(src, mode, theirs, self.lim, calls)
        for fd in theirs:
            os.close(fd)
        return pid, os.pidfd_open(pid), ours

    def _finish(self):
        """Kill every process but ours (the candidate's and anything it left behind) and wipe the work dir."""
        if self.child:
            pid, pidfd, ours, _ = self.child
            for fd in (pidfd, *ours):
                os.close(fd)
            self.child, self.pending = None, b""
        if self.pidns:
            end = time.monotonic() + 5
            while time.monotonic() < end:
                try:
                    os.kill(-1, signal.SIGKILL)
                except ProcessLookupError:
                    break
                self._reap()
                time.sleep(0.001)
        self._reap()
        rmtree(self.work, keep_root=True)
        if os.path.isdir("/dev/shm") and self.pidns:
            rmtree("/dev/shm", keep_root=True)

    @staticmethod
    def _reap():
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return

    def _exchange(self, data, deadline, cap):
        """Queue data for the child and read one line back, writing while reading (requests may be pipelined);
        -> (line or None, why)."""
        pid, pidfd, (w, r), buf = self.child
        self.pending += data
        os.set_blocking(w, False)
        while True:
            if b"\n" in buf:
                line, rest = buf.split(b"\n", 1)
                self.child = (pid, pidfd, (w, r), rest)
                return line, ""
            left = deadline - time.monotonic()
            if left <= 0:
                return None, "timeout"
            rd, wr, _ = select.select([r, pidfd], [w] if self.pending else [], [], left)
            if wr:
                try:
                    self.pending = self.pending[os.write(w, self.pending):]
                except BrokenPipeError:
                    self.pending = b""
            if r in rd:
                chunk = os.read(r, 65536)
                if not chunk:
                    return None, self._died(pid, deadline)
                buf += chunk
                if len(buf) > cap:
                    return None, "limit: reply too large"
            elif pidfd in rd and not self.pending:
                rd2, _, _ = select.select([r], [], [], 0)
                if not rd2:
                    return None, self._died(pid, deadline)

    def _died(self, pid, deadline):
        """The child closed its end: give it a moment to exit, else kill it; how it ended."""
        if not select.select([self.child[1]], [], [], max(0.0, min(0.2, deadline - time.monotonic())))[0]:
            os.kill(pid, signal.SIGKILL)
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            return "gone"
        return _describe(status)

    def load(self, req, calls=None):
        self._finish()
        deadline = self.load_deadline = time.monotonic() + req["budget"]
        pid, pidfd, ours = self._fork(req["src"], "calls", calls=calls)
        self.child = (pid, pidfd, ours, b"")
        line, why = self._exchange(b"", deadline, 1 << 20)
        if line is None:
            return {"died": why}
        try:
            reply = json.loads(line)
            if reply.get("ready") is True:
                names = reply.get("names", [])
                assert isinstance(names, list) and all(type(n) is str and n.isidentifier() for n in names)
                return {"ready": True, "names": names}
            assert reply.get("ready") is False and isinstance(reply.get("error"), str)
            return {"ready": False, "error": reply["error"]}
        except Exception:  # noqa: BLE001
            return {"died": "malformed ready line"}

    def call(self, req):
        if self.child is None:
            return {"died": "no candidate loaded"}
        data = (json.dumps({"name": req["name"], "args": req["args"], "kwargs": req["kwargs"]}) + "\n").encode()
        return self._reply(data, time.monotonic() + req["budget"])

    def _reply(self, data, deadline):
        """Send data (may be empty: requests already queued) and return the child's next reply, checked."""
        line, why = self._exchange(data, deadline, self.lim["output_bytes"])
        if line is None:
            self._finish()
            return {"died": why}
        try:  # only a well-formed reply leaves the jail
            reply = json.loads(line)
            if set(reply) == {"ok"}:
                dec(reply["ok"])
                return reply
            if set(reply) == {"exc", "msg"} and type(reply["exc"]) is str and type(reply["msg"]) is str:
                return reply
        except (Exception, RecursionError):  # noqa: BLE001
            pass
        self._finish()
        return {"died": "malformed reply"}

    def run(self, req):
        """Load one candidate and make all its calls in one request, within one budget: -> the
        load's reply, plus "results" (one reply per call answered) and "died" if it ended early."""
        loaded = self.load(req, calls=req["calls"])  # the child makes the calls itself: no round trips
        if not loaded.get("ready"):
            return loaded
        results = []
        for _ in req["calls"]:
            reply = self._reply(b"", self.load_deadline)
            if "died" in reply:
                return {"ready": True, "results": results, "died": reply["died"]}
            results.append(reply)
        return {"ready": True, "results": results}

    def stdio(self, req):
        self._finish()
        deadline = time.monotonic() + req["budget"]
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        pid, pidfd, _ = self._fork(req["src"], "stdio", in_r, out_w)
        data, out, why = req["input"].encode(), b"", ""
        os.set_blocking(in_w, False)
        open_fds = [out_r, pidfd]
        try:
            while out_r in open_fds or pidfd in open_fds:
                left = deadline - time.monotonic()
                if left <= 0:
                    why = "timeout"
                    break
                rd, wr, _ = select.select(open_fds, [in_w] if data else [], [], left)
                if wr:
                    try:
                        data = data[os.write(in_w, data):]
                    except BrokenPipeError:
                        data = b""
                    if not data:
                        os.close(in_w)
                        in_w = None
                if out_r in rd:
                    chunk = os.read(out_r, 65536)
                    if not chunk:
                        open_fds.remove(out_r)
                    out += chunk
                    if len(out) > req["cap"]:
                        why = f"limit: output over {req['cap']} bytes"
                        break
                if pidfd in rd:
                    open_fds.remove(pidfd)
                    if out_r in open_fds and not select.select([out_r], [], [], 0)[0]:
                        open_fds.remove(out_r)  # exited; what is left unread is held by a grandchild
        finally:
            for fd in (in_w, out_r, pidfd):
                if fd is not None:
                    os.close(fd)
        if not why:
            _, status = os.waitpid(pid, 0)
            if os.WIFEXITED(status):
                self._finish()
                return {"out": out.decode("latin-1"), "code": os.WEXITSTATUS(status)}
            why = _describe(status)
        self._finish()
        return {"died": why}

    def serve(self, requests):
        for line in requests:
            req = json.loads(line)
            op = req["op"]
            if op == "end":
                self._finish()
                reply = {"ended": True}
            else:
                reply = getattr(self, op)(req)
            self.out.write((json.dumps(reply) + "\n").encode())
            self.out.flush()


def _no_new_privs():
    import ctypes
    if ctypes.CDLL(None, use_errno=True).prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")


def main(argv):
    """argv: work_dir uid(-1: keep) pidns(0/1) limits_json. fd 0 and 1 are the host's and stay ours alone."""
    work, uid, pidns, lim = argv[0], int(argv[1]), argv[2] == "1", json.loads(argv[3])
    out = os.fdopen(os.dup(1), "wb")
    requests = os.fdopen(os.dup(0), "rb")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):
        os.dup2(null, fd)
    if uid >= 0:
        _no_new_privs()
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    os.umask(0o077)
    sup = Supervisor(work, pidns and os.getpid() < 1000, lim, out)
    hello = {"hello": True, "version": list(sys.version_info[:3]), "uid": os.getuid()}
    out.write((json.dumps(hello) + "\n").encode())
    out.flush()
    sup.serve(requests)
    sup._finish()


if __name__ == "__main__":
    main(sys.argv[1:])
