"""What ends a response: EOS, and the tokens of rollout.stop's strings (a base model ends its answer with a
newline). A stop token is kept under the mask, as EOS is, so RL trains the model to stop; the verifier reads the
text before the first stop string."""
from __future__ import annotations

import torch

from replicate.errors import UserError


def set_stops(tokenizer, stop=()) -> None:
    """Make the strings in `stop` end a response as EOS does: every vocabulary token whose text contains one is a
    stop token (tokenizer.stop_ids, EOS first), and a decoded response is cut before the first stop string
    (tokenizer.stop_strings). A string that no single token holds could never end generation: refused."""
    ids = [tokenizer.eos_token_id]
    if stop:
        texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
        missing = [s for s in stop if not any(s in t for t in texts)]
        if missing:
            raise UserError(f"rollout.stop: no token of this tokenizer holds {missing[0]!r}, so it could never end a "
                            f"response; use a string one token holds (a newline: \"\\n\")")
        ids += [i for i, t in enumerate(texts) if i != tokenizer.eos_token_id and any(s in t for s in stop)]
    tokenizer.stop_ids, tokenizer.stop_strings = ids, list(stop)


def stop_token_ids(tokenizer) -> list[int]:
    """The token ids that end a response: EOS, and the stop tokens set_stops found."""
    return getattr(tokenizer, "stop_ids", [tokenizer.eos_token_id])


def ends(tokenizer, responses: torch.Tensor) -> torch.Tensor:
    """[B] bool: which responses ended (with EOS or a stop token) rather than running into the length cap."""
    return torch.isin(responses, torch.tensor(stop_token_ids(tokenizer), device=responses.device)).any(dim=1)


def cut_at_stops(tokenizer, texts: list[str]) -> list[str]:
    """Each decoded response up to (not including) its first stop string, the text the verifier reads."""
    for s in getattr(tokenizer, "stop_strings", ()):
        texts = [t.split(s, 1)[0] for t in texts]
    return texts
