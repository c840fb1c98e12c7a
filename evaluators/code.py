"""Run untrusted programs against their tests in an OS-level sandbox, with verdicts the program cannot forge.

Isolation is the jail of `evaluators._jail` (one set-up for both entry points): a minimal read-only root with
only the interpreter, a size-capped tmpfs, no network or /proc, seccomp, an unprivileged uid, a cgroup capping
the whole jail's memory and processes, and a watchdog that kills the jail at the deadline whatever the host is
blocked on. Each candidate runs in its own fresh process and directory, forked from the jail's trusted
supervisor (`evaluators._sandbox_harness`), and each stdio case in another. The sandbox fails closed: without
bubblewrap or a cgroup it refuses (status error) unless the caller passes allow_unsandboxed=True.

Verdicts: the tests never enter the sandbox. Assert-style tests run here, in a namespace the candidate cannot
rig: the real builtins, plus one stub for each name the tests ask for (a name they read that the program
defines, builtins excepted; or the tests' "entry_point"). A stub calls into the candidate's process and gets
back plain data (exact types), so pass/fail comes from this process's own comparisons. A candidate's exception
is a result: builtin Exceptions are re-raised by type (tests expecting ValueError still work), StopIteration
becomes a RuntimeError (as PEP 479 does for generators, so `all(map(f, xs))` cannot stop early), and exits,
interrupts, timeouts and crashes end the evaluation (no `except Exception` in the tests can swallow them).
Stdin/stdout cases compare the captured output here. Tests are trusted input; the program is not.
"""
from __future__ import annotations

import ast
import builtins
import time
from dataclasses import dataclass, field

from evaluators._jail import (HARNESS, NO_BWRAP, NO_CGROUP, REAP_TIMEOUT_S, UID_RANGE, Jail, JailDied,  # noqa: F401
                              Refused, bwrap_available, close_warm_jails, sandbox_processes, wait_until_gone,
                              warm_jail)
from evaluators._sandbox_harness import dec, enc


@dataclass
class CodeResult:
    passed: bool
    status: str  # passed | failed | timeout | error | limit
    detail: str = ""
    cases: list = field(default_factory=list)


@dataclass
class Limits:
    timeout_s: float = 10.0        # wall time per candidate (its load and calls, or all its stdio cases)
    cpu_s: int = 10                # CPU seconds per candidate process
    memory_mb: int = 1024          # the whole jail (cgroup), and each process's address space
    processes: int = 32            # processes and threads of the whole jail
    output_bytes: int = 1_000_000  # stdout captured per case, or one reply; more is a limit breach
    file_bytes: int = 10_000_000   # largest file the program may write
    disk_bytes: int = 64_000_000   # the jail's writable tmpfs, all files together
    start_s: float = 30.0          # for the jail to start (the host's time, not the candidate's)


def _limits(timeout_s: float, limits: Limits | None) -> Limits:
    return limits or Limits(timeout_s=timeout_s, cpu_s=max(1, int(timeout_s) + 1))


class _Verdict(BaseException):
    """Ends an evaluation with a status; a BaseException so that no `except Exception` in the tests stops it."""

    def __init__(self, status, detail):
        super().__init__(detail)
        self.status, self.detail = status, detail


class CandidateStopIteration(RuntimeError):
    """The candidate raised StopIteration: a result, never the end of the tests' iteration."""


def _died(jail: Jail, why: str) -> _Verdict:
    """The verdict for a candidate process that did not answer (the supervisor's reason)."""
    if why in ("timeout", "cpu"):
        return _Verdict("timeout", "wall-time limit reached" if why == "timeout" else "CPU-time limit reached")
    if why.startswith("limit") or (why == "signal 9" and jail.oom_kills() > 0):
        return _Verdict("limit", why if why.startswith("limit") else "the jail ran out of memory")
    return _Verdict("failed", f"the program's process ended early ({why})")


def _ask(jail: Jail, msg: dict, deadline: float) -> dict:
    left = deadline - time.monotonic()
    if left <= 0:
        raise _Verdict("timeout", "wall-time limit reached")
    try:
        reply = jail.request(msg, left)
    except JailDied as exc:
        raise _Verdict(exc.why, exc.detail) from None
    if "died" in reply:
        raise _died(jail, str(reply["died"]))
    return reply


def _load(jail: Jail, program: str, deadline: float) -> set[str]:
    """Load the candidate in a fresh process; the top-level names it defined (however: def, import, loop...)."""
    jail.new_candidate()
    reply = _ask(jail, {"op": "load", "src": program}, deadline)
    if not reply.get("ready"):
        error = str(reply.get("error", ""))
        raise _Verdict("limit" if error.startswith("MemoryError") else "failed", f"program failed to load: {error}")
    return set(reply.get("names", []))


# ---- asserts: tests run here, the names they ask for are stubs into the candidate's process -------------------

