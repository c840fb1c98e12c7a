"""`python -m replicate eval`: score a model from the run store (or any path) on lm-eval tasks.

The model object goes to lm-eval in memory (HFLM(pretrained=model)), so a run's policy needs no export. The
results table is written next to the model: <run>/eval/ for a run, results/eval/<name>/ otherwise.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from evaluators.lmeval import BENCHMARKS

from replicate.report.claims import finite
from replicate.errors import UserError
from replicate.paths import results_root


# synthetic lm-eval task -> (the run-store task it scores, its default params for a model without a run)
SYNTHETIC_TASKS = {"tiny_addition": ("addition", {"digits": [2], "holdout": 256}),
                   "tiny_countdown": ("countdown", {"operands": 3, "holdout": 256}),
                   "tiny_short_answer": ("short_answer", {"op": "*", "operands": [2], "digits": 2, "mod": 10,
                                                          "holdout": 256})}


def run_dir_of(model: str) -> Path | None:
    """The run directory `model` names, or None for a model dir/.gguf/hub id; an unfinished run is an error."""
    path = Path(model).expanduser()
    if (path / "model").is_dir():
        return path
    if (path / "config.json").exists() and (path / "metrics.jsonl").exists():
        raise UserError(f"run {path} is not finished (no model/ yet); finish it with --resume, or pass a finished run")
    return None


def _load(model: str, run_dir: Path | None):
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast
    from replicate.runners.rl.models import load_pretrained
    if run_dir is not None:
        tok = PreTrainedTokenizerFast.from_pretrained(run_dir / "model")
        tok.padding_side = "left"
        return AutoModelForCausalLM.from_pretrained(run_dir / "model").eval(), tok
    path = Path(model).expanduser()
    model_obj, tok = load_pretrained(str(path) if path.exists() else model, what="--model (a run directory, "
                                     "a model dir/.gguf or a hub id)")
    return model_obj.eval(), tok


def _run_task(run_dir: Path | None) -> dict | None:
    """The task section of a run's config.json (None for a model without a run)."""
    if run_dir is None or not (run_dir / "config.json").exists():
        return None
    try:
        return json.loads((run_dir / "config.json").read_text()).get("task")
    except (json.JSONDecodeError, AttributeError):
        raise UserError(f"{run_dir / 'config.json'} is not a run config (corrupt?); retrain the run with --force") from None


def check_synthetic(tasks: list[str], run_task: dict | None):
    """A run scored on another task's synthetic set would score a silent 0.0: refuse, naming the right one."""
    if run_task is None:
        return
    mine = next((t for t, (name, _) in SYNTHETIC_TASKS.items() if name == run_task.get("name")), None)
    for t in tasks:
        if t in SYNTHETIC_TASKS and SYNTHETIC_TASKS[t][0] != run_task.get("name"):
            fix = f"use --tasks {mine}" if mine else "score it on a math benchmark instead"
            raise UserError(f"the run trained on {run_task.get('name')!r}, not {SYNTHETIC_TASKS[t][0]!r}; {fix}")


def _synthetic_task_file(name: str, run_task: dict | None, folder: Path) -> Path:
    """A tiny task's held-out problems as JSONL (the run's own task settings when known)."""
    from replicate.tasks import make_task
    task_name, params = SYNTHETIC_TASKS[name]
    if run_task is not None and run_task.get("name") == task_name:
        params = run_task.get("params", {})
    task = make_task(task_name, **params)
    path = folder / f"{name}.jsonl"
    path.write_text("".join(json.dumps({"problem": p.prompt, "answer": p.answer, "_raw_prompt": True,
                                        "_verifier": "replicate.tasks:score_text", "_task": task_name}) + "\n" for p in task.validation))
    return path


