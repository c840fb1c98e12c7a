"""`python -m replicate.specs.docs`: regenerate the registry-driven tables of docs/specs.md.

The prose of docs/specs.md is written by hand; the tables between `<!-- generated:NAME -->` and
`<!-- /generated:NAME -->` are rendered here from the schema (replicate.specs) and the registries (RUNNERS,
ANALYSES, PANELS, TASKS, ADVANTAGES, POLICY_LOSSES), so a new field, analysis, panel, task, algorithm or
runner shows up in the reference when this is rerun. `--check` exits 1 when the file is out of date
(tests/test_docs.py does the same).

What a registry cannot say (what a field means, a task's difficulty level and lm-eval task, a runner's
parameters) lives in the NOTES dicts below; a name without a note renders as MISSING_NOTE, which the tests reject.
"""
from __future__ import annotations

import argparse
import inspect
import re
import sys
import typing
from pathlib import Path

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from replicate import specs
from replicate.algorithms import (ADVANTAGE_INPUTS, ADVANTAGES, KL_KINDS, LOSS_AGG_MODES, LOSS_INPUTS, POLICY_LOSSES,
                                  extra_inputs, hyperparameters)
from replicate.analysis import ANALYSES
from replicate.report.figures import PANELS
from replicate.runners import RUNNERS
from replicate.tasks import TASKS

DOC = Path(__file__).resolve().parents[2] / "docs" / "specs.md"
MISSING_NOTE = "(undocumented: add a note in replicate/specs/docs.py)"

# ---------------------------------------------------------------- notes the registries cannot carry