def _defined_names(program: str) -> set[str]:
    names = set()
    for node in ast.parse(program).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
    return names


def asked_names(tests: dict, defined: set[str]) -> set[str]:
    """The names the candidate supplies to the tests: tests["entry_point"] (a name or a list) if given, else
    the names the tests read that the program defines, builtins excepted (those stay the real builtins)."""
    if tests.get("entry_point"):
        entry = tests["entry_point"]
        return {entry} if isinstance(entry, str) else set(entry)
    read = {n.id for n in ast.walk(ast.parse(tests["asserts"])) if isinstance(n, ast.Name)}
    return (read & defined) - set(dir(builtins))


def _raise_candidate_exception(name: str, msg: str):
    if name == "MemoryError":
        raise _Verdict("limit", "the program ran out of memory")
    exc_type = getattr(builtins, name, None)
    if exc_type in (StopIteration, StopAsyncIteration):
        raise CandidateStopIteration(f"the program raised {name}: {msg}")
    if not (isinstance(exc_type, type) and issubclass(exc_type, Exception)):
        raise _Verdict("failed", f"the program raised {name}: {msg}")
    try:
        exc = exc_type(msg)
    except Exception:  # noqa: BLE001 - e.g. UnicodeDecodeError needs five arguments
        exc = RuntimeError(f"{name}: {msg}")
    raise exc


def _stub(jail: Jail, name: str, deadline: float, verdicts: list | None = None):
    """A function calling `name` in the candidate's process; a verdict it raises is also kept in `verdicts`, so
    tests that swallow BaseException (a bare except) cannot turn a timeout or a crash into a pass."""
    def call(*args, **kwargs):
        try:
            payload = {"op": "call", "name": name, "args": enc(list(args)), "kwargs": {k: enc(v) for k, v in kwargs.items()}}
            reply = _ask(jail, payload, deadline)
        except (TypeError, ValueError) as exc:
            raise _Verdict("error", f"the tests passed {name} an argument that is not plain data: {exc}") from None
        except _Verdict as v:
            if verdicts is not None:
                verdicts.append(v)
            raise
        if "ok" in reply:
            try:
                return dec(reply["ok"])
            except (Exception, RecursionError):  # noqa: BLE001
                raise _Verdict("failed", "the program's reply is not plain data") from None
        _raise_candidate_exception(str(reply.get("exc")), str(reply.get("msg", "")))
    call.__name__ = name
    return call


def _run_asserts(jail: Jail, program: str, tests: dict, lim: Limits) -> CodeResult:
    try:
        defined = _defined_names(program)
    except (SyntaxError, ValueError) as exc:
        return CodeResult(False, "failed", f"program does not parse: {getattr(exc, 'msg', exc)}")
    try:
        test_code = compile(tests["asserts"], "<tests>", "exec", optimize=0)  # asserts run under python -O too
        asked_names(tests, defined)
    except SyntaxError as exc:
        return CodeResult(False, "error", f"tests do not parse: {exc.msg} (line {exc.lineno})")
    deadline, verdicts = time.monotonic() + lim.timeout_s, []
    try:
        names = asked_names(tests, defined | _load(jail, program, deadline))
        ns = {"__name__": "__tests__", "__builtins__": builtins, **{n: _stub(jail, n, deadline, verdicts) for n in names}}
        exec(test_code, ns)
        if verdicts:
            raise verdicts[0]
        return CodeResult(True, "passed")
    except _Verdict as v:
        return CodeResult(False, v.status, v.detail)
    except AssertionError as exc:
        return CodeResult(False, "failed", f"assertion failed {str(exc)[:200]}".strip())
    except (Exception, RecursionError) as exc:  # noqa: BLE001 - raised through a stub, or by the tests themselves
        return CodeResult(False, "failed", f"{type(exc).__name__}: {str(exc)[:200]}")


# ---- stdin/stdout cases: a fresh process and directory per case ----------------------------------------------

def _normalise(text: str) -> list[str]:
    return [line.rstrip() for line in text.strip().splitlines()]


def _run_stdio(jail: Jail, program: str, cases: list, lim: Limits) -> CodeResult:
    deadline = time.monotonic() + lim.timeout_s
    results = []
    for i, case in enumerate(cases):
        try:
            jail.new_candidate()
            reply = _ask(jail, {"op": "stdio", "src": program, "input": str(case.get("input", "")),
                                "cap": lim.output_bytes}, deadline)
        except _Verdict as v:
            return CodeResult(False, v.status, f"case {i}: {v.detail}", results)
        out, code = reply["out"].encode("latin-1"), reply["code"]
        ok = code == 0 and _normalise(out.decode(errors="replace")) == _normalise(str(case.get("output", "")))
        results.append(ok)
        if not ok:
            return CodeResult(False, "failed", f"case {i}: {'wrong output' if code == 0 else f'exit status {code}'}",
                              results)
    return CodeResult(True, "passed", f"{len(cases)} cases", results)


