"""fig6's ceilings in a two-way arms x seeds layout (docs/audits.md, "fig6 ceilings_within_seed_noise"): the arm
effect on the law's fitted ceiling b - a against the residual noise, a rank test that assumes no normality or
equal spread (Friedman), and the registered claim's ratio recomputed with the residual as its noise. A diagnostic
of the committed reference, made after its runs were seen: it judges nothing.

    python scripts/fig6_two_way.py [CLAIMS_JSON]     (default: figures/fig6/claims.json)
"""
import argparse
import json
import math
from pathlib import Path

import numpy as np
from scipy import stats

from replicate.analysis.stats import mean_ci, two_way

ROOT = Path(__file__).resolve().parent.parent


def diagnose(claims: dict, leave_out: tuple[str, ...] = ()) -> dict:
    """The two-way F test of the ceilings (a missing run makes it NaN), the Friedman test, the RMS over arms of
    each arm's SD over seeds (law_across_arms' noise, over these arms), each arm's share of the residual sum of
    squares, and per seed the SD over arms divided by the residual SD: its mean and 95% t-interval over seeds."""
    ceilings = claims["pooled"]["grpo"]["ceilings"]
    arms = [a for a in ceilings if a not in leave_out]
    seeds = sorted({s for a in arms for s in ceilings[a]}, key=int)
    table = np.array([[ceilings[a].get(s, math.nan) for s in seeds] for a in arms])
    out = two_way(table)
    ratio = mean_ci(np.std(table, axis=0, ddof=1) / out["residual_sd"])
    seed_sd = float(np.sqrt(np.mean(np.var(table, axis=1, ddof=1))))
    return {"arms": arms, "seeds": len(seeds), **out, "ratio": ratio, "seed_sd": seed_sd,
            "friedman_p": float(stats.friedmanchisquare(*table).pvalue),
            "residual_share": np.array(out["residual_ss"]) / sum(out["residual_ss"])}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("claims", nargs="?", type=Path, default=ROOT / "figures" / "fig6" / "claims.json")
    claims = json.loads(p.parse_args().claims.read_text())
    for leave_out in ((), ("prime",)):
        d = diagnose(claims, leave_out)
        means = ", ".join(f"{a} {m:.3f}" for a, m in zip(d["arms"], d["arm_means"]))
        print(f"{len(d['arms'])} arms x {d['seeds']} seeds: F({d['df'][0]}, {d['df'][1]}) = {d['f']:.1f}, "
              f"p = {d['p']:.1e}, Friedman p = {d['friedman_p']:.1e}; residual SD {d['residual_sd']:.3f}, each "
              f"arm's SD over seeds {d['seed_sd']:.3f} (RMS); SD over arms / residual SD {d['ratio'][0]:.3f} "
              f"[{d['ratio'][1]:.3f}, {d['ratio'][2]:.3f}]; mean ceilings {means}; share of the residual sum of "
              f"squares " + ", ".join(f"{a} {x:.2f}" for a, x in zip(d["arms"], d["residual_share"])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