FIELD_NOTES = {
    "Spec": {
        "id": "The spec's name: `python -m replicate <id>`, the run store folder `runs/<id>/`, `results/<id>/`.",
        "aliases": "Other names `python -m replicate <alias>` accepts.",
        "paper": "The paper's short name (the folder under `experiments/` and `experiments/reported/`).",
        "reproduces": "The paper, figure and what it shows; the text before the first `:` titles the figure.",
        "description": "Free text: what is trained and measured, for the reader.",
        "runner": "The registered runner that produces the runs (see Runners).",
        "runner_params": "Keyword parameters of the runner (see Runners), validated by its typed Params at load; a `scales: {small: {...}}` entry is merged over the rest at that scale.",
        "body": "The run config shared by every scale: the sections of a RunConfig (see below).",
        "scales": "Presets `tiny`, `small`, `paper`, each a partial RunConfig merged over `body`.",
        "default_scale": "The scale run without `--scale`.",
        "variants": "Named arms of a comparison, each overrides merged over the resolved scale; none: one arm `main`.",
        "analyses": "Registered analyses run over the runs; claims may name only the metrics these produce.",
        "panels": "The figure's panels, drawn side by side, left to right.",
        "claims": "The claims judged over seeds (see Claims).",
        "path": "Set by the loader to the spec file; never written in a spec.",
        "tuning_seeds": "Seeds used for any choice of the testbed or a hyperparameter (a pilot, a sweep): never judged. "
                        "Load fails when one of them is also a judged seed at any scale.",
    },
    "RunConfig": {
        "model": "The policy model (section `model`).",
        "task": "The verifiable task and its parameters (section `task`).",
        "warmup": "Supervised warm-up on noisy solution traces before RL (tiny tier; `steps: 0` skips it).",
        "algorithm": "Advantage estimator, policy loss and regularisers (section `algorithm`).",
        "rollout": "Sampling of each RL step (section `rollout`).",
        "train": "PPO updates, optimizer, length of training (section `train`).",
        "eval": "Validation protocol during training (section `eval`).",
        "seeds": "One run per seed (per arm); `--seeds N` takes the first N. Not part of the config hash.",
    },
    "ModelSpec": {
        "kind": "`tiny`: a transformers model built from `config`, with a character tokenizer (no download); "
                "`pretrained`: loaded from `path`.",
        "config": "tiny only: the transformers config (`model_type` and its fields).",
        "path": "pretrained only (required there): a local directory, a `.gguf` file, "
                "`package:<pkg>/<file>` inside an installed package, or a hub id.",
        "gguf_file": "The GGUF file inside a hub repo named by `path`.",
        "dtype": "torch dtype of the weights (`float32`, `bfloat16`, ...).",
        "chat": "pretrained chat models only: wrap every prompt in the tokenizer's chat template (one user turn and the generation prompt).",
        "system": "with `chat`: the text of the system turn (`\"\"`: an empty one, the shortest prompt SmolLM2's "
                  "template allows); unset: the template's default system turn.",
        "autocast": "`bf16`: forward passes (rollout, log-probs, update) run under bfloat16 autocast, CPU or CUDA; "
                    "weights, gradients and optimizer state stay float32, and the LM head, log-probs and entropy "
                    "are computed in float32. `off` (default): float32 throughout.",
        "attention": "transformers' attention implementation during RL: `sdpa` (default; on CPU a flash kernel) or "
                     "`eager` (plain matmuls and softmax: faster on CPU for rows of tens of tokens, as the small "
                     "preset's; `bench small-step`). A tiny model's warm-up runs sdpa either way.",
    },
    "TaskSpec": {
        "name": "A registered task (see Tasks).",
        "params": "Keyword arguments of the task's constructor, checked against it on load (see Tasks).",
    },
    "WarmupSpec": {
        "steps": "Supervised steps on solution traces; 0 means the model is used as loaded.",
        "batch_size": "Traces per warm-up step.",
        "lr": "Warm-up learning rate.",
        "noise": "Probability that each step of a trace is corrupted (a base policy of moderate accuracy "
                 "and real entropy).",
    },
    "AlgorithmSpec": {
        "advantage": "A registered advantage estimator (see Algorithms).",
        "advantage_params": "Its hyperparameters, checked by name and converted to their types on load.",
        "policy_loss": "A registered policy loss (see Algorithms).",
        "policy_loss_params": "Its hyperparameters, checked by name and converted to their types on load.",
        "loss_agg_mode": "How token losses aggregate: one of the modes listed under Algorithms.",
        "entropy_coeff": "Coefficient of the entropy bonus (0: none).",
        "kl_loss_coef": "Coefficient of a KL loss to the reference (initial) policy (0: none).",
        "kl_loss_type": "Estimator of that KL (one of the KL kinds under Algorithms).",
        "kl_in_reward_coef": "Coefficient of a KL penalty folded into the reward (0: none).",
        "kl_in_reward_type": "Estimator of that KL.",
        "critic_lr": "`gae` only: learning rate of the value model the trainer builds.",
        "cliprange_value": "`gae` only: clip of the value update (verl's default 0.5).",
        "prm_lr": "`prime` only: learning rate of the implicit process reward model the trainer builds (a copy of the "
                  "warm-up policy, trained each step on the outcome labels; PRIME's recipe: 2x the policy's).",
        "cov_scope": "Losses that select tokens (Clip-Cov, KL-Cov): pick them per micro-batch (verl) or over "
                     "the whole PPO mini-batch.",
    },
    "RolloutSpec": {
        "prompts_per_step": "Prompts sampled per RL step.",
        "group_size": "Responses per prompt (the group of GRPO-style estimators).",
        "temperature": "Sampling temperature.",
        "max_new_tokens": "Response length limit; an unfinished response is truncated there.",
        "filter_groups": "DAPO dynamic sampling: drop groups whose rewards are all equal.",
        "max_gen_batches": "With `filter_groups`: generate at most this many batches per step (a shortfall is "
                           "logged).",
        "engine": "The rollout engine that samples responses: `ours` (KV cache, each prompt prefilled once per group) "
                  "or `hf` (transformers' `generate()`, a cross-check: the same tokens greedily, other draws at a "
                  "temperature).",
        "stop": "Strings that end a response as EOS does: every token whose text contains one stops it (and is "
                "trained on, like EOS), and the verifier reads the text before the first one. A base model, "
                "prompted with few-shot examples, ends its answer with a newline: `[\"\\n\"]`.",
    },
    "TrainSpec": {
        "steps": "RL steps (`--steps N` overrides).",
        "ppo_mini_batches": "Updates per step: the step's prompts split into this many mini-batches (whole "
                            "groups); must divide `rollout.prompts_per_step`.",
        "ppo_epochs": "Passes over the step's mini-batches.",
        "micro_batches": "Gradient accumulation: micro-batches per mini-batch.",
        "optimizer": "Section `train.optimizer`.",
        "grad_clip": "Gradient norm clip.",
        "checkpoint_every": "Steps between checkpoints (what `--resume` continues from).",
        "probe_prompts": "> 0: log each step's exact entropy change on this many fixed probe prompts "
                         "(`probe_delta_entropy`, read by `cov_dynamics`).",
    },
    "OptimizerSpec": {
        "name": "`adamw` or `sgd`.",
        "lr": "Learning rate (constant).",
        "weight_decay": "Weight decay.",
        "betas": "AdamW betas.",
        "fused": "RL's AdamW (policy, critic, PRM; not the warm-up) runs torch's fused kernel on CPU and CUDA (default true; faster "
                 "than the per-parameter loop torch runs by default on CPU: `bench small-step`; equal up to the last "
                 "bits). "
                 "`false`: torch's default.",
    },
    "EvalSpec": {
        "every": "Steps between validation evaluations (`val_acc` in metrics.jsonl).",
        "n_prompts": "Held-out prompts evaluated.",
        "k": "Samples per prompt; `val_acc` is avg@k.",
        "temperature": "Sampling temperature of the evaluation (0: greedy).",
        "base_temperatures": "The sharpening null: at step 0 the base policy is also validated at each of these "
                             "temperatures (0: greedy), logging `base_acc_<T>` and `base_entropy_<T>` (analysis "
                             "`sharpening`). Empty: not measured.",
    },
    "VariantSpec": {
        "name": "The arm's name: claims name it as `metric@name`; runs are stored per arm.",
        "overrides": "A partial RunConfig deep-merged over the resolved scale config.",
        "runner_params": "Merged over the spec's `runner_params` for this arm (runners that read them).",
        "scales": "Per-scale overrides of this arm (`tiny`, `small`, `paper`), merged after `overrides` at that scale: "
                  "an arm whose hyperparameters differ by scale (Clip-Cov's r at tiny vs paper scale). `<scale>: null`: "
                  "the arm does not run at that scale (fig3's built families at small scale, its real ones at tiny).",
    },
    "PanelSpec": {
        "kind": "A registered panel kind (see Panels).",
        "title": "The panel's title.",
        "arms": "The arms the panel draws (default: every arm), e.g. one panel per model family.",
        "metric": "`kind: metric` only: the logged metric to draw per arm (mean over seeds, band min..max), e.g. "
                  "`grad_norm`, `clipfrac`, `ppo_kl`, `response_length`.",
    },
    "ClaimSpec": {
        "id": "The claim's name in claims.md / claims.json.",
        "statement": "The paper's statement, in words.",
        "source": "Where the paper says it (figure, section, README).",
        "paper_value": "The paper's number (or words when it gives none); shown, never judged.",
        "metric": "`metric` or `metric@arm`: a per-seed metric one of the spec's analyses produces, of one arm; "
                  "`metric@all`: every run of every arm (analyses that record it: law_per_run, shares_per_run, "
                  "early_curve, size_trend); `metric@unit`: one value per warm-up, the runs that share one averaged; "
                  "`metric@seed`: one value per seed, the mean of its units (law_per_run, shares_per_run, "
                  "early_curve): the units of a seed share its data and sampling streams, so a claim over the mean of "
                  "`@all` or `@unit` is refused.",
        "op": "The claim holds when `value op threshold`.",
        "threshold": "The line the measured value must clear, fixed before the run.",
        "threshold_reason": "Why that threshold reads the paper's statement (written before the run).",
        "beats": "The null the claim beats, computed from the same runs (shown in the 'null it beats' column).",
        "over": "`mean`: judge the seeds' mean by its 95% t-interval; `every`: every run must hold.",
        "control_of": "A control row: the named claim's rule (same op, threshold, over) applied to a null's values "
                      "(e.g. a random step); it must come out not replicated, and claims.md counts it apart.",
    },
}

