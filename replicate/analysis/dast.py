"""DAST analysis: accuracy, tokens and compression per difficulty level and arm, from the preference runner's rows.

compression = 1 - tokens_after / tokens_before (the paper's compression ratio: tokens saved relative to the
original model, negative when longer); easy / hard = the levels the runner logged as easy_levels / hard_levels,
pooled over their held-out problems. *_vs_dast = the arm's value minus the DAST arm's (same seed; NaN for a seed
the DAST arm lacks), when the spec has an arm named "dast".
"""
from __future__ import annotations

from .collect import record

LEVELS = range(1, 7)
PER_LEVEL = ("acc", "tokens", "compression", "acc_change", "scratchpad")
SUMMARY = ("acc", "tokens", "compression", "acc_change", "base_acc", "base_tokens", "compression_easy",
           "compression_hard", "compression_easy_minus_hard", "acc_change_easy", "acc_change_hard",
           "n_pairs", "share_dual_incorrect")
VS_DAST = ("compression", "acc_change", "acc_change_hard", "compression_hard", "compression_easy",
           "compression_easy_minus_hard")
METRICS = (*SUMMARY, *(f"{k}_L{lv}" for k in PER_LEVEL for lv in LEVELS), *(f"{k}_vs_dast" for k in VS_DAST))


def _pooled(rows, levels, key):
    sel = [r for r in rows if r["level"] in levels]
    n = sum(r["n"] for r in sel)
    return sum(r[key] * r["n"] for r in sel) / n if n else float("nan")


def seed_values(rows: list[dict]) -> dict:
    meta = next(r for r in rows if r["phase"] == "meta")
    before = [r for r in rows if r["phase"] == "before"]
    after = [r for r in rows if r["phase"] == "after"]
    pairs = next((r for r in rows if r["phase"] == "pairs"), {})
    levels = [r["level"] for r in before]
    out = {}
    for b, a in zip(before, after):
        lv = b["level"]
        out[f"acc_L{lv}"] = a["acc"]
        out[f"tokens_L{lv}"] = a["tokens"]
        out[f"compression_L{lv}"] = 1 - a["tokens"] / b["tokens"]
        out[f"acc_change_L{lv}"] = a["acc"] - b["acc"]
        if "scratchpad" in a:
            out[f"scratchpad_L{lv}"] = a["scratchpad"]
    for name, lv in (("", levels), ("_easy", meta["easy_levels"]), ("_hard", meta["hard_levels"])):
        tb, ta = _pooled(before, lv, "tokens"), _pooled(after, lv, "tokens")
        out[f"compression{name}"] = 1 - ta / tb
        out[f"acc_change{name}"] = _pooled(after, lv, "acc") - _pooled(before, lv, "acc")
    out["compression_easy_minus_hard"] = out["compression_easy"] - out["compression_hard"]
    out["acc"], out["tokens"] = _pooled(after, levels, "acc"), _pooled(after, levels, "tokens")
    out["base_acc"], out["base_tokens"] = _pooled(before, levels, "acc"), _pooled(before, levels, "tokens")
    out["n_pairs"] = pairs.get("n_pairs", 0) + pairs.get("n_sft", 0)
    n = pairs.get("n_pairs", 0)
    out["share_dual_incorrect"] = pairs.get("n_dual_incorrect", 0) / n if n else 0.0
    return out


def dast(runs: dict) -> dict:
    """Per seed and arm: accuracy, tokens and compression (1 - tokens / base tokens) overall and per level, on
    the easy and hard levels and their difference, the accuracy change, pair counts, and each arm's differences
    against the DAST arm of the same seed (`*_vs_dast`)."""
    per_seed, pooled = {}, {}
    values = {v: {s: seed_values(rows) for s, rows in sorted(seeds.items())} for v, seeds in runs.items()}
    for variant, by_seed in values.items():
        for seed, vals in by_seed.items():
            for key, val in vals.items():
                record(per_seed, key, variant, val)
            if "dast" in values:  # a seed the DAST arm lacks is NaN (the claim says unmeasured), not dropped
                ref = values["dast"].get(seed)
                for key in VS_DAST:
                    record(per_seed, f"{key}_vs_dast", variant, vals[key] - ref[key] if ref else float("nan"))
        n = len(by_seed)
        pooled[variant] = {"mean": {k: sum(v[k] for v in by_seed.values()) / n
                                    for k in next(iter(by_seed.values()))}} if n else {}
    return {"per_seed": per_seed, "pooled": pooled}
