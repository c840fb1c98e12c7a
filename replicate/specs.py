"""Experiment specs: YAML files validated on load, with scale presets merged over a shared body.

Errors name the file, the line, the field and the fix, in one line (raised as UserError).
"""
from __future__ import annotations

import copy
import inspect
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from .algorithms import ADVANTAGES, KL_KINDS, LOSS_AGG_MODES, POLICY_LOSSES
from .errors import UserError
from .paths import digest, experiments_dir
from .tasks import TASKS

SCALES = ("tiny", "small", "paper")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSpec(Strict):
    kind: Literal["tiny", "pretrained"]
    config: dict[str, Any] = {}
    path: str | None = None
    gguf_file: str | None = None
    dtype: str = "float32"  # parameters' dtype, tiny and pretrained alike
    chat: bool = False  # prompt a pretrained chat model through its tokenizer's chat template

    @field_validator("dtype")
    @classmethod
    def _dtype(cls, v):
        if v not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"unknown model dtype {v!r}; choose float32, bfloat16 or float16")
        return v

    @model_validator(mode="after")
    def _path_for_pretrained(self):
        if self.kind == "pretrained" and not self.path:
            raise ValueError("a pretrained model needs `path` (a local dir, a .gguf file or a hub id)")
        if self.kind == "tiny" and self.chat:
            raise ValueError("`chat` needs a pretrained model with a chat template; remove it for a tiny model")
        return self


class TaskSpec(Strict):
    name: str
    params: dict[str, Any] = {}

    @field_validator("name")
    @classmethod
    def _known(cls, v):
        if v not in TASKS:
            raise ValueError(f"unknown task {v!r}; choose one of {', '.join(sorted(TASKS))}")
        return v

    @model_validator(mode="after")
    def _params(self):
        sig = inspect.signature(TASKS[self.name].__init__).parameters
        for key in self.params:
            if key not in sig:
                raise ValueError(f"task {self.name!r} takes no parameter {key!r}; it takes: "
                                 f"{', '.join(p for p in sig if p != 'self')}")
        if self.name == "math" and "train" not in self.params:
            raise ValueError("task 'math' needs params.train (a local .jsonl or a hub dataset id)")
        return self


class WarmupSpec(Strict):
    steps: int = Field(0, ge=0)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(3e-3, gt=0)
    noise: float = Field(0.0, ge=0, le=1)


TENSOR_ARGS = {"token_level_rewards", "response_mask", "index", "old_log_prob", "log_prob", "advantages",
               "loss_agg_mode", "generator", "values", "rm_log_prob", "ref_log_prob", "selected"}


def typed_hparams(kind: str, fn, params: dict) -> dict:
    """Check hyperparameter names against fn's signature and convert values to its annotations.

    YAML 1.1 reads `2e-4` as a string; converting it here makes it a float (or a one-line error) before
    anything trains.
    """
    sig, hints = inspect.signature(fn).parameters, typing.get_type_hints(fn)
    allowed = [p for p in sig if p not in TENSOR_ARGS]
    out = {}
    for key, value in params.items():
        if key not in allowed:
            raise ValueError(f"{kind} {fn.__name__!r} takes no hyperparameter {key!r}; it takes: {', '.join(allowed) or 'none'}")
        try:
            out[key] = TypeAdapter(hints[key]).validate_python(value) if key in hints else value
        except ValidationError:
            want = getattr(hints[key], "__name__", str(hints[key]))
            raise ValueError(f"{kind} {fn.__name__!r}: {key} must be {want}, got {value!r}") from None
    return out