SECTIONS = {  # generated block name -> (schema model, YAML location shown in the heading of the table)
    "fields-spec": specs.Spec,
    "fields-config": specs.RunConfig,
    "fields-model": specs.ModelSpec,
    "fields-task": specs.TaskSpec,
    "fields-warmup": specs.WarmupSpec,
    "fields-algorithm": specs.AlgorithmSpec,
    "fields-rollout": specs.RolloutSpec,
    "fields-train": specs.TrainSpec,
    "fields-optimizer": specs.OptimizerSpec,
    "fields-eval": specs.EvalSpec,
    "fields-variant": specs.VariantSpec,
    "fields-panel": specs.PanelSpec,
    "fields-claim": specs.ClaimSpec,
}

TASK_NOTES = {  # task -> (difficulty level, the lm-eval task that scores it)
    "addition": ("number of digits of the operands (`digits` lists the levels sampled)",
                 "`tiny_addition` (its validation set, written per run by `replicate eval`)"),
    "countdown": ("number of operands (`operands` lists the levels sampled)",
                  "`tiny_countdown` (its validation set, scored by the countdown verifier)"),
    "short_answer": ("number of operands, or of digits when one operand count and several digit counts are asked",
                     "`tiny_short_answer` (its validation set, scored by the task's verifier)"),
    "addition_mix": ("number of digits of the operands (as `addition`)",
                     "`tiny_addition` (the same answers after the last '>')"),
    "scratch_addition": ("number of digits (1-5): a scratchpad is needed only on the hard levels",
                         "none (the preference runner evaluates it per level)"),
    "word_arithmetic": ("number of digits of the first operand (`digits` lists the levels sampled)",
                        "none (its validation set is scored during training, `val_acc`)"),
    "code_expr": ("the operation of the hidden function: 1 x+y, 2 x-y, 3 x*y",
                  "none (scored by running the response in the code sandbox of evaluators.code)"),
    "math": ("the record's `level` field when it is a number, else 0",
             "`math500`, `aime24`, `aime25`, `amc23`, `minerva_math`, `olympiadbench`, `omni_math`"),
}

