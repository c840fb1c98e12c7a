"""Compare measured results with a paper's reported table, cell by cell, within binomial tolerances.

Reported tables live in experiments/reported/<paper>/<table>.yaml (e.g. entropy-mechanism/table2).
RESULTS is either a CSV file or a result directory holding `table.csv`; both have the same form:

    model,method,aime24,aime25,amc,math500,omni_math,olympiadbench,minerva,average
    Qwen2.5-7B,GRPO,21.2,9.6,58.7,78.8,27.9,40.7,36.7,38.6

accuracy in percent, one row per (model, method); any subset of the benchmark columns; an empty cell is
"not measured". Column, model and method names match case- and punctuation-insensitively ("MATH-500",
"Avg.", "w. KL-Cov" work). The cells asked about are every benchmark of each (model, method) row the CSV has,
and the ordering claims of each model it has. Exit status of `check`: 0 every cell asked about is measured and
within tolerance and every claim asked about is measured and holds; 1 a measured cell or claim fails;
3 incomplete (nothing fails, but cells or claims asked about are not measured: they are listed);
2 malformed input (raised as UserError).
"""
from __future__ import annotations

import csv
import io
import json
import math
import re
import sys
from pathlib import Path

import yaml

from replicate.errors import UserError
from replicate.report.claims import finite
from replicate.paths import experiments_dir

REPORTED_DIR = experiments_dir() / "reported"
ALIASES = {"amc23": "amc", "minervamath": "minerva", "avg": "average", "mean": "average", "omni": "omni_math"}
MISSING = ("", "-", "n/a", "na")


def _key(name: str) -> str:
    """Case- and punctuation-free form of a name; drops the table's 'w.' / '+' method prefixes."""
    name = re.sub(r"^\s*(w\.|\+)\s*", "", str(name))
    return re.sub(r"[^a-z0-9]", "", name.lower())


# ---- the reported table ------------------------------------------------------------------------------

def reported_tables() -> list[str]:
    """The reported files with model x method cells (tables; not the artifact and recipe lists beside them)."""
    found = []
    for path in sorted(REPORTED_DIR.glob("*/*.yaml")):
        data = yaml.safe_load(path.read_text())
        if isinstance(data, dict) and isinstance(data.get("cells"), dict):
            found.append(str(path.relative_to(REPORTED_DIR).with_suffix("")))
    return found


def load_reported(name: str) -> dict:
    """experiments/reported/<name>.yaml as {models, methods, benchmarks, cells{(model, method, bench): value}}."""
    path = REPORTED_DIR / f"{name}.yaml"
    if "/" not in name or not path.is_file():
        raise UserError(f"unknown reported table {name!r}; choose one of {', '.join(reported_tables())}")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data.get("cells"), dict):
        raise UserError(f"{name} has no model x method cells to check against; use a results table such as entropy-mechanism/table2")
    cells = {}
    for model, methods in data["cells"].items():
        for method, row in methods.items():
            for bench, cell in row.items():
                cells[(model, method, bench)] = float(cell["value"])
    stand_ins = data.get("stand_ins") or {}
    return {"name": name, "path": path, "models": data["models"], "methods": data["methods"],
            "benchmarks": data["benchmarks"], "tolerance": data["tolerance"], "claims": data.get("claims", []),
            "cells": cells, "raw": data, "stand_ins": stand_ins,
            "stand_in_columns": sorted({c for s in stand_ins.values() for c in s.get("columns", [])})}


