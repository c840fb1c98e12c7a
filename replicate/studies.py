"""Experiments that are not RL runs: the lemma checks. Their points go to the run store like metrics do."""
from __future__ import annotations

import hashlib
import json

import numpy as np

from .analysis.lemma import lemma_points
from .store import Run


def _run_dir(root, spec, scale, seed, payload) -> Run:
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return Run(root / spec.id / f"{scale}-{spec.study}-s{seed}-{digest}")


def run_study(spec, scale, configs, seeds, root, force=False, log=print) -> dict:
    """{"main": {seed: points}}; a finished study with the same parameters is reused."""
    params = spec.study_params
    out = {}
    for seed in seeds:
        config = configs["main"].model_dump() if configs else None
        run = _run_dir(root, spec, scale, seed, {"params": params, "config": config})
        if run.done and not force:
            out[seed] = run.metrics()
            continue
        run.path.mkdir(parents=True, exist_ok=True)
        run.reset()
        run.config_file.write_text(json.dumps({"seed": seed, "study": spec.study, "params": params,
                                               "config": config}, indent=2))
        if spec.study == "lemma_exact":
            etas = np.logspace(np.log10(params.get("eta_min", 1e-4)), np.log10(params.get("eta_max", 1e-1)),
                               params.get("n_etas", 7))
            rows = lemma_points(seed, params.get("vocab_sizes", [4, 16, 256, 4096, 50000]),
                                params.get("states_per_vocab", 16), etas, params.get("logit_scale", 2.0))
        else:
            from .trainer import logit_step_probe
            rows = logit_step_probe(configs["main"], seed, root, lr=params.get("lr", 1e-3), log=log)
        for i, row in enumerate(rows):
            run.append_metrics({"step": i, **row})
        run.finish()
        out[seed] = run.metrics()
    return {"main": out}