def evaluate_code(program: str, tests: dict, timeout_s: float = 10.0, limits: Limits | None = None,
                  allow_unsandboxed: bool = False) -> CodeResult:
    """Run `program` against `tests` in the sandbox and judge it from outside.

    tests: {"asserts": "<python statements with assert>", "entry_point": optional name(s) the tests call} or
           {"stdio": [{"input": "...", "output": "..."}, ...]}.
    Never raises. Without bubblewrap or a cgroup this refuses (status error) unless allow_unsandboxed=True.
    Returns once no process of the sandbox is left, with .passed and .status in
    passed | failed | timeout | error | limit.
    """
    if not isinstance(tests, dict) or not {"asserts", "stdio"} & tests.keys():
        return CodeResult(False, "error", "tests must be a dict with an 'asserts' or a 'stdio' key")
    if not isinstance(program, str):
        return CodeResult(False, "error", "program must be a string")
    lim = _limits(timeout_s, limits)
    try:
        with warm_jail(lim, allow_unsandboxed) as jail:
            if "asserts" in tests:
                return _run_asserts(jail, program, tests, lim)
            return _run_stdio(jail, program, list(tests["stdio"]), lim)
    except Refused as exc:
        return CodeResult(False, "error", str(exc))
    except JailDied as exc:
        return CodeResult(False, "error", f"sandbox failed to start: {exc.detail}")
    except Exception as exc:  # noqa: BLE001 - the evaluator reports, it never raises
        return CodeResult(False, "error", f"sandbox failed: {type(exc).__name__}: {exc}")


# ---- many candidates through one jail: each in its own process, values come back as data ---------------------

def _one_candidate(jail: Jail, program: str, calls: list, lim: Limits) -> tuple[str, list]:
    """Load one candidate in a fresh process and make all its calls in one request; (status, values) with None
    for a call that raised or was not made."""
    values = [None] * len(calls)
    try:
        encoded = [[name, enc(list(args)), {}] for name, args in calls]
    except (TypeError, ValueError) as exc:
        return f"error: a call's arguments are not plain data: {exc}", values
    jail.new_candidate()
    try:
        reply = _ask(jail, {"op": "run", "src": program, "calls": encoded}, time.monotonic() + lim.timeout_s)
        if not reply.get("ready"):
            error = str(reply.get("error", ""))
            raise _Verdict("limit" if error.startswith("MemoryError") else "failed", f"program failed to load: {error}")
        for i, result in enumerate(reply.get("results", [])[:len(calls)]):
            try:
                values[i] = dec(result["ok"]) if "ok" in result else None
            except (Exception, RecursionError):  # noqa: BLE001 - a malformed value is that call's failure
                values[i] = None
        if "died" in reply:
            raise _died(jail, str(reply["died"]))
        return "passed", values
    except _Verdict as v:
        return f"{v.status}: {v.detail}", values


def call_in_sandbox(candidates, calls: list, timeout_s: float = 10.0, limits: Limits | None = None,
                    allow_unsandboxed: bool = False) -> tuple[str, list]:
    """Make each call (name, args) and return the values as data, for the caller to judge.

    candidates: {name: program defining that name}: each program is loaded in its own fresh process (forked
    in one jail), so one candidate cannot touch another's process, files or replies; timeout_s is each
    candidate's budget. A single program string is one candidate serving every name it defines.
    Returns (status, values): values[i] is None where the call raised or its candidate failed; status is
    "passed", or "<status>: detail" when the jail could not be used ("error: ...") or, for a single program,
    when it failed (failed | timeout | limit). Never raises.
    """
    lim = _limits(timeout_s, limits)
    calls = list(calls)
    values: list = [None] * len(calls)
    try:
        if isinstance(candidates, str):
            groups = {candidates: list(range(len(calls)))}
        else:
            groups = {}
            for i, (name, _) in enumerate(calls):
                if name in candidates:
                    groups.setdefault(candidates[name], []).append(i)
        todo, status = list(groups.items()), "passed"
        while todo:  # a candidate that kills the jail costs itself only: the rest go on in a fresh jail
            with warm_jail(lim, allow_unsandboxed) as jail:
                while todo:
                    program, idx = todo.pop(0)
                    st, vals = _one_candidate(jail, program, [calls[i] for i in idx], lim)
                    for i, v in zip(idx, vals):
                        values[i] = v
                    if isinstance(candidates, str):
                        status = st
                    if jail.dead:
                        break
        return status, values
    except Refused as exc:
        return f"error: {exc}", [None] * len(calls)
    except JailDied as exc:
        return f"error: sandbox failed to start: {exc.detail}", [None] * len(calls)
    except Exception as exc:  # noqa: BLE001
        return f"error: sandbox failed: {type(exc).__name__}: {exc}", [None] * len(calls)