class AlgorithmSpec(Strict):
    advantage: str = "grpo"
    advantage_params: dict[str, Any] = {}
    policy_loss: str = "vanilla"
    policy_loss_params: dict[str, Any] = {}
    loss_agg_mode: str = "token-mean"
    entropy_coeff: float = 0.0
    kl_loss_coef: float = Field(0.0, ge=0)
    kl_loss_type: str = "low_var_kl"
    kl_in_reward_coef: float = Field(0.0, ge=0)
    kl_in_reward_type: str = "kl"
    critic_lr: float = Field(1e-3, gt=0)        # gae only: the value model's learning rate
    cliprange_value: float = Field(0.5, gt=0)   # gae only: clip of the value update, as verl's default
    prm_lr: float = Field(1e-3, gt=0)           # prime only: the implicit process reward model's learning rate
    # For losses that select tokens (Clip-Cov, KL-Cov): select per micro-batch (verl) or over the mini-batch.
    cov_scope: Literal["microbatch", "batch"] = "microbatch"

    @model_validator(mode="after")
    def _registered(self):
        if self.advantage not in ADVANTAGES:
            raise ValueError(f"unknown advantage estimator {self.advantage!r}; choose one of {', '.join(ADVANTAGES)}")
        if self.policy_loss not in POLICY_LOSSES:
            raise ValueError(f"unknown policy loss {self.policy_loss!r}; choose one of {', '.join(POLICY_LOSSES)}")
        self.advantage_params = typed_hparams("advantage", ADVANTAGES[self.advantage], self.advantage_params)
        if self.advantage == "prime" and not self.advantage_params.get("beta", 0.05) > 0:
            raise ValueError(f"advantage 'prime': beta (the implicit reward's scale) must be > 0, got "
                             f"{self.advantage_params['beta']!r}; PRIME's recipe uses 0.05")
        self.policy_loss_params = typed_hparams("policy loss", POLICY_LOSSES[self.policy_loss],
                                                self.policy_loss_params)
        if self.loss_agg_mode not in LOSS_AGG_MODES:
            raise ValueError(f"unknown loss_agg_mode {self.loss_agg_mode!r}; choose one of {', '.join(LOSS_AGG_MODES)}")
        for kind in (self.kl_loss_type, self.kl_in_reward_type):
            if kind not in KL_KINDS:
                raise ValueError(f"unknown KL kind {kind!r}; choose one of {', '.join(KL_KINDS)}")
        return self


class RolloutSpec(Strict):
    prompts_per_step: int = Field(16, ge=1)
    group_size: int = Field(8, ge=1)
    temperature: float = Field(1.0, gt=0)
    max_new_tokens: int = Field(24, ge=1)
    filter_groups: bool = False           # DAPO dynamic sampling: drop groups whose scores are all equal
    max_gen_batches: int = Field(10, ge=1)  # ... generating up to this many batches per step


class OptimizerSpec(Strict):
    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)


class TrainSpec(Strict):
    steps: int = Field(100, ge=1)
    ppo_mini_batches: int = Field(1, ge=1)
    ppo_epochs: int = Field(1, ge=1)
    micro_batches: int = Field(1, ge=1)
    optimizer: OptimizerSpec = OptimizerSpec()
    grad_clip: float = Field(1.0, gt=0)
    checkpoint_every: int = Field(25, ge=1)
    probe_prompts: int = Field(0, ge=0)  # >0: log the exact entropy change of each step on fixed probe prompts


class EvalSpec(Strict):
    every: int = Field(10, ge=1)
    n_prompts: int = Field(256, ge=1)
    k: int = Field(1, ge=1)
    temperature: float = Field(0.0, ge=0)


class RunConfig(Strict):
    """Everything that determines one training run except the seed."""
    model: ModelSpec
    task: TaskSpec
    warmup: WarmupSpec = WarmupSpec()
    algorithm: AlgorithmSpec = AlgorithmSpec()
    rollout: RolloutSpec = RolloutSpec()
    train: TrainSpec = TrainSpec()
    eval: EvalSpec = EvalSpec()
    seeds: list[int] = [0, 1, 2]

    @model_validator(mode="after")
    def _divisible(self):
        if self.rollout.prompts_per_step % self.train.ppo_mini_batches:
            raise ValueError(f"train.ppo_mini_batches ({self.train.ppo_mini_batches}) must divide "
                             f"rollout.prompts_per_step ({self.rollout.prompts_per_step})")
        if self.algorithm.policy_loss == "kl_cov" and self.train.ppo_mini_batches * self.train.ppo_epochs == 1:
            raise ValueError("KL-Cov needs several updates per rollout (at ratio 1 its |log π - log π_old| penalty "
                             "has no gradient): set train.ppo_mini_batches (or ppo_epochs) above 1")
        return self

    def digest(self) -> str:
        return digest(self.model_dump(exclude={"seeds"}))


class ClaimError(ValueError):
    """A claim that cannot be measured; `index` locates it in the spec's claims list (for the line number)."""

    def __init__(self, index: int, msg: str):
        super().__init__(msg)
        self.index = index


class ClaimSpec(Strict):
    id: str
    statement: str
    source: str
    paper_value: float | str | None = None
    metric: str
    op: Literal[">=", "<=", ">", "<"]
    threshold: float
    threshold_reason: str = ""
    beats: str = ""                       # the null the claim beats, computed from the same runs
    over: Literal["mean", "every"] = "mean"  # judge the seeds' mean (t-interval) or every run


