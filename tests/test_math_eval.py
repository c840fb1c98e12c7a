"""Math answers: extraction across answer styles, Math-Verify equivalence, near misses, hostile inputs."""
import json
import threading
import time
from pathlib import Path

import pytest

from evaluators.math import VerifierPool, extract_answer, gold_answer, last_boxed, score, score_batch

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "math"

EXTRACTION = [
    ("so \\boxed{42}.", "42"),
    ("\\boxed{\\frac{1}{2}} then \\boxed{3}", "3"),                       # the last box wins
    ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{3}}{2}"),            # nested braces
    ("\\fbox{7}", "7"),
    ("$\\boxed {x+1}$", "x+1"),
    ("\\boxed 5", "5"),
    ("We get 3 and then 4. The answer is 12.", "12"),
    ("The final answer is: $\\frac{3}{4}$.", "\\frac{3}{4}"),
    ("first 2, then 7", "7"),                                              # fallback: last number
    ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("unbalanced \\boxed{3", "3"),                                         # unbalanced box -> fallback number
    ("no answer here", None),
]


@pytest.mark.parametrize("text,expected", EXTRACTION)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_extraction_fallback_none_and_bad_option():
    assert extract_answer("first 2, then 7", fallback="none") is None
    assert last_boxed("\\boxed{a}\\boxed{b{c}}") == "b{c}"
    with pytest.raises(ValueError):
        extract_answer("x", fallback="guess")


EQUIVALENT = [  # (response, gold)
    ("\\boxed{27}", "27.0"), ("\\boxed{0.5}", "\\frac{1}{2}"), ("\\boxed{\\dfrac{3}{4}}", "3/4"),
    ("\\boxed{[1,2)}", "[1,2)"), ("\\boxed{\\{2,1\\}}", "\\{1,2\\}"), ("\\boxed{50}", "50\\%"),
    ("\\boxed{10}", "10 \\text{ cm}"), ("\\boxed{2^{1/2}}", "\\sqrt{2}"), ("\\boxed{(x+1)^2}", "x^2+2x+1"),
    ("\\boxed{(3,\\pi/2)}", "\\left( 3, \\frac{\\pi}{2} \\right)"), ("\\boxed{1,000}", "1000"),
    ("\\boxed{3}", "x=3"), ("\\boxed{C}", "\\text{(C)}"), ("\\boxed{\\frac{12}{2}}", "6"),
    ("The answer is 18.", "18"), ("\\boxed{-\\frac{1}{3}}", "-1/3"), ("\\boxed{\\pi}", "\\pi"),
    ("\\boxed{2\\sqrt{2}}", "\\sqrt{8}"), ("\\boxed{0.25}", "\\frac14"), ("\\boxed{x \\in (0, 1)}", "(0,1)"),
    ("\\boxed{e^{0}}", "1"), ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt3}{2}"), ("\\boxed{1.5}", "\\frac{3}{2}"),
    ("Thus \\boxed{204}", "204"), ("\\boxed{5\\sqrt{5}}", "\\sqrt{125}"), ("\\boxed{-2}", "-2.0"),
    ("\\boxed{\\infty}", "\\infty"), ("\\boxed{(-\\infty, 0)}", "(-\\infty,0)"), ("\\boxed{2x}", "x+x"),
    ("\\boxed{3.14}", "3.14"),
    # surface forms Math-Verify misses on its own (issue 26, class 10), normalised before it parses
    ("\\boxed{１２}", "12"), ("\\boxed{45°}", "45"), ("\\boxed{1\\,000\\,000}", "1000000"), ("\\boxed{1.5e3}", "1500"),
    ("\\boxed{x>2}", "(2,\\infty)"), ("\\boxed{2 < x}", "(2, \\infty)"), ("\\boxed{x=2 \\text{ or } x=3}", "2, 3"),
    ("\\boxed{-1}", "e^{i\\pi}"), ("\\boxed{e^{\\pi i}}", "-1"), ("\\boxed{２x+１}", "2x+1"),
    ("\\boxed{x\\geq 2}", "[2,\\infty)"), ("\\boxed{1 < x < 3}", "(1,3)"), ("\\boxed{3+4i}", "4i+3"),
]
NEAR_MISSES = [
    ("\\boxed{28}", "27"), ("\\boxed{2}", "\\frac{1}{2}"), ("\\boxed{-\\frac{1}{2}}", "\\frac{1}{2}"),
    ("\\boxed{[1,2]}", "(1,2)"), ("\\boxed{(1,2]}", "[1,2]"), ("\\boxed{\\{1,3\\}}", "\\{1,2\\}"),
    ("\\boxed{0.5}", "50"), ("\\boxed{\\sqrt{3}}", "\\sqrt{2}"), ("\\boxed{x^2+1}", "(x+1)^2"),
    ("\\boxed{2.0000001}", "2"), ("\\boxed{4}", "3"), ("\\boxed{B}", "\\text{(C)}"), ("\\boxed{3\\pi}", "\\pi"),
    ("The answer is 17.", "18"), ("\\boxed{e}", "1"), ("\\boxed{10}", "100"), ("\\boxed{}", "5"),
    ("\\boxed{(3, \\pi)}", "(3, \\frac{\\pi}{2})"), ("\\boxed{-\\infty}", "\\infty"), ("\\boxed{x}", "2x"),
    ("no number", "3"), ("\\boxed{1/3}", "0.33"), ("we had 2 earlier and then 7", "2"),
    # the normalisations add no false positives: hedged, off-by-a-bit and wrong-direction answers still fail
    ("\\boxed{x>2 \\text{ or } x<-2}", "(2,\\infty)"), ("\\boxed{x>3}", "(2,\\infty)"), ("\\boxed{x<2}", "(2,\\infty)"),
    ("\\boxed{x \\geq 2}", "(2,\\infty)"), ("\\boxed{x>2, x<5}", "(2,\\infty)"), ("\\boxed{i}", "-1"),
    ("\\boxed{1.5e4}", "1500"), ("\\boxed{46°}", "45"), ("\\boxed{1\\,000}", "1000000"), ("\\boxed{１３}", "12"),
    ("\\boxed{e^{i\\pi}}", "1"),
    # the problem copied is not its solution (a reward-hacking audit): only a relation in solved form reads as a set
    ("\\boxed{x^2-5x+6=0}", "2, 3"), ("\\boxed{x^2-5x+6<0}", "(2,3)"), ("\\boxed{x^2+1>0}", "\\mathbb{R}"),
    ("\\boxed{|x-1| < 2}", "(-1,3)"), ("\\boxed{3x+1 \\le 7}", "(-\\infty, 2]"), ("\\boxed{x^2=9}", "\\pm 3"),
    ("\\boxed{-4<x^{4}+4x^{2}<21}", "(-\\sqrt{3}, \\sqrt{3})"), ("\\boxed{x=x}", "\\mathbb{R}"),
]