RUNNER_DOCS = {  # used when the runner function has no docstring
    "lemma_exact": "The softmax lemma checked exactly (float64) on random states over a log grid of step sizes η; "
                   "no training, no model.",
    "lemma_lm": "From the spec's base policy (its body's model, task and warm-up), one rollout batch per seed and "
                "one plain SGD step; measured vs predicted entropy change at every response position, plus a random "
                "step of equal norm as the null.",
    "preference": "DAST (Shen et al. 2025) and its offline baselines, per seed from the warm-up base policy: sample "
                  "responses per training problem, build the arm's pairs (or SFT examples), train with SimPO (or SFT), "
                  "and evaluate greedily per difficulty level before and after. Arms share a seed's warm-up and samples.",
}

ANALYSIS_NOTES = {  # used when the analysis function has no docstring
    "early_share": "Per run: entropy and validation accuracy at the start and end, final/initial entropy, and the "
                   "share of the entropy drop and of the accuracy gain that happens in the first third of training.",
    "lemma_exact": "Per seed and update kind (arbitrary, vanilla PG, natural PG): log-log slope of the median "
                   "absolute and relative error of the first-order prediction against η, and the Pearson r of "
                   "predicted vs exact ΔH at η = 1e-2.",
}

# ---------------------------------------------------------------- rendering helpers


def _doc(obj, fallback: str = "") -> str:
    text = inspect.getdoc(obj) or ""
    text = text.split("\n\n")[0] if text else fallback
    return " ".join(text.split()) or MISSING_NOTE


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _fmt_type(ann) -> str:
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if ann is type(None):
        return "null"
    if ann is typing.Any:
        return "any"
    if origin is typing.Literal:
        return " | ".join(f'"{a}"' for a in args)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " | ".join(_fmt_type(a) for a in args)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(_fmt_type(a) for a in args)}]"
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann.__name__
    return getattr(ann, "__name__", str(ann))


def _fmt_default(value) -> str:
    if value is PydanticUndefined or value is inspect.Parameter.empty:
        return "required"
    if isinstance(value, BaseModel):
        return "(section defaults)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, str):
        from evaluators.math import PROMPT
        if value == PROMPT:
            return "evaluators.math.PROMPT"
        return f'"{value}"' if not value or len(value) <= 40 else f'"{value[:37]}..."'
    return str(value)


def _constraints(field) -> str:
    out = []
    for m in field.metadata:
        for attr, sym in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            if getattr(m, attr, None) is not None:
                out.append(f"{sym} {getattr(m, attr)}")
    return ", ".join(out)


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _code_list(names) -> str:
    return ", ".join(f"`{n}`" for n in names) or "none"


# ---------------------------------------------------------------- the generated blocks


def fields(model: type[BaseModel]) -> str:
    notes = FIELD_NOTES.get(model.__name__, {})
    rows = []
    for name, f in model.model_fields.items():
        rows.append([f"`{name}`", f"`{_fmt_type(f.annotation)}`", f"`{_fmt_default(f.default)}`",
                     _constraints(f) or "", notes.get(name, MISSING_NOTE)])
    return _table(["field", "type", "default", "bounds", "meaning"], rows)


def hparams(fn, inputs) -> list[str]:
    hints, sig = typing.get_type_hints(fn), inspect.signature(fn).parameters
    return [f"`{name}: {_fmt_type(hints.get(name, typing.Any))} = {_fmt_default(sig[name].default)}`"
            for name in hyperparameters(fn, inputs)]