def check_hub(tasks: list[str], timeout_s: float = 5.0):
    """Fail fast, in one line, when the hub the benchmarks come from cannot be reached (before any model loads
    and before the hub client's retries). Skipped when the hub client is told to work offline from its cache."""
    import socket
    from urllib.parse import urlparse
    if os.environ.get("HF_HUB_OFFLINE") or os.environ.get("HF_DATASETS_OFFLINE"):
        return
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout_s).close()
    except OSError as exc:
        raise UserError(f"cannot reach {url.hostname} for {', '.join(t for t in tasks if t in BENCHMARKS)} "
                        f"({exc.strerror or type(exc).__name__}); pass --data-dir with local <task>.jsonl files") from None


def _looks_offline(exc: BaseException) -> bool:
    """True when exc (or its cause) is a network / hub failure rather than a bug."""
    words = ("connect", "offline", "resolve", "network", "timeout", "timed out", "hub", "internet", "unreachable",
             "couldn't reach", "not found on the hub", "datasetnotfound", "hfhub")
    while exc is not None:
        text = f"{type(exc).__module__}.{type(exc).__name__}: {exc}".lower()
        if isinstance(exc, (ConnectionError, TimeoutError)) or any(w in text for w in words):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def import_lm_eval():
    """lm-eval's entry points, or a one-line error naming the extra that installs it."""
    try:
        import lm_eval
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
    except ModuleNotFoundError as exc:
        raise UserError(f"`eval` needs lm-eval ({exc.name} is not installed): pip install 'replicate-rl[eval]' "
                        "(or pip install 'lm-eval>=0.4.5')") from None
    return lm_eval, HFLM, TaskManager


def default_tasks(run_task: dict | None) -> list[str]:
    """The synthetic task a run trained on, for `eval --model RUN` without --tasks."""
    mine = next((t for t, (name, _) in SYNTHETIC_TASKS.items() if run_task and name == run_task.get("name")), None)
    if mine is None:
        raise UserError("give --tasks (e.g. --tasks math500); the model is not a run of a tiny task, so there is no "
                        "task to default to")
    return [mine]