class PanelSpec(Strict):
    kind: str
    title: str = ""
    arms: list[str] = []  # the arms this panel draws (default: every arm), e.g. one panel per model family
    metric: str = ""      # kind: metric: the logged metric to draw (grad_norm, clipfrac, ...)

    @model_validator(mode="after")
    def _metric_named(self):
        if (self.kind == "metric") != bool(self.metric):
            raise ValueError("a `kind: metric` panel names its `metric:` (e.g. {kind: metric, metric: grad_norm}); "
                             "other kinds take none")
        return self

    @field_validator("kind")
    @classmethod
    def _known(cls, v):
        from .figures import PANELS
        if v not in PANELS:
            raise ValueError(f"unknown panel kind {v!r}; choose one of {', '.join(PANELS)}")
        return v


class VariantSpec(Strict):
    """A named arm of a comparison: overrides merged over the resolved scale config."""
    name: str
    overrides: dict[str, Any] = {}
    runner_params: dict[str, Any] = {}  # merged over the spec's runner_params for this arm (runners that read them)
    scales: dict[str, dict[str, Any]] = {}  # per-scale overrides of this arm, merged after `overrides`

    @field_validator("scales")
    @classmethod
    def _scale_names(cls, v):
        for name in v:
            if name not in SCALES:
                raise ValueError(f"unknown scale {name!r}; scales are {', '.join(SCALES)}")
        return v


class Spec(Strict):
    id: str
    aliases: list[str] = []
    paper: str
    reproduces: str
    description: str = ""
    runner: str = "rl"
    runner_params: dict[str, Any] = {}

    @field_validator("runner")
    @classmethod
    def _known_runner(cls, v):
        from .runners import RUNNERS
        if v not in RUNNERS:
            raise ValueError(f"unknown runner {v!r}; choose one of {', '.join(RUNNERS)}")
        return v

    body: dict[str, Any] = {}
    scales: dict[str, dict[str, Any]] = {}
    default_scale: str = "tiny"
    variants: list[VariantSpec] = []
    analyses: list[str] = []

    @field_validator("analyses")
    @classmethod
    def _known_analyses(cls, v):
        from .analysis import ANALYSES
        for name in v:
            if name not in ANALYSES:
                raise ValueError(f"unknown analysis {name!r}; choose one of {', '.join(ANALYSES)}")
        return v

    panels: list[PanelSpec] = []
    claims: list[ClaimSpec] = []
    path: str = ""

    @model_validator(mode="after")
    def _claims_measured(self):
        """Every claim names a metric one of the spec's analyses produces, and an arm the spec has."""
        from .analysis import ANALYSES
        produced = {m for name in self.analyses for m in ANALYSES[name].metrics}
        arms = [v.name for v in self.variants] or ["main"]
        for panel in self.panels:
            if set(panel.arms) - set(arms):
                raise ValueError(f"panel {panel.kind!r} names arms {sorted(set(panel.arms) - set(arms))} the spec does "
                                 f"not have; it has {', '.join(arms)}")
        arms = arms + ["all"] * bool(self.variants)  # `metric@all`: every run of every arm (analyses that record it)
        for i, claim in enumerate(self.claims):
            metric, _, arm = claim.metric.partition("@")
            if metric not in produced:
                raise ClaimError(i, f"claim {claim.id!r}: no analysis of this spec produces {metric!r}; add the "
                                    f"analysis that does to `analyses:` or fix the name (produced: {', '.join(sorted(produced)) or 'none'})")
            if (arm or ("main" if not self.variants else "")) not in arms:
                raise ClaimError(i, f"claim {claim.id!r}: name the arm as {metric}@<arm>, one of {', '.join(arms)}")
        return self

    @field_validator("scales")
    @classmethod
    def _scale_names(cls, v):
        for name in v:
            if name not in SCALES:
                raise ValueError(f"unknown scale {name!r}; scales are {', '.join(SCALES)}")
        return v

    def resolve(self, scale: str | None = None) -> RunConfig:
        scale = scale or self.default_scale
        if scale not in self.scales and scale != self.default_scale:
            raise UserError(f"{self.id} has no scale {scale!r}; it has {', '.join(self.scales) or self.default_scale}")
        return RunConfig.model_validate(merge_scale(self.body, self.scales.get(scale, {})))

    def variant_configs(self, scale: str | None = None) -> dict[str, RunConfig]:
        """One config per comparison arm; a spec without variants has one arm named 'main'."""
        base = self.resolve(scale)
        if not self.variants:
            return {"main": base}
        scale = scale or self.default_scale
        return {v.name: RunConfig.model_validate(deep_merge(deep_merge(base.model_dump(), v.overrides),
                                                            v.scales.get(scale, {})))
                for v in self.variants}