def export_csv(reported: dict) -> str:
    """The reported table in the results CSV form (model,method,<benchmark>...)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    benches = list(reported["benchmarks"])
    writer.writerow(["model", "method", *benches])
    for model in reported["models"]:
        for method in reported["methods"]:
            writer.writerow([model, method, *(reported["cells"].get((model, method, b), "") for b in benches)])
    return buf.getvalue()


# ---- measured results ---------------------------------------------------------------------------------

def results_csv(path: Path) -> Path:
    """The CSV behind RESULTS: the file itself, or <dir>/table.csv for a result directory."""
    path = Path(path)
    if path.is_dir():
        if not (path / "table.csv").is_file():
            raise UserError(f"{path} has no table.csv; pass a CSV file (model,method,<benchmark>...) or a result directory holding table.csv")
        return path / "table.csv"
    if not path.is_file():
        raise UserError(f"{path} not found; pass a CSV file (model,method,<benchmark>...) or a result directory holding table.csv")
    return path


def _bench_names(reported: dict) -> dict[str, str]:
    """Every accepted spelling of a benchmark (key, table label, alias), in _key form -> benchmark key."""
    names = {_key(b): b for b in reported["benchmarks"]}
    names.update({_key(cfg["label"]): b for b, cfg in reported["benchmarks"].items()})
    names.update({a: b for a, b in ALIASES.items() if b in reported["benchmarks"]})
    return names


def _columns(header: list[str], reported: dict, path: Path) -> dict[int, str]:
    """Map CSV column index -> benchmark key; model and method columns must be there."""
    names = _bench_names(reported)
    keys = [_key(h) for h in header]
    missing = [c for c in ("model", "method") if c not in keys]
    if missing:
        raise UserError(f"{path}:1: missing column(s) {', '.join(missing)}; the header must be model,method,<benchmark>...")
    cols = {}
    for i, (raw, key) in enumerate(zip(header, keys)):
        if key in ("model", "method"):
            continue
        stand_in = {_key(c): c for c in reported.get("stand_in_columns", [])}
        if key not in names and key not in stand_in:
            raise UserError(f"{path}:1: unknown column {raw!r}; benchmark columns are {', '.join(reported['benchmarks'])}")
        cols[i] = names.get(key) or stand_in[key]
    if not cols:
        raise UserError(f"{path}:1: no benchmark columns; add some of {', '.join(reported['benchmarks'])}")
    return cols


def _value(text: str, where: str) -> float | None:
    """A cell as a percentage, None when empty; anything else non-numeric or out of [0, 100] is an error."""
    text = text.strip()
    if text.lower() in MISSING:
        return None
    try:
        value = float(text.rstrip("%"))
    except ValueError:
        raise UserError(f"{where}: {text!r} is not a number; give accuracy in percent (e.g. 21.2) or leave the cell empty") from None
    if not math.isfinite(value) or not 0 <= value <= 100:
        raise UserError(f"{where}: {text!r} is not an accuracy in percent (0 to 100)")
    return value


def _match(name: str, choices: list[str], what: str, where: str) -> str:
    for choice in choices:
        if _key(choice) == _key(name):
            return choice
    raise UserError(f"{where}: unknown {what} {name!r}; the reported table has {', '.join(choices)}")


def read_results(path: Path, reported: dict) -> tuple[dict, set]:
    """Measured cells {(model, method, benchmark): percent} from a results CSV (empty cells left out), and the
    (model, method) rows it has (the rows asked about, measured or not)."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise UserError(f"{path}: empty file; the header must be model,method,<benchmark>...")
    cols = _columns(rows[0], reported, path)
    keys = [_key(h) for h in rows[0]]
    i_model, i_method = keys.index("model"), keys.index("method")
    measured, seen = {}, set()
    for line, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) != len(rows[0]):
            raise UserError(f"{path}:{line}: {len(row)} fields, the header has {len(rows[0])}")
        model = _match(row[i_model], [*reported["models"], *reported.get("stand_ins", {})], "model", f"{path}:{line}")
        method = _match(row[i_method], reported["methods"], "method", f"{path}:{line}")
        if (model, method) in seen:
            raise UserError(f"{path}:{line}: second row for {model} / {method}; keep one row per model and method")
        seen.add((model, method))
        for i, bench in cols.items():
            value = _value(row[i], f"{path}:{line}: column {rows[0][i]!r}")
            if value is not None:
                measured[(model, method, bench)] = value
    _sanity(measured, path)
    return measured, seen


def _sanity(measured: dict, path: Path) -> None:
    if len(measured) > 1 and max(measured.values()) <= 1.0:
        raise UserError(f"{path}: every value is <= 1; give accuracy in percent (21.2), not as a fraction (0.212)")


# ---- tolerances ---------------------------------------------------------------------------------------

