"""Per-seed values of an analysis: {metric: {variant: [one value per seed]}}."""


def record(per_seed: dict, metric: str, variant: str, value) -> None:
    per_seed.setdefault(metric, {}).setdefault(variant, []).append(value)
