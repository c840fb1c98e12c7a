"""Runs inside the sandbox (no imports from the project): loads the candidate program and answers calls.

Protocol: one JSON line per message. First line out: {"ready": true} or {"ready": false, "error": ...}. Then
for each request {"name", "args", "kwargs"} one response: {"ok": <encoded value>} or {"exc": type, "msg": ...}.
Only plain data crosses (exact types: None, bool, int, float, str, list, tuple, dict, set), so the candidate
cannot hand the judge an object with a forged __eq__; the tests themselves never enter the sandbox.
"""
import json
import os
import sys

MAX_DEPTH = 50


def enc(o, depth=0):
    if depth > MAX_DEPTH:
        raise ValueError("value nested too deeply")
    t = type(o)
    if o is None or t in (bool, str):
        return o
    if t is int:
        return {"i": str(o)}
    if t is float:
        return {"f": repr(o)}
    if t is list:
        return [enc(x, depth + 1) for x in o]
    if t is tuple:
        return {"t": [enc(x, depth + 1) for x in o]}
    if t in (set, frozenset):
        return {"s": [enc(x, depth + 1) for x in o]}
    if t is dict:
        return {"d": [[enc(k, depth + 1), enc(v, depth + 1)] for k, v in o.items()]}
    raise TypeError(f"return value of type {t.__name__} is not plain data")


def dec(o):
    if isinstance(o, list):
        return [dec(x) for x in o]
    if isinstance(o, dict):
        (tag, v), = o.items()
        return {"i": int, "f": float, "t": lambda v: tuple(dec(x) for x in v), "s": lambda v: {dec(x) for x in v},
                "d": lambda v: {dec(k): dec(x) for k, x in v}}[tag](v)
    return o


def main():
    out = os.fdopen(os.dup(1), "w")
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)  # the candidate's prints (even os.write(1, ...)) go nowhere
    sys.stdout = open(os.devnull, "w")
    ns = {"__name__": "__candidate__", "__builtins__": __builtins__}
    try:
        with open("program.py") as fh:
            code = compile(fh.read(), "program.py", "exec")
        exec(code, ns)
    except BaseException as exc:  # noqa: BLE001 - any failure to load is the candidate's
        out.write(json.dumps({"ready": False, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}) + "\n")
        out.flush()
        os._exit(0)
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        req = json.loads(line)
        try:
            fn = ns[req["name"]]
            reply = {"ok": enc(fn(*dec(req["args"]), **{k: dec(v) for k, v in req["kwargs"].items()}))}
        except BaseException as exc:  # noqa: BLE001
            reply = {"exc": type(exc).__name__, "msg": str(exc)[:300]}
        out.write(json.dumps(reply) + "\n")
        out.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