def merge_scale(body: dict, override: dict) -> dict:
    """Merge a scale preset over the body; a preset naming another task or model kind replaces that section."""
    merged = deep_merge(body, override)
    for section, key in (("task", "name"), ("model", "kind")):
        new = (override.get(section) or {}).get(key)
        if new is not None and new != (body.get(section) or {}).get(key):
            merged[section] = copy.deepcopy(override[section])
    return merged


def deep_merge(base: dict, override: dict) -> dict:
    """`override` merged into a copy of `base`, mapping by mapping; other values replace.

    `key: null` in the override deletes the key from the merged mapping (so a scale preset, a variant, a
    `base:` child or `--set key=null` can drop an inherited key; a schema field then takes its default).
    """
    out = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_overrides(items: list[str] | None) -> dict:
    """`--set a.b.c=value` strings as one nested mapping; values are YAML scalars or flow (`4`, `2e-4`, `[1, 2]`)."""
    out: dict = {}
    for item in items or []:
        key, eq, text = item.partition("=")
        parts = key.strip().split(".")
        if not eq or not all(parts):
            raise UserError(f"--set {item!r}: write --set path.to.key=value, e.g. --set rollout.group_size=4")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            raise UserError(f"--set {key}: {text!r} is not a YAML value; quote it or fix the syntax") from None
        node = out
        for part in parts[:-1]:
            if not isinstance(node.setdefault(part, {}), dict):
                raise UserError(f"--set {key}: {'.'.join(parts[:-1])} is set to a value and used as a mapping")
            node = node[part]
        node[parts[-1]] = value
    return out


def apply_overrides(config: RunConfig, overrides: dict, what: str = "--set") -> RunConfig:
    """config with `overrides` merged in and validated again; a bad key or value is a one-line UserError."""
    if not overrides:
        return config
    try:
        return RunConfig.model_validate(deep_merge(config.model_dump(), overrides))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(config)"
        msg = err["msg"].removeprefix("Value error, ")
        if msg == "Extra inputs are not permitted":
            msg = f"unknown key {err['loc'][-1]!r}; check its spelling against the spec's body"
        raise UserError(f"{what} {where}: {msg}") from None


