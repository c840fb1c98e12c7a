"""The algorithm layer: advantage estimators, policy losses and preference losses as pure tensor functions, by name."""
from .advantages import ADVANTAGES, register_advantage
from .aggregation import LOSS_AGG_MODES, agg_loss, masked_mean, masked_whiten
from .entropy import entropy_from_logits, logprobs_from_logits, predicted_entropy_change
from .kl import KL_KINDS, kl_penalty
from .policy_losses import POLICY_LOSSES, register_policy_loss, token_covariance
from .preference import PREFERENCE_LOSSES, register_preference_loss, sequence_avg_logp

__all__ = ["ADVANTAGES", "POLICY_LOSSES", "PREFERENCE_LOSSES", "LOSS_AGG_MODES", "KL_KINDS", "agg_loss", "entropy_from_logits",
           "kl_penalty", "logprobs_from_logits", "predicted_entropy_change", "masked_mean", "masked_whiten", "register_advantage",
           "register_policy_loss", "register_preference_loss", "sequence_avg_logp", "token_covariance"]