def advantages() -> str:
    rows = []
    for name, fn in ADVANTAGES.items():
        try:
            specs.AlgorithmSpec(advantage=name)
            usable = "yes"
        except ValueError as exc:
            usable = "no: " + str(exc).split("Value error, ")[-1].split(";")[0].split("\n")[0]
        needs = ", ".join(f"`{x}`" for x in extra_inputs(name))
        rows.append([f"`{name}`", "<br>".join(hparams(fn, ADVANTAGE_INPUTS)) or "none", needs or "none", usable,
                     _doc(fn)])
    return _table(["advantage", "hyperparameters (`advantage_params`)", "extra tensors it needs", "in a spec",
                   "what it computes"], rows)


def policy_losses() -> str:
    rows = [[f"`{name}`", "<br>".join(hparams(fn, LOSS_INPUTS)) or "none",
             "yes" if getattr(fn, "select", None) else "no", _doc(fn)]
            for name, fn in POLICY_LOSSES.items()]
    table = _table(["policy loss", "hyperparameters (`policy_loss_params`)", "`cov_scope` applies",
                    "what it computes"], rows)
    return (table + f"\n\n`loss_agg_mode`: {_code_list(LOSS_AGG_MODES)}.\n"
            f"KL kinds (`kl_loss_type`, `kl_in_reward_type`): {_code_list(KL_KINDS)}.")


def analyses() -> str:
    rows = [[f"`{name}`", _doc(a.fn, ANALYSIS_NOTES.get(name, "")), _code_list(a.metrics)]
            for name, a in ANALYSES.items()]
    return _table(["analysis", "what it measures", "per-seed metrics (what claims may name)"], rows)


def panels() -> str:
    return _table(["panel kind", "what it draws"], [[f"`{k}`", _doc(fn)] for k, fn in PANELS.items()])


def tasks() -> str:
    rows = []
    for name, cls in TASKS.items():
        sig, hints = inspect.signature(cls.__init__).parameters, typing.get_type_hints(cls.__init__)
        params = [f"`{p}: {_fmt_type(hints.get(p, typing.Any))} = {_fmt_default(v.default)}`"
                  for p, v in sig.items() if p != "self"]
        level, lmeval = TASK_NOTES.get(name, (MISSING_NOTE, MISSING_NOTE))
        module_doc = _doc(sys.modules[cls.__module__])
        rows.append([f"`{name}`", module_doc, "<br>".join(params), level, lmeval])
    return _table(["task", "what it is", "params", "difficulty level", "lm-eval task that scores it"], rows)


def runner_params(name: str) -> dict[str, tuple[str, str]]:
    """{parameter: (default, meaning)} from the runner's typed Params model (the one the spec loader validates)."""
    out = {}
    for field, info in RUNNERS[name].params.model_fields.items():
        default = "required" if info.default is PydanticUndefined else _fmt_default(info.default)
        out[field] = (default, info.description or MISSING_NOTE)
    return out


def runners() -> str:
    rows = []
    for name, r in RUNNERS.items():
        cells = [f"`{p} = {d}`: {note}" for p, (d, note) in runner_params(name).items()]
        rows.append([f"`{name}`", "yes" if r.trains else "no", _doc(r.fn, RUNNER_DOCS.get(name, "")),
                     "<br>".join(cells) or "none"])
    return _table(["runner", "trains (uses `body`/`scales`)", "what it does", "`runner_params`"], rows)


GENERATED = {**{name: (lambda m=m: fields(m)) for name, m in SECTIONS.items()},
             "runners": runners, "analyses": analyses, "panels": panels, "tasks": tasks,
             "advantages": advantages, "policy_losses": policy_losses}

BLOCK = re.compile(r"(<!-- generated:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /generated:(?P=name) -->)", re.S)


def regenerate(text: str) -> str:
    """text with every generated block rewritten; a block the generator does not know is an error."""
    def sub(m):
        name = m.group("name")
        if name not in GENERATED:
            raise ValueError(f"docs: unknown generated block {name!r}; known: {', '.join(GENERATED)}")
        return m.group(1) + GENERATED[name]() + "\n" + m.group(4)
    out = BLOCK.sub(sub, text)
    missing = [n for n in GENERATED if f"<!-- generated:{n} -->" not in out]
    if missing:
        raise ValueError(f"docs: {DOC} lacks the generated block(s) {', '.join(missing)}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m replicate.specs.docs", description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if docs/specs.md is out of date; write nothing")
    ap.add_argument("--file", type=Path, default=DOC)
    args = ap.parse_args(argv)
    text = args.file.read_text()
    new = regenerate(text)
    if args.check:
        if new != text:
            print(f"{args.file} is out of date: run python -m replicate.specs.docs")
            return 1
        return 0
    if new != text:
        args.file.write_text(new)
        print(f"rewrote the generated sections of {args.file}")
    else:
        print(f"{args.file} is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