def _line_of(node, loc: tuple) -> int | None:
    """The 1-based line of the YAML node at path `loc`, or of its deepest existing ancestor."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if k.value == key), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            nxt = node.value[key]
        else:
            nxt = None
        if nxt is None:
            break
        node, line = nxt, nxt.start_mark.line + 1
    return line


def _fmt_error(path: Path, root, loc: tuple, msg: str) -> str:
    msg = msg.removeprefix("Value error, ")
    if msg == "Extra inputs are not permitted":
        msg = f"unknown field {loc[-1]!r}; remove it or check its spelling"
    elif msg == "Field required":
        msg = "required field is missing; add it"
    line = _line_of(root, loc)
    where = ".".join(str(p) for p in loc) or "(top level)"
    return f"{path}:{line}: {where}: {msg}"


def _read_yaml(path: Path) -> tuple:
    """(data, node tree) of a YAML file; a malformed or non-text file is a one-line error at its line."""
    if not path.is_file():
        raise UserError(f"spec file {path} does not exist; check the path or run `python -m replicate list`"
                        if not path.exists() else f"{path} is not a file; pass a spec .yaml file")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a text file (a YAML spec is text); pass a spec .yaml file") from None
    try:
        return yaml.safe_load(text), yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"{mark.line + 1}" if mark else "?"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{path}:{line}: malformed YAML: {problem}; fix the syntax there") from None


def _with_bases(data: dict, path: Path, root, chain: list[tuple[str, Path]], sources: list) -> dict:
    """data with its `base:` chain merged in (body and scales, any depth, nearest spec last); `sources` gets each
    base file and node tree, nearest first, to find the line of an inherited field."""
    if "base" not in data:
        return data
    name = str(data.pop("base"))
    base_file = all_specs(path.parent).get(name) or all_specs().get(name)
    line = _line_of(root, ("base",))
    if base_file is None:
        raise UserError(f"{path}:{line}: base spec {name!r} not found; name a spec id in experiments/")
    if any(base_file.resolve() == seen.resolve() for _, seen in chain):
        names = " -> ".join([*(n for n, _ in chain), name])
        raise UserError(f"{path}:{line}: base chain {names} is a cycle; point one of them at a spec outside it")
    base, base_root = _read_yaml(base_file)
    if not isinstance(base, dict):
        raise UserError(f"{base_file}:1: base spec {name!r} is not a YAML mapping; fix it or name another base")
    sources.append((base_file, base_root))
    base = _with_bases(base, base_file, base_root, [*chain, (name, base_file)], sources)
    data["body"] = deep_merge(base.get("body", {}), data.get("body", {}))
    data["scales"] = deep_merge(base.get("scales", {}), data.get("scales", {}))
    return data


def _where(path: Path, root, sources: list, loc: tuple, msg: str) -> str:
    """_fmt_error at the file that holds loc: the spec itself, or the base spec a body or scales field came from."""
    if loc[:1] in (("body",), ("scales",)) and not _node_at(root, loc):
        for base_file, base_root in sources:
            if _node_at(base_root, loc):
                return _fmt_error(base_file, base_root, loc, msg) + f" (inherited by {path} through `base:`)"
    return _fmt_error(path, root, loc, msg)


def _node_at(node, loc: tuple) -> bool:
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == key), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            return False
        if node is None:
            return False
    return True


def load_spec(path: str | Path) -> Spec:
    """Load and validate a spec file, including every scale and variant it declares."""
    path = Path(path)
    data, root = _read_yaml(path)
    if not isinstance(data, dict):
        raise UserError(f"{path}:1: a spec must be a YAML mapping with id, paper, body, ...; see experiments/fig1.yaml")
    sources: list = []
    data = _with_bases(data, path, root, [(str(data.get("id", path.stem)), path)], sources)
    try:
        spec = Spec.model_validate({**data, "path": str(path)})
    except ValidationError as exc:
        err = exc.errors()[0]
        origin = err.get("ctx", {}).get("error")
        loc = ("claims", origin.index, "metric") if isinstance(origin, ClaimError) else tuple(err["loc"])
        raise UserError(_where(path, root, sources, loc, err["msg"])) from None
    if not spec.panels:  # the figure needs one, and this is known before anything trains
        raise UserError(f"{path}:{_line_of(root, ('panels',))}: panels: none given; add at least one, e.g. "
                        "`panels: [{kind: curves}]`")
    from .runners import RUNNERS
    for scale in [spec.default_scale, *spec.scales] if RUNNERS[spec.runner].trains else []:
        _check_scale(spec, scale, path, root, sources)
    return spec


def _check_scale(spec: Spec, scale: str, path: Path, root, sources: list) -> None:
    """Every arm's config at `scale` validates; an error points at the override that caused it."""
    override = spec.scales.get(scale, {})
    try:
        base = spec.resolve(scale)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        in_override = _has_path(override, loc) or (loc[:1] == ("task",) and "task" in override)
        full = ("scales", scale, *loc) if in_override else ("body", *loc)
        raise UserError(_where(path, root, sources, full, err["msg"]) + ("" if in_override else f" (scale {scale})")) from None
    for i, v in enumerate(spec.variants):
        try:
            RunConfig.model_validate(deep_merge(deep_merge(base.model_dump(), v.overrides), v.scales.get(scale, {})))
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = tuple(err["loc"])
            full = ("variants", i, "scales", scale, *loc) if _has_path(v.scales.get(scale, {}), loc) else \
                ("variants", i, "overrides", *loc) if _has_path(v.overrides, loc) else ("variants", i)
            raise UserError(_fmt_error(path, root, full, err["msg"]) + f" (arm {v.name}, scale {scale})") from None


def _has_path(d, loc) -> bool:
    for key in loc:
        if not isinstance(d, dict) or key not in d:
            return False
        d = d[key]
    return True


def all_specs(directory: Path | None = None) -> dict[str, Path]:
    """Map every spec id and alias to its file, searching sub-folders (not `reported/`, which holds numbers, nor
    `accelerate/`, which holds `accelerate launch --config_file` configs)."""
    directory = directory or experiments_dir()
    out = {}
    for file in sorted(directory.rglob("*.yaml")):
        if {"reported", "accelerate"} & set(file.relative_to(directory).parts):
            continue
        try:
            data = yaml.safe_load(file.read_text()) or {}
        except yaml.YAMLError:
            data = {}
        names = [data.get("id", file.stem), *data.get("aliases", [])] if isinstance(data, dict) else [file.stem]
        for name in names:
            out[str(name)] = file
    return out


def find_spec(name: str) -> Spec:
    if name.endswith((".yaml", ".yml")) or "/" in name:
        return load_spec(name)
    specs = all_specs()
    if name not in specs:
        known = ", ".join(sorted(specs)) or "none"
        raise UserError(f"unknown spec {name!r}; known ids and aliases: {known} (or pass a path to a .yaml file)")
    return load_spec(specs[name])