def gen_budget(model_obj, run_dir: Path | None, asked: int | None, prompt_tokens: int) -> int:
    """Max new tokens: --max-gen-toks, else the run's rollout.max_new_tokens, else 2048; never the model's whole
    positions (an explicit value that leaves no room for a prompt is a one-line error). A prompt longer than the
    room left beside the budget is cut from the left by lm-eval, as for any model: say so."""
    positions = getattr(model_obj.config, "max_position_embeddings", None)
    if positions is None:
        return asked if asked is not None else 2048
    if asked is not None:
        if asked >= positions:
            raise UserError(f"--max-gen-toks {asked} does not fit the model: {positions} positions, prompts up to "
                            f"{prompt_tokens} tokens; pass --max-gen-toks {max(1, positions - prompt_tokens)} or less")
        budget = asked
    else:
        default = 2048
        if run_dir is not None and (run_dir / "config.json").exists():
            default = json.loads((run_dir / "config.json").read_text()).get("rollout", {}).get("max_new_tokens", default)
        budget = max(1, min(default, positions - prompt_tokens if positions > prompt_tokens else positions // 2))
    if prompt_tokens + budget > positions:
        print(f"warning: prompts up to {prompt_tokens} tokens and {budget} new tokens exceed the model's {positions} "
              f"positions: lm-eval keeps the last {positions - budget} tokens of each prompt", file=sys.stderr)
    return budget


def _longest_prompt(tok, data: Path) -> int:
    """Tokens of the longest prompt of the local task files (0 when there are none: hub benchmarks)."""
    longest = 0
    for f in data.glob("*.jsonl"):
        for line in f.read_text().splitlines():
            longest = max(longest, len(tok(json.loads(line).get("problem", ""))["input_ids"]))
    return longest


def run_eval(model: str, tasks: list[str] | None, k: int = 1, temperature: float = 0.0, data_dir: Path | None = None,
             limit: int | None = None, max_gen_toks: int | None = None, batch_size: int = 16,
             out: Path | None = None) -> dict:
    """Score `model` (a run, a model dir/.gguf or a hub id) on lm-eval tasks; tasks and the generation budget
    default to the run's (its tiny task, its rollout.max_new_tokens within the model's positions)."""
    lm_eval, HFLM, TaskManager = import_lm_eval()
    from evaluators.lmeval import BENCHMARKS, SYNTHETIC, write_tasks
    run_dir = run_dir_of(model)
    run_task = _run_task(run_dir)
    tasks = tasks or default_tasks(run_task)
    unknown = [t for t in tasks if t not in BENCHMARKS and t not in SYNTHETIC]
    if unknown:
        raise UserError(f"unknown eval task(s) {', '.join(unknown)}; choose from {', '.join([*BENCHMARKS, *SYNTHETIC])}")
    if k > 1 and temperature == 0:
        raise UserError("avg@k with k > 1 needs sampling: pass --temperature (the entropy paper uses 0.6 for AIME/AMC)")
    if data_dir is not None and not Path(data_dir).is_dir():
        raise UserError(f"--data-dir {data_dir} is not a directory; pass the folder holding <task>.jsonl files")
    if data_dir is None and any(t in BENCHMARKS for t in tasks):
        check_hub(tasks)
    check_synthetic(tasks, run_task)
    model_obj, tok = _load(model, run_dir)
    with tempfile.TemporaryDirectory(prefix="replicate-eval-") as tmp:
        tmp = Path(tmp)
        data = tmp / "data"
        data.mkdir()
        for t in tasks:
            if t in SYNTHETIC:
                _synthetic_task_file(t, run_task, data)
            elif data_dir is not None:
                src = Path(data_dir) / f"{BENCHMARKS[t][0]}.jsonl"
                if not src.exists():
                    raise UserError(f"{src} not found; put {BENCHMARKS[t][0]}.jsonl in --data-dir or drop --data-dir to use the hub")
                shutil.copy(src, data / src.name)
        local = data_dir is not None or all(t in SYNTHETIC for t in tasks)
        max_gen_toks = gen_budget(model_obj, run_dir, max_gen_toks, _longest_prompt(tok, data) + 1)
        names = write_tasks(tmp / "tasks", tasks, data if local else None, k=k, temperature=temperature,
                            max_gen_toks=max_gen_toks)
        lm = HFLM(pretrained=model_obj, tokenizer=tok, batch_size=batch_size)
        try:
            res = lm_eval.simple_evaluate(model=lm, tasks=names, task_manager=TaskManager(include_path=str(tmp / "tasks")),
                                          limit=limit, log_samples=False)
        except Exception as exc:  # the hub's errors come from requests, huggingface_hub and datasets alike
            if local or not _looks_offline(exc):
                raise
            raise UserError(f"could not fetch {', '.join(tasks)} from the hub ({type(exc).__name__}); "
                            "pass --data-dir with local <task>.jsonl files") from None
    table = {}
    for name in names:
        r = res["results"][name]
        table[name.removeprefix("replicate_")] = {"avg@k": r.get("acc,all"), f"pass@{k}": r.get(f"pass@{k},all"),
                                                  "n": res["n-samples"][name]["effective"]}
    out = Path(out or (run_dir / "eval" if run_dir else results_root() / "eval" / Path(model).name))
    out.mkdir(parents=True, exist_ok=True)
    stem = f"eval-{'-'.join(tasks)}-k{k}-t{temperature:g}"
    payload = {"model": str(model), "k": k, "temperature": temperature, "limit": limit, "results": table}
    (out / f"{stem}.json").write_text(json.dumps(finite(payload), indent=2, allow_nan=False))
    lines = [f"| task | avg@{k} | pass@{k} | n |", "|---|---|---|---|"]
    lines += [f"| {t} | {v['avg@k']:.4f} | {v[f'pass@{k}']:.4f} | {v['n']} |" for t, v in table.items()]
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    return {"table": table, "out": out / f"{stem}.md"}
