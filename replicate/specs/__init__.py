"""Experiment specs: YAML files validated on load, with scale presets merged over a shared body (the run
config itself is replicate.config).

Errors name the file, the line, the field and the fix, in one line (raised as UserError).
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ValidationError, field_validator, model_validator

from replicate.config import (  # noqa: F401
    SCALES,
    AlgorithmSpec,
    EvalSpec,
    ModelSpec,
    OptimizerSpec,
    RolloutSpec,
    RunConfig,
    Strict,
    TaskSpec,
    TrainSpec,
    WarmupSpec,
    apply_overrides,
    deep_merge,
    known,
    merge_scale,
    parse_overrides,
    typed_hparams,
)
from replicate.errors import UserError
from replicate.paths import experiments_dir


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
    control_of: str = ""  # a control row: the claim `control_of` judged on a null's values; it must not replicate


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
        from replicate.report.figures import PANELS
        return known(v, PANELS, "panel kind")


def known_scales(presets: dict) -> dict:
    """A `scales:` mapping whose every key is one of SCALES, else the loader's error at that key."""
    for name in presets:
        known(name, SCALES, "scale")
    return presets


class VariantSpec(Strict):
    """A named arm of a comparison: overrides merged over the resolved scale config."""
    name: str
    overrides: dict[str, Any] = {}
    runner_params: dict[str, Any] = {}  # merged over the spec's runner_params for this arm (runners that read them)
    # per-scale overrides of this arm, merged after `overrides`; `<scale>: null`: the arm does not run at that scale
    # (fig3's tiny families have no pretrained twin at small scale; its real families have no tiny one)
    scales: dict[str, dict[str, Any] | None] = {}

    @field_validator("scales")
    @classmethod
    def _scale_names(cls, v):
        return known_scales(v)

    def runs_at(self, scale: str) -> bool:
        return not (scale in self.scales and self.scales[scale] is None)


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
        from replicate.runners import RUNNERS
        return known(v, RUNNERS, "runner")

    body: dict[str, Any] = {}
    scales: dict[str, dict[str, Any]] = {}
    default_scale: str = "tiny"
    variants: list[VariantSpec] = []
    analyses: list[str] = []

    @field_validator("analyses")
    @classmethod
    def _known_analyses(cls, v):
        from replicate.analysis import ANALYSES
        for name in v:
            known(name, ANALYSES, "analysis")
        return v

    panels: list[PanelSpec] = []
    claims: list[ClaimSpec] = []
    tuning_seeds: list[int] = []  # seeds used for any choice of testbed or hyperparameter: never judged
    path: str = ""

    @model_validator(mode="after")
    def _claims_measured(self):
        """Every claim names a metric one of the spec's analyses produces, and an arm the spec has."""
        from replicate.analysis import ANALYSES, PSEUDO_ARMS
        produced = {m for name in self.analyses for m in ANALYSES[name].metrics}
        pooled = {(m, arm) for name in self.analyses for m in ANALYSES[name].metrics
                  for arm in ANALYSES[name].pseudo_arms}
        arms = [v.name for v in self.variants] or ["main"]
        for panel in self.panels:
            if set(panel.arms) - set(arms):
                raise ValueError(f"panel {panel.kind!r} names arms {sorted(set(panel.arms) - set(arms))} the spec does "
                                 f"not have; it has {', '.join(arms)}")
        # `metric@all`: every run of every arm; `metric@unit`: one value per warm-up; `metric@seed`: one per seed
        # (the mean of its units; analyses that record them)
        arms = arms + list(PSEUDO_ARMS) * bool(self.variants)
        for i, claim in enumerate(self.claims):
            metric, _, arm = claim.metric.partition("@")
            if metric not in produced:
                raise ClaimError(i, f"claim {claim.id!r}: no analysis of this spec produces {metric!r}; add the "
                                    f"analysis that does to `analyses:` or fix the name (produced: {', '.join(sorted(produced)) or 'none'})")
            if (arm or ("main" if not self.variants else "")) not in arms:
                raise ClaimError(i, f"claim {claim.id!r}: name the arm as {metric}@<arm>, one of {', '.join(arms)}")
            if arm in PSEUDO_ARMS and (metric, arm) not in pooled:
                have = sorted(a for m, a in pooled if m == metric)
                raise ClaimError(i, f"claim {claim.id!r}: no analysis of this spec records {metric} under @{arm}; "
                                    f"it has {', '.join('@' + a for a in have) or 'only its arms'}")
            if arm in ("all", "unit") and claim.over == "mean":
                fix = f"judge {metric}@seed, one value per seed, or " if (metric, "seed") in pooled else ""
                raise ClaimError(i, f"claim {claim.id!r}: a mean over {metric}@{arm} counts runs of one seed as "
                                    f"independent (they share its streams); {fix}set over: every")
            if claim.control_of:
                judged = next((c for c in self.claims if c.id == claim.control_of and not c.control_of), None)
                if judged is None:
                    raise ClaimError(i, f"claim {claim.id!r}: control_of names no claim of this spec "
                                        f"({claim.control_of!r}); name the claim it controls")
                if (judged.op, judged.threshold, judged.over) != (claim.op, claim.threshold, claim.over):
                    raise ClaimError(i, f"claim {claim.id!r}: a control is judged by the same rule as "
                                        f"{judged.id!r}; set op {judged.op!r}, threshold {judged.threshold}, "
                                        f"over {judged.over!r}")
        return self

    @field_validator("scales")
    @classmethod
    def _scale_names(cls, v):
        return known_scales(v)

    def check_scale(self, scale: str) -> None:
        """A scale the spec has: its default, or one of its `scales` presets (a spec without presets, such as the
        exact lemma, has its default only)."""
        if scale not in self.scales and scale != self.default_scale:
            raise UserError(f"{self.id} has no scale {scale!r}; it has {', '.join(self.scales) or self.default_scale}")

    def resolve(self, scale: str | None = None) -> RunConfig:
        scale = scale or self.default_scale
        self.check_scale(scale)
        return RunConfig.model_validate(merge_scale(self.body, self.scales.get(scale, {})))

    def at_scale(self, scale: str | None = None) -> "Spec":
        """This spec with runner_params as the runner reads them at `scale`: runner_params' `scales: {<scale>:
        {...}}` merged over the rest (the lemma-lm step size differs between a 2-layer toy and SmolLM2-135M)."""
        return self.model_copy(update={"runner_params": scale_runner_params(self.runner_params,
                                                                             scale or self.default_scale)})

    def arms(self, scale: str | None = None) -> list[str]:
        """The names of the arms that run at `scale` ('main' for a spec without variants)."""
        scale = scale or self.default_scale
        return [v.name for v in self.variants if v.runs_at(scale)] or ["main"]

    def variant_configs(self, scale: str | None = None) -> dict[str, RunConfig]:
        """One config per comparison arm at `scale` (arms set to null there are left out); a spec without variants
        has one arm named 'main'."""
        base = self.resolve(scale)
        if not self.variants:
            return {"main": base}
        scale = scale or self.default_scale
        return {v.name: RunConfig.model_validate(deep_merge(deep_merge(base.model_dump(), v.overrides),
                                                            v.scales.get(scale) or {}))
                for v in self.variants if v.runs_at(scale)}


