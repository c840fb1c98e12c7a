"""`python -m replicate data SPEC`: the parquet files verl reads, for a spec's train and validation sets.

verl's RLHFDataset reads rows with `data_source` (the name its validation metrics are grouped by:
`val-core/<data_source>/...`), `prompt` (chat messages; verl applies the model's chat template), `ability`,
`reward_model.ground_truth` (passed to the reward function) and `extra_info` (passed too). Each set's raw
records name their fields differently (MATH-500 `problem`/`answer`/`level`, OlympiadBench `question`/
`final_answer`, Minerva `solution` with a boxed answer, AIME25 `prompt`, DAPO-Math-17k already in verl's form
with its own "Answer:" template around the problem): evaluators.math's `problem_text`/`gold_answer` read the
plain ones, `_verl_record` the ones already in verl's form. Every prompt is rewritten in the spec's template
(task.params.prompt, else evaluators.math.PROMPT: "... put your final answer within \\boxed{}"), the one our
own trainer uses, so both engines ask the same question and reward.py judges the same answer.

Files: `<out>/<source with / as __>/<split>.parquet` (out: --out, else $VERL_DATA_DIR, else data/verl), and
`<out>/manifest.json`: per file its source (local file or hub id), the source's sha256 (local files), rows,
the file's sha256 and the template. Each verl run records its files' manifest entries in its provenance.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from replicate.errors import UserError

# The training sets of the papers' recipes: source -> (local file stem, hub split, data_source, template
# wrapped around the problem in the hub copy, as (prefix, suffix), or None).
DAPO_TEMPLATE = ("Solve the following math problem step by step. The last line of your response should be of the "
                 "form Answer: $Answer (without quotes) where $Answer is the answer to the problem.\n\n",
                 "\n\nRemember to put your answer on its own line after \"Answer:\".")
TRAIN_SETS = {
    "BytedTsinghua-SIA/DAPO-Math-17k": ("dapo_math_17k", "train", "dapo_math", DAPO_TEMPLATE),
    "PRIME-RL/Eurus-2-RL-Data": ("eurus2_rl_math", "train", "eurus2_math", None),
}
LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")


def _benchmarks() -> dict:
    from evaluators.lmeval import BENCHMARKS
    return BENCHMARKS


def resolve(source: str, split: str) -> dict:
    """Where a task source's records come from: {name, stem, hub, split, data_source, template}."""
    benches = _benchmarks()
    by_hub = {hub: key for key, (_, hub, _) in benches.items()}
    key = source if source in benches else by_hub.get(source)
    if key is not None:
        stem, hub, hub_split = benches[key]
        return {"name": source, "stem": stem, "hub": hub, "split": hub_split, "data_source": key, "template": None}
    if source in TRAIN_SETS:
        stem, hub_split, data_source, template = TRAIN_SETS[source]
        return {"name": source, "stem": stem, "hub": source, "split": hub_split, "data_source": data_source,
                "template": template}
    path = Path(source).expanduser()
    if path.suffix in LOCAL_SUFFIXES:
        return {"name": source, "stem": path.stem, "hub": None, "path": path, "split": split,
                "data_source": path.stem, "template": None}
    return {"name": source, "stem": source.replace("/", "__"), "hub": source, "split": split,
            "data_source": source.split("/")[-1], "template": None}


def parquet_path(source: str, split: str, data_dir: str | Path | None = None) -> str:
    """A task's data source as the parquet file verl reads: a .parquet param as is, else
    `<data_dir>/<source with / as __>/<split>.parquet` (data_dir: $VERL_DATA_DIR or data/verl)."""
    if source.endswith(".parquet"):
        return source
    return str(data_root(data_dir) / source.replace("/", "__") / f"{split}.parquet")


def data_root(data_dir=None) -> Path:
    return Path(data_dir or os.environ.get("VERL_DATA_DIR", "data/verl")).absolute()


def task_sources(config) -> list[tuple[str, str, str]]:
    """(role, source, split) of a config's train set and each validation set (one, or a list)."""
    p = config.task.params
    if not p.get("validation"):
        raise UserError("task.params.validation: the verl backend needs a separate validation set")
    vals = p["validation"] if isinstance(p["validation"], list) else [p["validation"]]
    return [("train", p["train"], p.get("train_split", "train")),
            *(("validation", v, p.get("validation_split", "test")) for v in vals)]


