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


@pytest.mark.parametrize("response,number", [
    ("9", 9), ("4 + 5 = 9", 9), ("\\boxed{9}", 9), ("**9**", 9), ("The answer is **9**.", 9), ("8 - 8 = 0.0.", 0),
    ("The answer is 9. 4 + 5 is", 9), ("The answer is 2, not 7-5,", 2), ("5 + 5 is 10, but it's", 10),
    ("4 minus 4 equals 0, which is", 0), ("The answer is 1,008.", 1008), ("The answer is 11. 8 is the", 11),
    ("The answer is 4 + 5.", None), ("\\boxed{4 + 5}", None), ("The answer is 8 9", None), ("4 + 5", None),
    ("8 - 4 is 8 - 4 = ", None), ("To find 6 - 3, we need to subtract", None), ("0 + 8 represents the", None),
    ("The answer is not available. 4 - 0 is", None), ("4 plus 5", None), ("no idea", None)])
def test_answer_as_written_refuses_expressions_and_echoes(response, number):
    got = _script().answer_as_written(response)
    assert (got is None and number is None) or (got is not None and float(got) == number)


def test_the_counts_quoted_are_the_committed_record():
    rows = json.loads(RECORD.read_text())
    trained = [r for r in rows if not r["run"].startswith("base:")]
    count = lambda runs, key: sum(r[m][key] for r in runs for m in ("greedy", "sampled"))  # noqa: E731
    rewarded = sum(round(r[m]["accuracy"] * r[m]["n"]) for r in trained for m in ("greedy", "sampled"))
    quote = f"{count(trained, 'rewarded_not_answering_gold')} of {rewarded:,}"
    doc, readme = (ROOT / "docs" / "reward-leaks.md").read_text(), (ROOT / "README.md").read_text()
    assert f"**Result: {quote} rewarded responses do not answer the gold**" in doc
    assert f"{len(trained)} trained policies paid for {quote} responses" in " ".join(readme.split())
    for arm, label in (("fig1/", "GRPO (fig1)"), ("clip_cov", "Clip-Cov"), ("clip_higher", "Clip-higher"),
                       ("kl_cov", "KL-Cov")):
        runs = [r for r in trained if arm in r["run"]]
        acc = {m: [r[m]["accuracy"] for r in runs] for m in ("greedy", "sampled")}
        row = f"| {label} | {len(runs)} | " + " | ".join(f"{min(a):.2f}-{max(a):.2f}" for a in acc.values()) + \
              f" | {count(runs, 'rewarded_not_answering_gold')} | {count(runs, 'answering_gold_unrewarded')} |"
        assert row in doc, row
    assert count(trained, "rewarded_without_gold") == 0  # the looser classifier agrees: no expression paid


def test_the_base_numbers_quoted_are_the_committed_record():
    [base] = [r["sampled"] for r in json.loads((RECORD.parent / "base-t0.7-amd-epyc.json").read_text())
              if r["run"].startswith("base:")]
    rewarded = round(base["accuracy"] * base["n"])
    text = " ".join((ROOT / "docs" / "reward-leaks.md").read_text().split())
    assert f"{rewarded} of {base['n']:,} rewarded, {base['rewarded_not_answering_gold']} of them echoes" in text
    assert f"{base['answering_gold_unrewarded']} honest answers unrewarded" in text
    written = rewarded - base["rewarded_not_answering_gold"] + base["answering_gold_unrewarded"]
    assert f"accuracy {rewarded / base['n']:.3f} under the old rule, {written / base['n']:.3f} answered as written" \
        in text


def test_the_rule_diff_quoted_is_the_committed_record():
    diff = json.loads((RECORD.parent / "rule-diff-base-amd-epyc.json").read_text())
    paid = sum(d["old_reward"] == 1.0 for d in diff["differ"])
    text = " ".join((ROOT / "docs" / "reward-leaks.md").read_text().split())
    assert f"{diff['samples']:,} samples of the base model" in text
    assert f"it disagrees with the old reward on {len(diff['differ'])}. The old reward paid {paid} that it " \
           "refuses" in text
    assert f"It pays {len(diff['differ']) - paid} that the old reward refused" in text
