"""fig6's ceilings in a two-way arms x seeds layout (docs/audits.md, "fig6 ceilings_within_seed_noise"): the arm
effect on the law's fitted ceiling b - a against the residual noise, and the registered claim's ratio recomputed
with that residual as its noise. A diagnostic of the committed reference, after its runs were seen: it judges
nothing.

    python scripts/fig6_two_way.py [figures/fig6/claims.json]
"""
import json
import sys
from pathlib import Path

import numpy as np

from replicate.analysis.stats import mean_ci, two_way

ROOT = Path(__file__).resolve().parent.parent


def diagnose(claims: dict, leave_out: tuple[str, ...] = ()) -> dict:
    """F, p, residual SD and arm means of the ceilings, and the per-seed SD over arms over the residual SD (the
    claim's `ceiling_arm_sd_over_seed_sd` with the two-way noise): mean and 95% t-interval over the seeds."""
    ceilings = claims["pooled"]["grpo"]["ceilings"]
    arms = [a for a in ceilings if a not in leave_out]
    seeds = sorted(ceilings[arms[0]], key=int)
    table = np.array([[ceilings[a][s] for s in seeds] for a in arms])
    out = two_way(table)
    ratio = mean_ci(np.std(table, axis=0, ddof=1) / out["residual_sd"])
    seed_sd = float(np.sqrt(np.mean(np.var(table, axis=1, ddof=1))))  # law_across_arms' noise, over these arms
    return {"arms": arms, "seeds": len(seeds), **out, "ratio": ratio, "seed_sd": seed_sd}


def main(path: str = str(ROOT / "figures" / "fig6" / "claims.json")) -> int:
    claims = json.loads(Path(path).read_text())
    for leave_out in ((), ("prime",)):
        d = diagnose(claims, leave_out)
        means = ", ".join(f"{a} {m:.3f}" for a, m in zip(d["arms"], d["arm_means"]))
        print(f"{len(d['arms'])} arms x {d['seeds']} seeds: F({d['df'][0]}, {d['df'][1]}) = {d['f']:.1f}, "
              f"p = {d['p']:.1e}; residual SD {d['residual_sd']:.3f} (one arm's SD over seeds, the claim's noise: "
              f"{d['seed_sd']:.3f}); SD over arms / residual SD {d['ratio'][0]:.3f} [{d['ratio'][1]:.3f}, "
              f"{d['ratio'][2]:.3f}]; ceilings {means}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