def data_files(config, data_dir=None) -> tuple[str, str | list[str]]:
    """The parquet files of a config: (train, validation), validation a list when the spec lists several."""
    paths = [parquet_path(src, split, data_dir) for _, src, split in task_sources(config)]
    vals = config.task.params["validation"]
    return paths[0], (paths[1:] if isinstance(vals, list) else paths[1])


# ---- reading records ------------------------------------------------------------------------------------

def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_local(path: Path) -> list[dict]:
    """Records of a .jsonl, .json (a list, or {"data": [...]}) or .parquet file; UserError naming the file."""
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq
            return pq.read_table(path).to_pylist()
        text = path.read_text()
        if path.suffix == ".json":
            data = json.loads(text)
            data = data.get("data") if isinstance(data, dict) else data
            if not isinstance(data, list):
                raise ValueError("expected a list of records")
            return data
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as exc:
                    raise ValueError(f"line {n}: {exc}") from None
        return rows
    except ImportError:
        raise UserError("reading .parquet needs pyarrow: pip install pyarrow (or -e .[verl])") from None
    except Exception as exc:  # noqa: BLE001 - any read failure is the same fix: the file
        raise UserError(f"{path}: unreadable ({type(exc).__name__}: {str(exc).splitlines()[0][:120]}); "
                        "fix or replace the file") from None


def find_local(src: dict, from_dir: Path) -> Path:
    if src.get("path") is not None and src["path"].exists():
        return src["path"]
    names = dict.fromkeys([src["stem"], src["name"].replace("/", "__")])
    for name in names:
        for suffix in LOCAL_SUFFIXES:
            if (from_dir / (name + suffix)).is_file():
                return from_dir / (name + suffix)
    wanted = " or ".join(f"{n}.jsonl/.json/.parquet" for n in names)
    raise UserError(f"no file for {src['name']} in {from_dir}: put {wanted} there (or drop --from to use the hub)")


def read_hub(src: dict) -> list[dict]:
    try:
        import datasets
        return list(datasets.load_dataset(src["hub"], split=src["split"]))
    except Exception as exc:  # noqa: BLE001 - any hub failure is the same fix for the user
        raise UserError(f"could not load {src['hub']!r} (split {src['split']}) from the hub: "
                        f"{str(exc).splitlines()[0][:160]}; pass --from DIR with local files instead") from None


# ---- records -> verl rows ------------------------------------------------------------------------------

def _verl_record(record: dict, template) -> tuple[str, str] | None:
    """(problem, answer) of a record already in verl's form (chat `prompt`, `reward_model.ground_truth`)."""
    prompt, rm = record.get("prompt"), record.get("reward_model")
    if not isinstance(prompt, list) or not isinstance(rm, dict) or "ground_truth" not in rm:
        return None
    text = next((m.get("content", "") for m in reversed(prompt) if isinstance(m, dict) and m.get("role") == "user"), "")
    if template:
        prefix, suffix = template
        text = text.removeprefix(prefix).removesuffix(suffix)
    return text, str(rm["ground_truth"])


def _level(record: dict):
    level = record.get("level")
    return int(level) if str(level).strip().isdigit() else None


def _id(record: dict, index: int) -> str:
    info = record.get("extra_info") if isinstance(record.get("extra_info"), dict) else {}
    for key in ("id", "unique_id", "idx"):
        if record.get(key) not in (None, ""):
            return str(record[key])
    return str(info.get("index", index))


def to_rows(records: list[dict], src: dict, role: str, template: str, where: str) -> list[dict]:
    """verl rows; UserError `<where>: record N: ...` naming the missing field."""
    from evaluators.math import gold_answer, problem_text
    rows = []
    for i, record in enumerate(records):
        verl_form = _verl_record(record, src["template"])
        if verl_form is not None:
            problem, answer = verl_form
        else:
            problem = problem_text(record)
            if not isinstance(problem, str) or not problem.strip():
                raise UserError(f"{where}: record {i + 1} has no problem text (a field problem, question or prompt)")
            try:
                answer = gold_answer(record)
            except ValueError:
                raise UserError(f"{where}: record {i + 1} has no answer (a field answer, final_answer, a boxed "
                                "answer in solution, or reward_model.ground_truth)") from None
        rows.append({"data_source": src["data_source"],
                     "prompt": [{"role": "user", "content": template.format(problem=problem.strip())}],
                     "ability": "math", "reward_model": {"style": "rule", "ground_truth": answer},
                     "extra_info": {"id": _id(record, i), "level": _level(record), "index": i, "split": role}})
    if not rows:
        raise UserError(f"{where}: no records")
    return rows


