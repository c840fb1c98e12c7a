"""Math answers: extraction as the field does it, equivalence by Math-Verify, in killable worker processes.

Math-Verify's own timeouts use signals (main thread only, and they cancel the caller's alarms), so they are
switched off here and every verification runs in a pool of worker processes with a hard per-item timeout and
a memory cap: a stuck worker is killed and replaced, and its item scores 0.
"""
from __future__ import annotations

import atexit
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from functools import lru_cache
from multiprocessing.connection import Connection, wait
from pathlib import Path

_BOX = re.compile(r"\\(?:boxed|fbox)\s*")
_ANSWER_IS = re.compile(r"[Tt]he (?:final )?answer is\s*:?\s*")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?")


def _braced(text: str, start: int) -> str | None:
    """The content of the brace group opening at text[start] == '{', or None if unbalanced."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1:i]
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last balanced \\boxed{...} or \\fbox{...} (nested braces allowed); '\\boxed 5' too."""
    for m in reversed(list(_BOX.finditer(text))):
        end = m.end()
        if end < len(text) and text[end] == "{":
            inner = _braced(text, end)
            if inner is not None:
                return inner.strip()
        elif end < len(text) and m.group(0).endswith(" "):
            return re.split(r"[\s$]", text[end:], maxsplit=1)[0] or None
    return None


def extract_answer(response: str, fallback: str = "last_number") -> str | None:
    """The final answer of a response: the last boxed answer, else 'The answer is ...', else the fallback
    ('last_number': the last number in the text; 'none': nothing)."""
    boxed = last_boxed(response)
    if boxed:
        return boxed
    matches = list(_ANSWER_IS.finditer(response))
    if matches:
        tail = response[matches[-1].end():].strip()
        tail = tail.split("\n", 1)[0]
        tail = re.sub(r"\.\s*$", "", tail).strip().strip("$").strip()
        if tail:
            return tail
    if fallback == "last_number":
        nums = _NUMBER.findall(response)
        return nums[-1].rstrip(".") if nums else None
    if fallback == "none":
        return None
    raise ValueError(f"unknown fallback {fallback!r}; use 'last_number' or 'none'")


def gold_answer(record: dict) -> str:
    """A dataset record's reference answer: `answer` (GSM8K's '#### n' form too; Omni-MATH's LaTeX, with any
    enclosing $...$ or \\boxed{} taken off), `final_answer` (a list in OlympiadBench), else the last boxed
    answer inside `solution` (Minerva, MATH)."""
    if record.get("answer") not in (None, ""):
        ans = record["answer"]
        if isinstance(ans, str) and "####" in ans:
            return ans.rsplit("####", 1)[1].strip().replace(",", "")
        if isinstance(ans, str):
            ans = last_boxed(ans) or ans
            return re.sub(r"^\$+|\$+$", "", ans.strip()).strip()
        if isinstance(ans, float) and ans.is_integer():
            return str(int(ans))
        return str(ans)
    if record.get("final_answer") not in (None, "", []):
        ans = record["final_answer"]
        return ", ".join(str(a).strip("$") for a in ans) if isinstance(ans, list) else str(ans)
    boxed = last_boxed(record.get("solution", "") or "")
    if boxed is None:
        raise ValueError("record has no answer, final_answer or boxed answer in solution")
    return boxed


# The field's instruction for final answers: what extract_answer looks for first.
PROMPT = "{problem}\nPlease reason step by step, and put your final answer within \\boxed{{}}."


def problem_text(record: dict) -> str:
    return record.get("problem") or record.get("question") or record.get("prompt") or ""


# ---- verification (runs inside worker processes) -------------------------------------------------------

@lru_cache(maxsize=4096)
def _parse(answer: str):
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse
    config = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    return parse("\\boxed{" + answer + "}", extraction_config=config, parsing_timeout=None)


def _norm(s: str) -> str:
    return re.sub(r"\s+", "", s).strip("$").replace("\\!", "").replace("dfrac", "frac")