@pytest.mark.parametrize("response,gold", EQUIVALENT)
def test_equivalent_answers_score_one(response, gold):
    assert score(response, gold) == 1.0


@pytest.mark.parametrize("response,gold", NEAR_MISSES)
def test_near_misses_score_zero(response, gold):
    assert score(response, gold) == 0.0


def test_gold_answer_per_dataset_field():
    assert gold_answer({"answer": 70}) == "70"
    assert gold_answer({"answer": 27.0}) == "27"
    assert gold_answer({"answer": "Janet sells ... #### 1,018"}) == "1018"
    assert gold_answer({"final_answer": ["$2$", "3"]}) == "2, 3"
    assert gold_answer({"solution": "so \\boxed{\\frac{1}{2}} m"}) == "\\frac{1}{2}"
    with pytest.raises(ValueError):
        gold_answer({"problem": "x"})


@pytest.mark.skipif(not SHARED.exists(), reason="needs ../shared/data/math")
@pytest.mark.parametrize("name", ["aime24", "aime25", "amc23", "gsm8k", "math500", "minerva_math", "olympiadbench"])
def test_every_gold_of_each_dataset_verifies_and_near_misses_fail(name):
    records = [json.loads(line) for line in (SHARED / f"{name}.jsonl").open()]
    golds = [gold_answer(r) for r in records]
    assert all(score_batch([f"Work... so the answer is \\boxed{{{g}}}." for g in golds], golds))
    near = score_batch([f"\\boxed{{{g}+1}}" for g in golds], golds)
    # Math-Verify accepts a handful of these adversarial strings (e.g. '(a, b)+1' against an interval,
    # 'N=n+1' against 'N=n'): 2/272 in Minerva, 5/675 in OlympiadBench, 0 elsewhere.
    assert sum(near) / len(near) <= 0.01


def test_pathological_inputs_score_zero_within_the_timeout_and_the_pool_keeps_serving():
    pool = VerifierPool(workers=2)
    try:
        hostile = ["\\boxed{9^{9^{9^{9^{9}}}}}", "\\boxed{" + "{" * 5000 + "1" + "}" * 5000 + "}",
                   "1" * 1_000_000, "\\boxed{" + "x+" * 20000 + "1}"]
        golds = ["9^{9^{9^{9^{9}}}}+1", "2", "3", "x"]
        t0 = time.monotonic()
        assert pool.score(hostile, golds, timeout_s=2.0) == [0.0] * 4
        assert time.monotonic() - t0 < 4 * 2.0 + 10
        assert pool.score(["\\boxed{3}", "\\boxed{4}"], ["3", "5"], timeout_s=2.0) == [1.0, 0.0]
    finally:
        pool.close()


def test_score_works_off_the_main_thread():
    out = []
    th = threading.Thread(target=lambda: out.append(score("\\boxed{\\frac{2}{4}}", "0.5")))
    th.start()
    th.join(60)
    assert out == [1.0]


def test_threads_sharing_the_pool_get_their_own_scores():
    """The workers answer by item index: without the pool's lock, a thread scoring wrong answers read the other
    thread's 1.0s (83 of 200 in the audit), or a worker's connection was reset."""
    out, n = {}, 100
    work = {"wrong": (["\\boxed{4}"] * n, ["5"] * n), "right": (["\\boxed{5}"] * n, ["5"] * n)}
    threads = [threading.Thread(target=lambda k=k: out.__setitem__(k, score_batch(*work[k]))) for k in work]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert out == {"wrong": [0.0] * n, "right": [1.0] * n}


def test_score_batch_checks_lengths():
    with pytest.raises(ValueError):
        score_batch(["a"], ["1", "2"])