def write_parquet(rows: list[dict], path: Path):
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise UserError("writing verl's parquet needs pyarrow: pip install pyarrow (or -e .[verl])") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pq.write_table(pa.Table.from_pylist(rows), tmp)
    os.replace(tmp, path)


# ---- the command --------------------------------------------------------------------------------------

def spec_sources(spec, scale: str) -> dict[tuple[str, str], tuple[str, str]]:
    """{(source, split): (role, template)} over every arm of the spec at `scale`."""
    from evaluators.math import PROMPT
    from .overrides import check_expressible
    out = {}
    for config in spec.variant_configs(scale).values():
        check_expressible(config)
        template = config.task.params.get("prompt", PROMPT)
        for role, source, split in task_sources(config):
            out.setdefault((source, split), (role, template))
    return out


def write_data(spec, scale: str = "paper", from_dir: Path | None = None, out: Path | None = None,
               log=print) -> dict:
    """Write every parquet file of the spec at `scale` and update the manifest; returns the manifest."""
    root = data_root(out)
    if from_dir is not None and not Path(from_dir).is_dir():
        raise UserError(f"--from {from_dir}: not a directory")
    entries = {}
    for (source, split), (role, template) in spec_sources(spec, scale).items():
        if source.endswith(".parquet"):
            log(f"{source}: used as is (a .parquet task param)")
            continue
        src = resolve(source, split)
        if from_dir is not None or src["hub"] is None:
            local = find_local(src, Path(from_dir or "."))
            records, origin = read_local(local), {"source": str(local), "source_sha256": _sha256(local)}
        else:
            records, origin = read_hub(src), {"source": f"hub:{src['hub']}", "hub_split": src["split"]}
        rows = to_rows(records, src, role, template, origin["source"])
        path = Path(parquet_path(source, split, root))
        write_parquet(rows, path)
        rel = str(path.relative_to(root))
        entries[rel] = {**origin, "role": role, "data_source": src["data_source"], "rows": len(rows),
                        "sha256": _sha256(path), "template": template, "fields": sorted(rows[0])}
        log(f"{path}: {len(rows)} rows ({role}, data_source {src['data_source']}) from {origin['source']}")
    manifest = update_manifest(root, entries)
    log(f"{root / 'manifest.json'}: {len(manifest['files'])} file(s)")
    return manifest


def update_manifest(root: Path, entries: dict) -> dict:
    path = root / "manifest.json"
    try:
        manifest = json.loads(path.read_text()) if path.exists() else {"files": {}}
    except ValueError:
        manifest = {"files": {}}
    manifest["files"].update(entries)
    root.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def manifest_entries(config, data_dir=None) -> dict:
    """The manifest entries of a config's parquet files (recorded in each run's provenance); a file that is
    missing is a UserError naming the `data` command, a file not in the manifest (prepared by hand) gets its
    sha256 only."""
    root = data_root(data_dir)
    try:
        known = json.loads((root / "manifest.json").read_text())["files"]
    except (OSError, ValueError, KeyError):
        known = {}
    out = {}
    for _, source, split in task_sources(config):
        path = Path(parquet_path(source, split, root))
        if not path.is_file():
            raise UserError(f"{path} not found: write verl's data first with "
                            f"`python -m replicate data <spec> --from DIR` (or the hub), or set $VERL_DATA_DIR")
        rel = str(path.relative_to(root)) if root in path.parents else str(path)
        entry = known.get(rel)
        out[str(path)] = entry if entry and entry.get("sha256") == _sha256(path) else \
            {"sha256": _sha256(path), "note": "not written by `replicate data` (or changed since)"}
    return out


def cli_data(args):
    """`python -m replicate data SPEC [--scale paper] [--from DIR] [--out DIR]`."""
    from replicate.specs import find_spec, load_spec
    spec = load_spec(Path(args.spec)) if Path(args.spec).suffix in (".yaml", ".yml") else find_spec(args.spec)
    if args.scale not in spec.scales and args.scale != spec.default_scale:
        raise UserError(f"{spec.id} has no scale {args.scale!r}; it has {', '.join(spec.scales)}")
    write_data(spec, args.scale, args.from_dir, args.out)
