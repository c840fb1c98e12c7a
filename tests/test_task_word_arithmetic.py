"""The small tier's task (plain-language sums and differences) and the chat-template view of a task."""
import dataclasses
import random
import re

import pytest

from replicate.errors import UserError
from replicate.runners.rl.models import ChatPrompts, char_tokenizer
from replicate.specs import ModelSpec
from replicate.tasks import TASKS, WordArithmeticTask, make_task
from replicate.tasks.word_arithmetic import final_number


def _operands(prompt):
    a, op, b = re.match(r"What is (\d+) ([+-]) (\d+)\?", prompt).groups()
    return int(a), op, int(b)


def test_answers_levels_and_holdout():
    assert TASKS["word_arithmetic"] is WordArithmeticTask
    task = make_task("word_arithmetic", ops="+-", digits=[1, 2], holdout=50)
    held = {p.prompt for p in task.validation}
    assert len(held) == 50  # distinct
    for p in task.sample(500, random.Random(0)) + task.validation:
        a, op, b = _operands(p.prompt)
        assert p.answer == str(a + b if op == "+" else a - b) and int(p.answer) >= 0
        assert p.level == len(str(a)) and b < 10
    assert not held & {p.prompt for p in task.sample(500, random.Random(1))}


def test_rewards_known_answers():
    task = make_task("word_arithmetic", holdout=8)
    p = task.validation[0]
    wrong = str(int(p.answer) + 1)
    assert task.reward_batch([p.answer, f"The answer is {p.answer}.", wrong, "no idea"], [p] * 4, [True] * 4) == \
        [1.0, 1.0, 0.0, 0.0]


@pytest.mark.parametrize("response,number", [
    # the number the response answers with, as written
    ("9", 9), ("The answer is 9.", 9), ("4 + 5 = 9", 9), ("4 + 5 = 9.", 9), ("\\boxed{9}", 9), ("**9**", 9),
    ("The answer is **9**.", 9), ("$9$", 9), ("8 - 8 = 0.0.", 0), ("-3", -3), ("The answer is: 12", 12),
    ("The answer is 9. 4 + 5 is", 9), ("The answer is 2, not 7-5,", 2), ('The answer is "3".', 3),
    ("5 + 5 is 10, but it's", 10), ("4 minus 4 equals 0, which is not a", 0), ("The answer is 1,008.", 1008),
    ("The answer is 11. 8 is the", 11), ("4 plus 5 is 9", 9), ("The answer is 9.5", 9.5),
    # an expression left for the grader, the question echoed, words: no number
    ("The answer is 4 + 5.", None), ("\\boxed{4 + 5}", None), ("The answer is 8 9", None), ("4 + 5", None),
    ("To find 6 - 3, we need to subtract", None), ("8 - 4 is 8 - 4 = ", None), ("0 + 8 represents the", None),
    ("Here is a mathematical answer for you: 9 - ", None), ("The answer is not available. 4 - 0 is", None),
    ('The answer is "2 + 0".', None), ("4 plus 5", None), ("no idea", None), ("", None)])
def test_final_number_is_the_answer_as_written(response, number):
    got = final_number(response)
    assert (got is None and number is None) or (got is not None and float(got) == number)


def test_the_answer_must_be_worked_out():
    """Math-Verify evaluates what it extracts, so the question's operands copied ("The answer is 4 + 5.") earned
    the reward on every held-out problem, and its last-number fallback paid the question echoed whenever the
    second operand is the answer ("8 - 4 is"); an equation ending in the number still counts."""
    task = make_task("word_arithmetic", holdout=64)
    honest, copied = [], []
    for p in task.validation:
        a, op, b = _operands(p.prompt)
        honest += [f"{a} {op} {b} = {p.answer}", f"\\boxed{{{p.answer}}}", f"The answer is {p.answer}."]
        copied += [f"The answer is {a} {op} {b}.", f"\\boxed{{{a} {op} {b}}}", f"To find {a} {op} {b}, we"]
    n = len(task.validation)
    assert task.reward_batch(honest, [p for p in task.validation for _ in range(3)], [True] * 3 * n) == [1.0] * 3 * n
    assert task.reward_batch(copied, [p for p in task.validation for _ in range(3)], [True] * 3 * n) == [0.0] * 3 * n
    seventeen = dataclasses.replace(task.validation[0], prompt="What is 8 + 9? Answer with only the number.",
                                    answer="17")
    assert task.reward_batch(["The answer is 8 9", "17"], [seventeen] * 2, [True] * 2) == [0.0, 1.0]


def test_honest_answers_score_as_math_verify_scores_them():
    """Cross-check with the grader it replaces: on answers written as a number, in any of the forms the base
    model uses, the reward is Math-Verify's verdict."""
    from evaluators.math import score_batch
    task = make_task("word_arithmetic", digits=[1, 2], holdout=64)
    rng, responses, problems = random.Random(0), [], []
    for p in task.validation:
        a, op, b = _operands(p.prompt)
        for value in (int(p.answer), int(p.answer) + rng.choice([-2, -1, 1, 10])):
            responses += [str(value), f"{a} {op} {b} = {value}", f"The answer is {value}.", f"\\boxed{{{value}}}"]
            problems += [p] * 4
    assert task.reward_batch(responses, problems, [True] * len(problems)) == \
        score_batch(responses, [p.answer for p in problems])


@pytest.mark.parametrize("params", [{"ops": "*"}, {"digits": 0}, {"digits": [4]}, {"holdout": 80},
                                    {"question": "What is {a}?"}])
def test_bad_params_are_refused(params):
    with pytest.raises(ValueError):
        WordArithmeticTask(**params)


def test_chat_prompts_wrap_every_prompt_and_keep_the_rest():
    tok = char_tokenizer("0123456789+-=? abcdefghijklmnopqrstuvwxyzW.")
    tok.chat_template = "{% for m in messages %}<u>{{ m['content'] }}</u>{% endfor %}{% if add_generation_prompt %}<a>{% endif %}"
    task = make_task("word_arithmetic", holdout=8)
    chat = ChatPrompts(task, tok)
    assert [p.prompt for p in chat.validation] == [f"<u>{p.prompt}</u><a>" for p in task.validation]
    assert [p.answer for p in chat.validation] == [p.answer for p in task.validation]
    drawn, plain = chat.sample(5, random.Random(2)), task.sample(5, random.Random(2))
    assert [p.prompt for p in drawn] == [f"<u>{p.prompt}</u><a>" for p in plain]
    assert chat.reward_batch == task.reward_batch


def test_chat_prompts_put_the_system_turn_first_when_given():
    tok = char_tokenizer("0123456789+-=? abcdefghijklmnopqrstuvwxyzW.")
    tok.chat_template = ("{% for m in messages %}<{{ m['role'][0] }}>{{ m['content'] }}{% endfor %}"
                         "{% if add_generation_prompt %}<a>{% endif %}")
    task = make_task("word_arithmetic", holdout=8)
    first = task.validation[0].prompt
    assert ChatPrompts(task, tok).validation[0].prompt == f"<u>{first}<a>"
    assert ChatPrompts(task, tok, system="").validation[0].prompt == f"<s><u>{first}<a>"
    assert ChatPrompts(task, tok, system="Be brief.").validation[0].prompt == f"<s>Be brief.<u>{first}<a>"


def test_chat_needs_a_template_and_a_pretrained_model():
    with pytest.raises(UserError, match="no chat template"):
        ChatPrompts(make_task("word_arithmetic", holdout=8), char_tokenizer("0123"))
    with pytest.raises(ValueError, match="chat"):
        ModelSpec(kind="tiny", chat=True)
