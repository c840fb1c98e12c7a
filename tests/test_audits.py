"""docs/audits.md quotes the committed references: each number it gives for a fixed finding is the reference's."""
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEXT = " ".join((ROOT / "docs" / "audits.md").read_text().split())


def claim(spec: str, cid: str, scale: str = "") -> dict:
    rows = json.loads((ROOT / "figures" / spec / scale / "claims.json").read_text())["claims"]
    return next(c for c in rows if c["id"] == cid)


def interval(c: dict) -> str:
    return f"{c['mean']:.3f} [{c['ci95'][0]:.3f}, {c['ci95'][1]:.3f}]"


@pytest.mark.parametrize("spec,cid,scale,quote", [
    ("fig11", "grpo_beats_sharpening", "", "replicated: {} tiny"),
    ("fig11", "grpo_beats_sharpening", "small", "{} small"),
    ("lemma-lm-copyrule", "theorem_predicts_entropy_change", "", "theorem {}, not replicated"),
    ("dast-levels", "easy_adapts_more_than_uniform_shortener", "", "fourth round, replicated: {}")])
def test_the_numbers_quoted_are_the_references(spec, cid, scale, quote):
    c = claim(spec, cid, scale)
    assert quote.format(interval(c)) in TEXT, (spec, cid, interval(c))
    said = next((v for v in ("not replicated", "replicated", "inconclusive") if v in quote), None)
    assert said is None or c["verdict"] == said


def test_the_verdict_changes_quoted_are_the_references():
    little = claim("fig9", "small_coef_changes_little")
    assert (little["verdict"], little["verdict_holm"]) == ("inconclusive", "inconclusive")  # fresh seeds 20-29
    assert "on the fresh seeds 20-29, inconclusive before Holm too" in TEXT
    assert little["metric"].startswith("entropy_end_log_over_ref_end@")
    explodes = claim("fig9", "largest_coef_explodes")
    assert f"{explodes['mean']:.3f}, not replicated as before" in TEXT and explodes["verdict"] == "not replicated"
    for spec, cid in (("fig11", "kl_cov_holds_entropy"), ("fig8", "easy_prompts_larger_cov")):
        md = (ROOT / "figures" / "pilots" / f"{spec}-small-0-5" / "claims.md").read_text()  # seeds 0-5, where found
        row = next(line for line in md.splitlines() if line.startswith(f"| **{cid}**"))
        assert "| replicated † |" in row, (spec, cid)  # the claim's own row, not just any † in the file
        assert sum("| replicated † |" in line or "| not replicated † |" in line or "| inconclusive † |" in line
                   for line in md.splitlines()) == 1, spec