def binomial_se(p_percent: float, n: int, k: int = 1, rho: float = 0.5) -> float:
    """Standard error (points) of an accuracy over n problems x k samples whose samples correlate by rho:
    100 * sqrt(p(1-p) / (n * k_eff)), k_eff = k / (1 + (k-1) rho)."""
    p = min(max(p_percent / 100.0, 0.0), 1.0)
    k_eff = k / (1 + (k - 1) * rho)
    return 100.0 * math.sqrt(p * (1 - p) / (n * k_eff))


def tolerance(p_percent: float, n: int, k: int = 1, z: float = 2.0, rho: float = 0.5, floor: float = 1.0) -> float:
    """Allowed |measured - reported| in points: max(floor, z * binomial_se)."""
    return max(floor, z * binomial_se(p_percent, n, k, rho))


def default_tolerance(reported: dict, model: str, method: str, bench: str) -> float:
    """A cell's tolerance from its benchmark's protocol; the average's from the seven benchmarks' errors."""
    t, cfg = reported["tolerance"], reported["benchmarks"][bench]
    if "of" not in cfg:
        return tolerance(reported["cells"][(model, method, bench)], cfg["n"], cfg.get("k", 1), t["z"], t["rho"], t["floor"])
    ses = [binomial_se(reported["cells"][(model, method, b)], reported["benchmarks"][b]["n"],
                       reported["benchmarks"][b].get("k", 1), t["rho"]) for b in cfg["of"]]
    return max(t["floor"], t["z"] * math.sqrt(sum(s * s for s in ses)) / len(ses))


def tolerance_how(reported: dict, model: str, method: str, bench: str, overrides: dict) -> str:
    """Where a cell's tolerance comes from: the --tolerance given, or the formula with its inputs."""
    if bench in overrides or "*" in overrides:
        return f"--tolerance {bench + '=' if bench in overrides else ''}{overrides.get(bench, overrides.get('*')):g}"
    t, cfg = reported["tolerance"], reported["benchmarks"][bench]
    if "of" in cfg:
        return f"max({t['floor']:g}, {t['z']:g}·sqrt(Σ se²)/{len(cfg['of'])}) over {', '.join(cfg['of'])}"
    p, k = reported["cells"][(model, method, bench)], cfg.get("k", 1)
    k_eff = k / (1 + (k - 1) * t["rho"])
    return (f"max({t['floor']:g}, {t['z']:g}·100·sqrt(p(1-p)/(n·k_eff))), p={p:g}%, n={cfg['n']}, k={k}, "
            f"k_eff={k_eff:.3g} (rho={t['rho']:g})")


def parse_tolerances(specs: list[str] | None, reported: dict) -> dict:
    """--tolerance values ('3', 'aime24=5', 'AIME24=5,amc=6') as {'*': global, bench: points}."""
    out, names = {}, _bench_names(reported)
    for spec in specs or []:
        for part in filter(None, (s.strip() for s in spec.split(","))):
            bench, _, num = part.rpartition("=")
            if bench and _key(bench) not in names:
                raise UserError(f"--tolerance {part}: unknown benchmark {bench!r}; choose from {', '.join(reported['benchmarks'])}")
            bench = names[_key(bench)] if bench else ""
            try:
                value = float(num)
            except ValueError:
                value = -1.0
            if not value > 0:
                raise UserError(f"--tolerance {part}: give positive points, e.g. --tolerance 3 or --tolerance aime24=5")
            out[bench or "*"] = value
    return out


# ---- the comparison -----------------------------------------------------------------------------------

def compare(reported: dict, measured: dict, overrides: dict, asked: set | None = None) -> list[dict]:
    """One row per reported cell: reported, measured, delta, tolerance and where it comes from, within (None
    when not measured), asked (its model and method have a row in the results)."""
    rows = []
    for (model, method, bench), rep in reported["cells"].items():
        tol = overrides.get(bench, overrides.get("*"))
        tol = default_tolerance(reported, model, method, bench) if tol is None else tol
        mea = measured.get((model, method, bench))
        delta = None if mea is None else round(mea - rep, 4)
        rows.append({"model": model, "method": method, "benchmark": bench, "reported": rep, "measured": mea,
                     "delta": delta, "tolerance": round(tol, 2),
                     "tolerance_from": tolerance_how(reported, model, method, bench, overrides),
                     "within": None if mea is None else abs(delta) <= tol + 1e-9,
                     "asked": asked is None or (model, method) in asked})
    return rows


