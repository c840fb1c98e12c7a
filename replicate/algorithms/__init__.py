"""The algorithm layer: advantage estimators, policy, value, covariance and preference terms as pure tensor
functions, registered by name."""
from .advantages import ADVANTAGE_INPUTS, ADVANTAGES, extra_inputs, register_advantage, token_rewards
from .aggregation import LOSS_AGG_MODES, agg_loss, masked_mean, masked_whiten
from .covariance import (TOP_PERCENTS, covariance_by_accuracy, permuted_top_fraction_means, token_covariance,
                         top_fraction_means)
from .entropy import entropy_from_logits, logprobs_from_logits, predicted_entropy_change
from .kl import KL_KINDS, kl_penalty
from .policy_losses import LOSS_INPUTS, POLICY_LOSSES, register_policy_loss
from .preference import PREFERENCE_LOSSES, register_preference_loss, sequence_avg_logp
from .prm import implicit_prm_loss, implicit_rewards, label_accuracy
from .value import value_loss

__all__ = ["ADVANTAGE_INPUTS", "LOSS_INPUTS", "extra_inputs", "hyperparameters", "ADVANTAGES", "POLICY_LOSSES", "PREFERENCE_LOSSES", "LOSS_AGG_MODES", "KL_KINDS", "agg_loss",
           "covariance_by_accuracy", "implicit_prm_loss", "implicit_rewards", "label_accuracy", "entropy_from_logits", "kl_penalty", "logprobs_from_logits",
           "predicted_entropy_change", "masked_mean", "masked_whiten", "register_advantage", "register_policy_loss",
           "register_preference_loss", "sequence_avg_logp", "token_covariance", "token_rewards", "top_fraction_means",
           "permuted_top_fraction_means", "TOP_PERCENTS", "value_loss"]


def hyperparameters(fn, inputs) -> list[str]:
    """The parameters of an estimator or loss that a spec may set: those with a default, not among `inputs` (what
    the trainer passes every function of its kind)."""
    import inspect
    return [p for p, v in inspect.signature(fn).parameters.items()
            if p not in inputs and v.default is not inspect.Parameter.empty]
