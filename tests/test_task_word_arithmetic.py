"""The small tier's task (plain-language sums and differences) and the chat-template view of a task."""
import dataclasses
import random
import re

import pytest

from replicate.errors import UserError
from replicate.runners.rl.models import ChatPrompts, char_tokenizer
from replicate.specs import ModelSpec
from replicate.tasks import TASKS, WordArithmeticTask, make_task


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


def test_rewards_through_math_verify():
    task = make_task("word_arithmetic", holdout=8)
    p = task.validation[0]
    wrong = str(int(p.answer) + 1)
    assert task.reward_batch([p.answer, f"The answer is {p.answer}.", wrong, "no idea"], [p] * 4, [True] * 4) == \
        [1.0, 1.0, 0.0, 0.0]


def test_the_answer_must_be_worked_out():
    """Math-Verify evaluates what it extracts, so the question's operands copied ("The answer is 4 + 5.") earned
    the reward on every held-out problem before this rule; an equation ending in the number still counts."""
    task = make_task("word_arithmetic", holdout=64)
    honest, copied = [], []
    for p in task.validation:
        a, op, b = _operands(p.prompt)
        honest += [f"{a} {op} {b} = {p.answer}", f"\\boxed{{{p.answer}}}", f"The answer is {p.answer}."]
        copied += [f"The answer is {a} {op} {b}.", f"\\boxed{{{a} {op} {b}}}"]
    n = len(task.validation)
    assert task.reward_batch(honest, [p for p in task.validation for _ in range(3)], [True] * 3 * n) == [1.0] * 3 * n
    assert task.reward_batch(copied, [p for p in task.validation for _ in range(2)], [True] * 2 * n) == [0.0] * 2 * n
    seventeen = dataclasses.replace(task.validation[0], prompt="What is 8 + 9? Answer with only the number.",
                                    answer="17")
    assert task.reward_batch(["The answer is 8 9", "17"], [seventeen] * 2, [True] * 2) == [0.0, 1.0]


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