def measured_average(reported: dict, measured: dict, model: str, method: str) -> tuple[float | None, str]:
    """The measured average of a row: its own average column, else the unweighted mean of every benchmark."""
    if (model, method, "average") in measured:
        return measured[(model, method, "average")], "average column"
    parts = reported["benchmarks"].get("average", {}).get("of", [])
    values = [measured.get((model, method, b)) for b in parts]
    if parts and all(v is not None for v in values):
        return sum(values) / len(values), f"unweighted mean of {len(values)} benchmarks"
    return None, "not measured"


def check_claims(reported: dict, measured: dict, asked: set | None = None) -> list[dict]:
    """The ordering claims ('X above Y on the average'), per model, on the measured table; asked: the results
    have a row of that model."""
    out = []
    stand_ins = [m for m in reported.get("stand_ins", {}) if any(k[0] == m for k in measured)]
    for claim in reported["claims"]:
        for model in [*reported["models"], *stand_ins]:
            better, how_b = measured_average(reported, measured, model, claim["better"])
            than, how_t = measured_average(reported, measured, model, claim["than"])
            holds = None if better is None or than is None else better > than
            out.append({"id": claim["id"], "model": model, "statement": claim["statement"],
                        claim["better"]: better, claim["than"]: than, "how": how_b if better is not None else how_t,
                        "holds": holds, "asked": asked is None or any(a[0] == model for a in asked)})
    return out


# ---- output -------------------------------------------------------------------------------------------

def _fmt(x, sign=False) -> str:
    return "—" if x is None else (f"{x:+.1f}" if sign else f"{x:.1f}")


