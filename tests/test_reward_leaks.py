"""docs/reward-leaks.md: the leak check's classifier on known responses, and the counts the docs and README quote
are the committed record's (figures/reward-leaks/), so a new check cannot leave them behind."""
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RECORD = ROOT / "figures" / "reward-leaks" / "small-amd-epyc.json"


def _script():
    spec = importlib.util.spec_from_file_location("reward_leak_check", ROOT / "scripts" / "reward_leak_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("response,gold,writes", [
    ("4 + 5 = 9", "9", True), ("4 + 5 = 9.", "9", True), ("\\boxed{9}", "9", True), ("The answer is 9", "9", True),
    ("0.0", "0", False), ("8 - 8 = 0.0.", "0", False), ("19", "9", False), ("9.5", "9", False),
    ("The answer is 4 + 5.", "9", False), ("The answer is 8 9", "17", False), ("-3", "3", True),
    ("10 - 7 = 3", "3", True), ("93", "3", False)])
def test_writes_gold_finds_the_number_as_written(response, gold, writes):
    assert _script().writes_gold(response, gold) is writes


def test_the_counts_quoted_are_the_committed_record():
    rows = json.loads(RECORD.read_text())
    trained = [r for r in rows if not r["run"].startswith("base:")]
    rewarded = sum(round(r[m]["accuracy"] * r[m]["n"]) for r in trained for m in ("greedy", "sampled"))
    leaked = sum(r[m]["rewarded_without_gold"] for r in trained for m in ("greedy", "sampled"))
    quote = f"{leaked} of {rewarded:,}"
    doc, readme = (ROOT / "docs" / "reward-leaks.md").read_text(), (ROOT / "README.md").read_text()
    assert f"**Result: {quote} rewarded responses.**" in doc
    assert f"{len(trained)} trained policies paid for {quote} responses" in " ".join(readme.split())
    for arm, label in (("fig1/", "GRPO (fig1)"), ("clip_cov", "Clip-Cov"), ("clip_higher", "Clip-higher"),
                       ("kl_cov", "KL-Cov")):
        runs = [r for r in trained if arm in r["run"]]
        acc = {m: [r[m]["accuracy"] for r in runs] for m in ("greedy", "sampled")}
        row = f"| {label} | {len(runs)} | " + " | ".join(f"{min(a):.2f}-{max(a):.2f}" for a in acc.values()) + " | " \
              f"{sum(r[m]['rewarded_without_gold'] for r in runs for m in ('greedy', 'sampled'))} |"
        assert row in doc, row
