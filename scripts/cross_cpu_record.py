"""Compare two sets of tiny references claim by claim and write the record figures/cross-cpu/ keeps.

Side a is a re-run (the figures/ folder of a worktree that ran scripts/regenerate.sh on another CPU kind), side b the
committed references. Per claim: both verdicts, means, worst values, intervals and per-seed values, and how many
per-seed values are equal bit for bit. The verdicts are compared, not the numbers: a reference is bit-exact only on
the CPU kind that made it (docs/cross-cpu.md).

    python scripts/cross_cpu_record.py A_FIGURES B_FIGURES --out RECORD.json --a-cpu "..." --b-cpu "..." [SPEC ...]
"""
import argparse
import json
import sys
from pathlib import Path

FIELDS = ("verdict", "mean", "worst", "ci95", "values")


def side(claim: dict) -> dict:
    return {k: claim.get(k) for k in FIELDS}


def compare_spec(a_path: Path, b_path: Path) -> list[dict]:
    """One row per claim of B (the reference); a claim B has and A lacks is an error, not a silent skip."""
    a = {c["id"]: c for c in json.loads(a_path.read_text())["claims"]}
    rows = []
    for c in json.loads(b_path.read_text())["claims"]:
        if c["id"] not in a:
            raise SystemExit(f"error: {a_path} has no claim {c['id']!r}; re-run that spec on side a")
        x = a[c["id"]]
        equal = sum(u == v for u, v in zip(x["values"], c["values"]))
        rows.append({"id": c["id"], "over": c["over"], "op": c["op"], "threshold": c["threshold"],
                     "a": side(x), "b": side(c), "values_equal": equal})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a", type=Path, help="side a's figures/ folder (the re-run)")
    p.add_argument("b", type=Path, help="side b's figures/ folder (the committed references)")
    p.add_argument("specs", nargs="*", help="spec ids (default: every spec with claims.json in both)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--a-meta", default="{}", help="JSON object: side a's cpu, date, git, command, wall_s ...")
    p.add_argument("--b-meta", default="{}", help="JSON object: side b's cpu, code fingerprint ...")
    p.add_argument("--what", default="every tiny reference re-run from a cold store on another CPU kind, "
                                      "compared verdict by verdict")
    args = p.parse_args(argv)
    specs = args.specs or sorted(d.name for d in args.b.iterdir()
                                 if (d / "claims.json").exists() and (args.a / d.name / "claims.json").exists())
    record = {"what": args.what, "a": json.loads(args.a_meta), "b": json.loads(args.b_meta),
              "specs": {s: compare_spec(args.a / s / "claims.json", args.b / s / "claims.json") for s in specs}}
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    rows = [r for rs in record["specs"].values() for r in rs]
    same = sum(r["a"]["verdict"] == r["b"]["verdict"] for r in rows)
    values = sum(len(r["b"]["values"]) for r in rows)
    print(f"{same} of {len(rows)} verdicts the same; {sum(r['values_equal'] for r in rows)} of {values} per-seed "
          f"values equal bit for bit -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