def render_md(result: dict) -> str:
    """check.md: the cell table, the claims, and the verdict."""
    lines = [f"# check against {result['against']}", "", f"results: `{result['results']}`", "",
             "| model | method | benchmark | reported | measured | delta | tolerance | within | tolerance from |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in result["cells"]:
        within = ("not measured" if r["asked"] else "not asked") if r["within"] is None else \
            ("yes" if r["within"] else "**NO**")
        lines.append(f"| {r['model']} | {r['method']} | {r['benchmark']} | {_fmt(r['reported'])} | "
                     f"{_fmt(r['measured'])} | {_fmt(r['delta'], True)} | ±{r['tolerance']:.1f} | {within} | "
                     f"{r['tolerance_from']} |")
    lines += ["", "| claim | model | holds | measured from |", "|---|---|---|---|"]
    for c in result["claims"]:
        holds = "not measured" if c["holds"] is None else ("yes" if c["holds"] else "**NO**")
        lines.append(f"| {c['statement']} | {c['model']} | {holds} | {c['how']} |")
    t = result["tolerance"]
    lines += ["", "## Tolerances", "",
              f"A cell passes when |measured - reported| <= tol, tol = max(floor, z·se) with z = {t['z']:g}, "
              f"floor = {t['floor']:g} points and se = 100·sqrt(p(1-p)/(n·k_eff)), k_eff = k/(1+(k-1)·rho), "
              f"rho = {t['rho']:g}: p is the reported accuracy, n the benchmark's problems and k its samples per "
              "problem (the `tolerance from` column gives each cell's inputs; the reported table's YAML says where "
              "n comes from). An average's se is sqrt(Σ se²)/m over its m benchmarks. rho is this harness's "
              "assumption, not the paper's; `--tolerance` overrides the formula.",
              "", result["verdict"], ""]
    lines += [f"- {line}" for line in result["missing"]]
    return "\n".join(lines)


def _missing(cells: list[dict], claims: list[dict]) -> list[str]:
    """Cells and claims asked about but not measured, one line per (model, method) row."""
    rows: dict[tuple, list[str]] = {}
    for r in cells:
        if r["asked"] and r["within"] is None:
            rows.setdefault((r["model"], r["method"]), []).append(r["benchmark"])
    out = [f"not measured: {model} / {method}: {', '.join(b)}" for (model, method), b in rows.items()]
    return out + [f"not measured: claim {c['statement']} ({c['model']})" for c in claims
                  if c["asked"] and c["holds"] is None]


def _verdict(cells: list[dict], claims: list[dict]) -> tuple[bool, list[str]]:
    fails = [f"{r['model']} / {r['method']} / {r['benchmark']}: reported {r['reported']:.1f}, measured "
             f"{r['measured']:.1f}, delta {r['delta']:+.1f} outside ±{r['tolerance']:.1f}"
             for r in cells if r["within"] is False]
    fails += [f"claim failed: {c['statement']} ({c['model']})" for c in claims if c["holds"] is False]
    return not fails, fails


def run_check(results: Path, against: str, tolerances: list[str] | None = None, out: Path | None = None) -> dict:
    """Compare RESULTS with a reported table; write check.json and check.md; return the result."""
    reported = load_reported(against)
    overrides = parse_tolerances(tolerances, reported)
    path = results_csv(results)
    measured, asked = read_results(path, reported)
    cells, claims = compare(reported, measured, overrides, asked), check_claims(reported, measured, asked)
    ok, fails = _verdict(cells, claims)
    missing = _missing(cells, claims) if ok else []
    n_meas = sum(r["within"] is not None for r in cells)
    n_asked = sum(r["asked"] for r in cells)
    n_claims = sum(c["asked"] and c["holds"] is not None for c in claims)
    if not ok:
        status, verdict = "fail", f"FAIL: {len(fails)} problem(s)"
    elif missing or not (n_meas or n_claims):
        status = "incomplete"
        verdict = (f"INCOMPLETE: {n_meas} measured cells within tolerance and {n_claims} claims hold, but "
                   f"{n_asked - n_meas} cells and {sum(c['asked'] and c['holds'] is None for c in claims)} claims of "
                   "the rows given are not measured (listed); nothing is judged replicated until they are")
    else:
        status = "pass"
        cells_text = (f"all {n_meas} cells asked about within tolerance" if n_meas else
                      "orderings only: no row is a model of the paper's table, so no cell was compared")
        verdict = (f"PASS ({cells_text}); {n_claims} ordering claims hold on the measured means (a point "
                   "comparison: each claim's verdict over seeds is in the result's claims.md)")
    result = {"against": against, "results": str(path), "tolerance": reported["tolerance"], "overrides": overrides,
              "cells": cells, "claims": claims, "failures": fails, "missing": missing, "status": status,
              "passed": status == "pass", "verdict": verdict}
    out = Path(out) if out else default_out(path)
    out.mkdir(parents=True, exist_ok=True)
    (out / "check.json").write_text(json.dumps(finite(result), indent=1, allow_nan=False))
    (out / "check.md").write_text(render_md(result))
    result["out"] = out
    return result


def default_out(path: Path) -> Path:
    """Where check.json/.md go without --out: beside the results, unless they are a committed reference
    (figures/<id>/...), which a check must not change: results/check/<id>/... then."""
    from replicate.paths import reference_dir, results_root
    folder = path.parent.resolve()
    try:
        return results_root() / "check" / folder.relative_to(reference_dir().resolve())
    except ValueError:
        return path.parent


def cli_check(args) -> int:
    """`python -m replicate check`: export a reported table, or check RESULTS against one (exit 0 / 1)."""
    if args.export:
        if args.results or args.tolerance:
            raise UserError("--export takes no RESULTS or --tolerance; run `check --export TABLE [--out FILE]` alone")
        text = export_csv(load_reported(args.export))
        if args.out is None:
            sys.stdout.write(text)
            return 0
        target = args.out / "table.csv" if args.out.is_dir() else args.out
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        print(f"wrote {target}")
        return 0
    if args.results is None or args.against is None:
        raise UserError("give RESULTS and --against TABLE, e.g. `check results/table2/tiny/table.csv --against entropy-mechanism/table2`")
    res = run_check(args.results, args.against, args.tolerance, args.out)
    for line in res["failures"] + res["missing"]:
        print(line)
    print(res["verdict"])
    print(f"wrote {res['out']}/check.json, check.md")
    return {"pass": 0, "fail": 1, "incomplete": 3}[res["status"]]