_FULLWIDTH = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}
_GROUP_SEP = re.compile(r"(?<=\d)(?:\\,|\{,\}|\\;|\\:|\\ |\\!|\u2009|\u202f)(?=\d{3}(?!\d))")
_SCI = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?)\s*[eE]\s*([-+]?\d{1,3})\s*$")


def normalise(answer: str) -> str:
    """Surface forms Math-Verify misses, rewritten before it parses: fullwidth characters (１２ -> 12), a degree
    sign (45° -> 45^\\circ), thin spaces between digit groups (1\\,000\\,000 -> 1000000) and a bare number in
    scientific notation (1.5e3 -> 1500; only the whole answer, so 2e^3 or 3e stay as they are)."""
    answer = answer.translate(_FULLWIDTH).replace("°", "^\\circ").replace("\\degree", "^\\circ")
    answer = _GROUP_SEP.sub("", answer)
    m = _SCI.match(answer)
    if m:
        from decimal import Decimal, InvalidOperation
        try:
            answer = format(Decimal(f"{m.group(1)}e{m.group(2)}").normalize(), "f")
        except InvalidOperation:
            pass
    return answer


def _solved_form(item) -> bool:
    """x > 2, 2 <= x, x = 3, and and/or of such: the variable alone on one side, a constant on the other. Only
    these read as a solution set; 'x^2-5x+6=0' is the problem, not its solution (copying it must not pay)."""
    import sympy
    if isinstance(item, (sympy.And, sympy.Or)):
        return all(_solved_form(a) for a in item.args)
    if isinstance(item, sympy.core.relational.Relational):
        return any(side.is_Symbol and not other.free_symbols
                   for side, other in ((item.lhs, item.rhs), (item.rhs, item.lhs)))
    return False


def _as_math(parsed, other):
    """Parsed items read as mathematics where Math-Verify reads them as symbols: the symbol i as the imaginary
    unit (e^{i\\pi} = -1), and a one-variable inequality in solved form as its solution set when the other side
    is a set (x>2 = (2,\\infty)); a hedged answer (x>2 or x<-2) becomes a union and still differs."""
    import sympy
    wants_set = any(isinstance(o, sympy.Set) for o in other)
    out = []
    for item in parsed:
        if isinstance(item, sympy.Basic) and not isinstance(item, sympy.Set):
            item = item.subs({s: sympy.I for s in item.free_symbols if isinstance(s, sympy.Symbol) and s.name == "i"})
        if wants_set and _solved_form(item) and len(item.free_symbols) == 1:
            try:
                item = item.as_set()
            except (NotImplementedError, TypeError, ValueError):
                pass
        out.append(item)
    return out


def verify_one(response: str, gold: str, fallback: str = "last_number") -> float:
    """1.0 if the response's final answer equals the gold answer (Math-Verify), else 0.0. No timeout here."""
    from math_verify import verify
    pred = extract_answer(response, fallback)
    if pred is None or len(pred) > 10_000:
        return 0.0
    pred, gold = normalise(pred), normalise(gold)
    if _norm(pred) == _norm(gold):
        return 1.0
    gold_parsed, pred_parsed = _parse(gold), _parse(pred)
    if not gold_parsed or not pred_parsed:
        return 0.0
    if verify(gold_parsed, pred_parsed, timeout_seconds=None):
        return 1.0
    gold_math, pred_math = _as_math(gold_parsed, pred_parsed), _as_math(pred_parsed, gold_parsed)
    if gold_math == list(gold_parsed) and pred_math == list(pred_parsed):
        return 0.0
    return float(verify(gold_math, pred_math, timeout_seconds=None))


def _worker(conn, memory_mb: int):
    import resource
    if memory_mb:
        limit = memory_mb * 2 ** 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import logging
    import math_verify  # noqa: F401  (import once, before the first item)
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # it warns on every call that we disabled its timeouts
    conn.send(("ready", None))
    while True:
        try:
            batch = conn.recv()
        except EOFError:
            return
        for idx, response, gold, fallback in batch:
            try:
                score = verify_one(response, gold, fallback)
            except (Exception, RecursionError, MemoryError):
                score = 0.0
            conn.send((idx, score))


