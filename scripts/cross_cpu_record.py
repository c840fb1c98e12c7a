"""Compare two sets of references claim by claim and write the record figures/cross-cpu/ keeps.

Side a is a re-run (the figures/ folder of a worktree where scripts/regenerate.sh ran on another CPU kind), side b
the committed references. Each side's CPU kind is its folder's CPU_KIND file (regenerate.sh writes it) and its code
fingerprint the one every claims.json's provenance names. Per claim: both verdicts, means, worst values, intervals
and per-seed values, and how many per-seed values are equal bit for bit. Read it by verdicts and intervals: a
reference is bit-exact only on the CPU kind that made it (docs/cross-cpu.md).

    python scripts/cross_cpu_record.py A_FIGURES B_FIGURES --out RECORD.json [--a-meta JSON] [--scale small] [SPEC ...]

A spec's claims are FIGURES/SPEC/claims.json on each side, or FIGURES/SPEC/small/claims.json with --scale small.
"""
import argparse
import json
import struct
import sys
from pathlib import Path

FIELDS = ("verdict", "mean", "worst", "ci95", "values")


def same_bits(x, y) -> bool:
    """Equal as stored: None only with None, floats bit for bit (NaN with the same NaN; 0.0 is not -0.0)."""
    if x is None or y is None:
        return x is None and y is None
    return struct.pack("<d", x) == struct.pack("<d", y)


def compare_spec(a_path: Path, b_path: Path) -> list[dict]:
    """One row per claim of B (the reference); a claim or value B has and A lacks is an error, not a silent skip."""
    a = {c["id"]: c for c in json.loads(a_path.read_text())["claims"]}
    rows = []
    for c in json.loads(b_path.read_text())["claims"]:
        x = a.get(c["id"])
        if x is None or len(x["values"]) != len(c["values"]):
            sys.exit(f"error: {a_path} lacks claim {c['id']!r} or some of its values; re-run that spec on side a")
        rows.append({"id": c["id"], "over": c["over"], "op": c["op"], "threshold": c["threshold"],
                     "a": {k: x.get(k) for k in FIELDS}, "b": {k: c.get(k) for k in FIELDS},
                     "values_equal": sum(same_bits(u, v) for u, v in zip(x["values"], c["values"]))})
    return rows


def claims_path(figures: Path, spec: str, scale: str) -> Path:
    """Where a reference keeps its claims: figures/SPEC/ at the tiny scale, figures/SPEC/<scale>/ at another."""
    return figures / spec / ("" if scale == "tiny" else scale) / "claims.json"


def side(figures: Path, specs: list[str], scale: str = "tiny") -> dict:
    """The side's CPU kind (figures/CPU_KIND) and the one code fingerprint its references were made at."""
    prints = {json.loads(claims_path(figures, s, scale).read_text())["provenance"].get("code_fingerprint")
              for s in specs}
    if len(prints) != 1:
        sys.exit(f"error: {figures}'s references name code fingerprints {sorted(map(str, prints))}; compare one")
    kind = figures / "CPU_KIND"
    return {"cpu_kind_line": kind.read_text().strip() if kind.exists() else None, "code_fingerprint": prints.pop()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a", type=Path, help="side a's figures/ folder (the re-run)")
    p.add_argument("b", type=Path, help="side b's figures/ folder (the committed references)")
    p.add_argument("specs", nargs="*", help="spec ids (default: every spec with claims.json on both sides)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--a-meta", default="{}", help="JSON object added to side a: cpu, date, git, command, wall_s ...")
    p.add_argument("--b-meta", default="{}", help="JSON object added to side b")
    p.add_argument("--scale", default="tiny", choices=("tiny", "small", "paper"),
                   help="the references' scale: tiny (figures/SPEC/) or another (figures/SPEC/SCALE/)")
    p.add_argument("--what", help="what the record holds (default: the scale's references re-run from a cold store "
                                  "on another CPU kind, compared claim by claim)")
    args = p.parse_intermixed_args(argv)  # SPEC ... may follow the options
    specs = args.specs or sorted(d.name for d in args.b.iterdir() if claims_path(args.b, d.name, args.scale).exists()
                                 and claims_path(args.a, d.name, args.scale).exists())
    if not specs:
        sys.exit(f"error: no spec has {args.scale} claims.json on both sides ({args.a}, {args.b}); check the folders "
                 "and --scale")
    args.what = args.what or (f"{args.scale} references re-run from a cold store on another CPU kind, compared claim "
                              "by claim")
    record = {"what": args.what, "scale": args.scale,
              "a": {**side(args.a, specs, args.scale), **json.loads(args.a_meta)},
              "b": {**side(args.b, specs, args.scale), **json.loads(args.b_meta)},
              "specs": {s: compare_spec(claims_path(args.a, s, args.scale), claims_path(args.b, s, args.scale))
                        for s in specs}}
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    rows = [r for rs in record["specs"].values() for r in rs]
    same = sum(r["a"]["verdict"] == r["b"]["verdict"] for r in rows)
    values = sum(len(r["b"]["values"]) for r in rows)
    print(f"{len(specs)} specs: {same} of {len(rows)} verdicts the same; {sum(r['values_equal'] for r in rows)} of "
          f"{values} per-seed values equal bit for bit -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