def scale_runner_params(params: dict, scale: str) -> dict:
    """runner_params less their `scales:` table, with that table's entry for `scale` merged over them."""
    return {**{k: v for k, v in params.items() if k != "scales"}, **params.get("scales", {}).get(scale, {})}


def _child(node, key):
    """The YAML node under `key` (a mapping key or a sequence index), or None."""
    if isinstance(node, yaml.MappingNode):
        return next((v for k, v in node.value if k.value == key), None)
    if isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
        return node.value[key]
    return None


def _line_of(node, loc: tuple) -> int | None:
    """The 1-based line of the YAML node at path `loc`, or of its deepest existing ancestor."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        node = _child(node, key)
        if node is None:
            break
        line = node.start_mark.line + 1
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
        data, root = yaml.safe_load(text), yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"{mark.line + 1}" if mark else "?"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{path}:{line}: malformed YAML: {problem}; fix the syntax there") from None
    _refuse_duplicate_keys(path, root)
    return data, root


def _refuse_duplicate_keys(path: Path, node) -> None:
    """YAML lets a later key silently replace an earlier one (a second `body:` would drop the first): refuse it."""
    if isinstance(node, yaml.MappingNode):
        seen: dict = {}
        for key, value in node.value:
            name = getattr(key, "value", None)
            if name in seen:
                raise UserError(f"{path}:{key.start_mark.line + 1}: {name!r} is given twice (first at line "
                                f"{seen[name]}); YAML keeps only the last: merge them into one")
            seen[name] = key.start_mark.line + 1
            _refuse_duplicate_keys(path, value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _refuse_duplicate_keys(path, item)


def _with_bases(data: dict, path: Path, root, chain: list[tuple[str, Path]], sources: list) -> dict:
    """data with its `base:` chain merged in (body and scales, any depth, nearest spec last); `sources` gets each
    base file and node tree, nearest first, to find the line of an inherited field."""
    if "base" not in data:
        return data
    name = str(data.pop("base"))
    line = _line_of(root, ("base",))
    base_file = _sibling_spec(name, path, line) or all_specs().get(name)
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
        node = _child(node, key)
        if node is None:
            return False
    return True


def load_spec(path: str | Path) -> Spec:
    """Load and validate a spec file, including every scale and variant it declares."""
    path = Path(path)
    data, root = _read_yaml(path)
    if not isinstance(data, dict):
        raise UserError(f"{path}:1: a spec must be a YAML mapping with id, paper, body, ...; see experiments/entropy-mechanism/fig1.yaml")
    sources: list = []
    data = _with_bases(data, path, root, [(str(data.get("id", path.stem)), path)], sources)
    try:
        spec = Spec.model_validate({**data, "path": str(path)})
    except ValidationError as exc:
        err = exc.errors()[0]
        origin = err.get("ctx", {}).get("error")
        loc = ("claims", origin.index, "metric") if isinstance(origin, ClaimError) else tuple(err["loc"])
        raise UserError(_where(path, root, sources, loc, err["msg"])) from None
    from replicate.runners import RUNNERS
    _check_runner_params(spec, path, root)
    for scale in [spec.default_scale, *spec.scales] if RUNNERS[spec.runner].trains else []:
        _check_scale(spec, scale, path, root, sources)
        judged_seeds_apart(spec, path, root, scale, {s for c in spec.variant_configs(scale).values() for s in c.seeds})
    if not RUNNERS[spec.runner].trains:
        judged_seeds_apart(spec, path, root, spec.default_scale, set(spec.runner_params.get("seeds", [0, 1, 2])))
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
    if spec.variants and not any(v.runs_at(scale) for v in spec.variants):
        raise UserError(_fmt_error(path, root, ("scales", scale), f"every arm is null at scale {scale}; drop the "
                                   f"scale or let one arm run there"))
    arms = set(spec.arms(scale))
    if spec.panels and not any(set(p.arms) <= arms for p in spec.panels):
        raise UserError(_fmt_error(path, root, ("panels",), f"no panel draws only arms that run at scale {scale} "
                                   f"({', '.join(sorted(arms))}); add one"))
    from replicate.analysis import PSEUDO_ARMS
    for i, claim in enumerate(spec.claims):
        arm = claim.metric.partition("@")[2]
        if spec.variants and arm not in arms | {"", *PSEUDO_ARMS}:
            raise UserError(_fmt_error(path, root, ("claims", i, "metric"), f"claim {claim.id!r} judges arm {arm!r}, "
                                       f"which does not run at scale {scale}; judge an arm that does, or @all"))
    for i, v in enumerate(spec.variants):
        if not v.runs_at(scale):
            continue
        try:
            RunConfig.model_validate(deep_merge(deep_merge(base.model_dump(), v.overrides), v.scales.get(scale) or {}))
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = tuple(err["loc"])
            full = ("variants", i, "scales", scale, *loc) if _has_path(v.scales.get(scale, {}), loc) else \
                ("variants", i, "overrides", *loc) if _has_path(v.overrides, loc) else ("variants", i)
            raise UserError(_fmt_error(path, root, full, err["msg"]) + f" (arm {v.name}, scale {scale})") from None


def judged_seeds_apart(spec: Spec, path: Path, root, scale: str, judged: set[int]) -> None:
    """A seed used to choose the testbed or a hyperparameter (tuning_seeds) is never judged."""
    both = sorted(set(spec.tuning_seeds) & judged)
    if both:
        raise UserError(_fmt_error(path, root, ("tuning_seeds",), f"seeds {both} are tuning seeds and also judged "
                                   f"at scale {scale}; judge fresh seeds (set seeds: to ones not in tuning_seeds)"))


def _check_runner_params(spec: Spec, path: Path, root) -> None:
    """Validate runner_params (and each variant's own) against the runner's typed Params: a misspelt or mistyped
    parameter is a file:line error at load, before anything runs."""
    from replicate.runners import RUNNERS
    runner = RUNNERS[spec.runner]
    plain = scale_runner_params(spec.runner_params, "")
    checks = [(("runner_params",), plain, {})]
    for scale, own in spec.runner_params.get("scales", {}).items():
        if scale not in SCALES:
            raise UserError(_fmt_error(path, root, ("runner_params", "scales", scale),
                                       f"unknown scale {scale!r}; scales are {', '.join(SCALES)}"))
        checks.append((("runner_params", "scales", scale), own, plain))
    for i, v in enumerate(spec.variants):
        if v.runner_params and not runner.variant_params:
            raise UserError(_fmt_error(path, root, ("variants", i, "runner_params"),
                                       f"the {spec.runner} runner takes no per-arm runner_params; set them once "
                                       f"in the spec's runner_params"))
        if v.runner_params:
            checks.append((("variants", i, "runner_params"), v.runner_params, plain))
    for prefix, own, base in checks:
        try:
            runner.params.model_validate({**base, **own})
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = tuple(err["loc"])
            where = prefix + loc if (loc[:1] and loc[0] in own) or not base else ("runner_params", *loc)
            msg = err["msg"]
            if msg == "Extra inputs are not permitted":
                names = ", ".join(runner.params.model_fields) or "none"
                msg = f"the {spec.runner} runner takes no parameter {loc[-1]!r}; it takes: {names}"
            raise UserError(_fmt_error(path, root, where, msg)) from None


def _has_path(d, loc) -> bool:
    for key in loc:
        if not isinstance(d, dict) or key not in d:
            return False
        d = d[key]
    return True


def _sibling_spec(name: str, path: Path, line: int) -> Path | None:
    """The spec file in `path`'s folder or its sub-folders (not `path` itself) whose id or alias is `name`; two such
    files are an error, not a silent pick. None: the shipped spec of that name is the base."""
    found = {f.resolve(): f for f in _spec_files(path.parent)
             if f.resolve() != path.resolve() and name in _spec_names(f)}
    if len(found) > 1:
        where = ", ".join(str(f.relative_to(path.parent)) for f in found.values())
        raise UserError(f"{path}:{line}: base spec {name!r} is named by {len(found)} files in its folder ({where}); "
                        "give each its own id")
    return next(iter(found.values()), None)


def _spec_files(directory: Path) -> list[Path]:
    """Every *.yaml under `directory`, sub-folders included, less `reported/` (numbers) and `accelerate/`
    (`accelerate launch --config_file` configs)."""
    return [f for f in sorted(directory.rglob("*.yaml"))
            if not {"reported", "accelerate"} & set(f.relative_to(directory).parts)]


def _spec_names(file: Path) -> list[str]:
    """A spec file's id (its stem when it has none) and aliases; a file that is no YAML mapping has its stem."""
    try:
        data = yaml.safe_load(file.read_text()) or {}
    except (yaml.YAMLError, OSError, UnicodeDecodeError):
        data = {}
    if not isinstance(data, dict):
        return [file.stem]
    aliases = data.get("aliases") or []
    return [str(n) for n in [data.get("id", file.stem), *(aliases if isinstance(aliases, list) else [])]]


def all_specs(directory: Path | None = None) -> dict[str, Path]:
    """Map every spec id and alias to its file, searching sub-folders (see _spec_files)."""
    out = {}
    for file in _spec_files(directory or experiments_dir()):
        for name in _spec_names(file):
            out[name] = file
    return out


def find_spec(name: str) -> Spec:
    if name.endswith((".yaml", ".yml")) or "/" in name:
        return load_spec(name)
    specs = all_specs()
    if name not in specs:
        close = difflib.get_close_matches(name, specs, n=3)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        known = ", ".join(sorted(specs)) or "none"
        raise UserError(f"unknown spec {name!r}; {hint}known ids and aliases: {known} (or pass a path to a .yaml file)")
    return load_spec(specs[name])
