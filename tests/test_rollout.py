"""The sampler: a group's prompt is run once and its KV cache shared, with the same samples as running it per row."""
import pytest
import torch

from replicate.runners.rl.models import char_tokenizer, tiny_model
from replicate.runners.rl.rollout import encode_prompts, generate, make_generator

CONFIG = {"model_type": "qwen2", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
          "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64}


@pytest.mark.parametrize("temperature", [0.0, 1.0, 0.6])
def test_shared_prefill_samples_what_per_row_prompts_sample(temperature):
    tok = char_tokenizer("0123456789+*=")
    torch.manual_seed(0)
    model = tiny_model(CONFIG, tok).eval()
    ids, mask = encode_prompts(tok, ["47*38=", "3*5=", "12*99=", "7="])  # left-padded to different lengths
    args = (8, temperature, [tok.eos_token_id], tok.pad_token_id)
    shared = generate(model, ids, mask, *args, make_generator(1, "cpu"), repeats=5)
    per_row = generate(model, ids.repeat_interleave(5, 0), mask.repeat_interleave(5, 0), *args, make_generator(1, "cpu"))
    assert shared[0].shape[0] == 20
    assert torch.equal(shared[0], per_row[0]) and torch.equal(shared[1], per_row[1])
    if temperature:  # sampled: the rows of a group differ
        assert any(not torch.equal(shared[0][i], shared[0][i + 1]) for i in range(0, 20, 5))


def test_stop_strings_end_responses_like_eos_in_both_engines():
    """rollout.stop: every token whose text holds a stop string ends the response (kept, under the mask, like EOS),
    in our sampler and in transformers' generate() alike, and the verifier reads the text before it."""
    from replicate.engines import ENGINES
    from replicate.runners.rl.stops import cut_at_stops, ends, set_stops, stop_token_ids
    tok = char_tokenizer("0123456789+*=")
    torch.manual_seed(0)
    model = tiny_model(CONFIG, tok).eval()
    assert stop_token_ids(tok) == [tok.eos_token_id]  # before set_stops: EOS alone
    ids, mask = encode_prompts(tok, ["47*38=", "3*5=", "12*99=", "7="])
    free, _ = generate(model, ids, mask, 12, 0.0, stop_token_ids(tok), tok.pad_token_id)
    # stop at the digit the greedy responses write most, so some rows stop early and others may not
    digits = [t for t in free.flatten().tolist() if tok.decode([t]).isdigit()]
    stop = tok.decode([max(set(digits), key=digits.count)])
    set_stops(tok, [stop])
    assert stop_token_ids(tok) == [tok.eos_token_id, tok.convert_tokens_to_ids(stop)]
    for engine in ("ours", "hf"):
        resp, rmask = ENGINES[engine](model, ids, mask, 12, 0.0, stop_token_ids(tok), tok.pad_token_id)
        for row, m, full in zip(resp, rmask, free):
            n = int(m.sum())
            first = [i for i, t in enumerate(full.tolist()) if t in stop_token_ids(tok)]
            assert n == (first[0] + 1 if first else 12)  # up to and including the first stop token
            assert torch.equal(row[:n], full[:n]) and torch.all(row[n:] == tok.pad_token_id)
        assert ends(tok, resp).tolist() == [bool(set(r.tolist()) & set(stop_token_ids(tok))) for r in free]
    texts = cut_at_stops(tok, tok.batch_decode(resp, skip_special_tokens=True))
    assert all(stop not in t for t in texts)
    assert texts == [t.split(stop, 1)[0] for t in tok.batch_decode(resp, skip_special_tokens=True)]


def test_an_empty_stop_string_is_refused():
    from pydantic import ValidationError

    from replicate.config import RolloutSpec
    assert RolloutSpec(stop=["\n"]).stop == ["\n"]
    with pytest.raises(ValidationError, match="empty stop string"):
        RolloutSpec(stop=["\n", ""])


class _Vocab:
    """A tokenizer stand-in whose vocabulary merges an answer and its newline into one token ("7\\n")."""
    eos_token_id = 0
    texts = ("<eos>", "7", "\n", "7\n", "A")

    def __len__(self):
        return len(self.texts)

    def batch_decode(self, rows, skip_special_tokens=False):
        return ["".join(self.texts[i] for i in r if not (skip_special_tokens and i == 0)) for r in rows]


def test_a_token_that_holds_the_answer_and_the_stop_ends_the_response_and_keeps_the_answer():
    from replicate.runners.rl.stops import cut_at_stops, ends, set_stops, stop_token_ids
    tok = _Vocab()
    set_stops(tok, ["\n"])
    assert stop_token_ids(tok) == [0, 2, 3]  # EOS, "\n" and the merged "7\n"
    responses = torch.tensor([[3, 4], [1, 2], [1, 4]])  # "7\n" + "A"; "7" + "\n"; "7" + "A" (cap)
    assert ends(tok, responses).tolist() == [True, True, False]
    assert cut_at_stops(tok, tok.batch_decode(responses.tolist())) == ["7", "7", "7A"]


def test_a_stop_string_no_token_holds_is_refused():
    from replicate.errors import UserError
    from replicate.runners.rl.stops import set_stops
    with pytest.raises(UserError, match="no token of this tokenizer holds 'Q:'"):
        set_stops(_Vocab(), ["\n", "Q:"])