class VerifierPool:
    """Worker processes verifying (response, gold) pairs with a hard per-item timeout. One call scores at a time:
    the workers answer by item index, so two threads sharing them would read each other's scores (verl's reward
    loop calls a reward function from a thread pool)."""

    def __init__(self, workers: int | None = None, memory_mb: int = 2048):
        self.n = workers or max(1, os.cpu_count() or 1)
        self.memory_mb = memory_mb
        self.lock = threading.Lock()
        self.workers = [self._start() for _ in range(self.n)]
        for proc, conn in self.workers:
            conn.recv()  # 'ready'

    def _start(self):
        # A plain subprocess (not multiprocessing's spawn), so callers need no `if __name__ == "__main__"` guard.
        ours, theirs = socket.socketpair()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parent.parent),
                                                                         os.environ.get("PYTHONPATH")]))}
        proc = subprocess.Popen([sys.executable, "-m", "evaluators.math", "--worker", str(theirs.fileno()),
                                 str(self.memory_mb)], pass_fds=[theirs.fileno()], env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        theirs.close()
        return proc, Connection(ours.detach())

    def _replace(self, i):
        proc, conn = self.workers[i]
        proc.kill()
        proc.wait(timeout=5)
        conn.close()
        self.workers[i] = self._start()
        self.workers[i][1].recv()

    def score(self, responses, golds, timeout_s: float = 5.0, fallback: str = "last_number", chunk: int = 16):
        if len(responses) != len(golds):
            raise ValueError(f"{len(responses)} responses but {len(golds)} golds")
        with self.lock:
            return self._score(responses, golds, timeout_s, fallback, chunk)

    def _score(self, responses, golds, timeout_s, fallback, chunk):
        todo = deque((i, str(r), str(g), fallback) for i, (r, g) in enumerate(zip(responses, golds)))
        scores = [0.0] * len(todo)
        queue: dict[int, deque] = {}   # worker -> items sent, not yet answered
        deadline: dict[int, float] = {}

        def abandon(w):
            """Worker w died or is stuck: its current item scores 0, the rest go back, the worker is replaced."""
            queue[w].popleft()
            todo.extendleft(reversed(queue.pop(w)))
            self._replace(w)
        while todo or queue:
            for w in range(self.n):
                if w not in queue and todo:
                    batch = [todo.popleft() for _ in range(min(chunk, len(todo)))]
                    self.workers[w][1].send(batch)
                    queue[w], deadline[w] = deque(batch), time.monotonic() + timeout_s
            conns = {self.workers[w][1]: w for w in queue}
            wait_for = max(0.0, min(deadline[w] for w in queue) - time.monotonic())
            for conn in wait(list(conns), timeout=wait_for):
                w = conns[conn]
                try:
                    idx, score = conn.recv()
                except EOFError:  # worker died (e.g. memory cap)
                    abandon(w)
                    continue
                scores[idx] = score
                queue[w].popleft()
                deadline[w] = time.monotonic() + timeout_s
                if not queue[w]:
                    del queue[w]
            now = time.monotonic()
            for w in [w for w in queue if deadline[w] <= now]:
                abandon(w)
        return scores

    def close(self):
        for proc, conn in self.workers:
            proc.kill()
            proc.wait(timeout=5)
            conn.close()


_POOL: VerifierPool | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> VerifierPool:
    global _POOL
    with _POOL_LOCK:  # two threads' first calls start one pool
        if _POOL is None:
            _POOL = VerifierPool()
            atexit.register(_POOL.close)
    return _POOL


def score_batch(responses, golds, timeout_s: float = 5.0, fallback: str = "last_number") -> list[float]:
    """Scores (1.0 / 0.0) of responses against gold answers, verified in the shared worker pool."""
    return _pool().score(responses, golds, timeout_s=timeout_s, fallback=fallback)


def score(response: str, gold: str, timeout_s: float = 5.0) -> float:
    """1.0 if the response's final answer is equivalent to `gold`, else 0.0 (in a worker, with a hard timeout)."""
    return score_batch([response], [gold], timeout_s=timeout_s)[0]


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
    _worker(Connection(int(sys.argv[2])), int(sys.argv[3]))
