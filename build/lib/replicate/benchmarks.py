"""`python -m replicate eval`: score a model from the run store (or any path) on lm-eval tasks.

The model object goes to lm-eval in memory (HFLM(pretrained=model)), so a run's policy needs no export. The
results table is written next to the model: <run>/eval/ for a run, results/eval/<name>/ otherwise.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from .errors import UserError
from .paths import results_root


def _load(model: str):
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast
    from .models import load_pretrained
    path = Path(model).expanduser()
    if (path / "model").is_dir():  # a run directory of the store
        run_dir, path = path, path / "model"
    else:
        run_dir = None
    if path.is_dir() and (path / "tokenizer.json").exists() and run_dir is not None:
        tok = PreTrainedTokenizerFast.from_pretrained(path)
        tok.padding_side = "left"
        return AutoModelForCausalLM.from_pretrained(path).eval(), tok, run_dir
    model_obj, tok = load_pretrained(str(path) if path.exists() else model)
    return model_obj.eval(), tok, None


def _tiny_task_file(run_dir: Path | None, folder: Path) -> Path:
    """The tiny tier's held-out addition problems as JSONL (the run's own task settings when known)."""
    from .tasks import make_task
    params = {"digits": [2], "holdout": 256}
    if run_dir is not None and (run_dir / "config.json").exists():
        cfg = json.loads((run_dir / "config.json").read_text())
        if cfg.get("task", {}).get("name") == "addition":
            params = cfg["task"]["params"]
    task = make_task("addition", **params)
    path = folder / "tiny_addition.jsonl"
    path.write_text("".join(json.dumps({"problem": p.prompt, "answer": p.answer, "_raw_prompt": True}) + "\n"
                            for p in task.validation))
    return path


def run_eval(model: str, tasks: list[str], k: int = 1, temperature: float = 0.0, data_dir: Path | None = None,
             limit: int | None = None, max_gen_toks: int = 2048, batch_size: int = 16, out: Path | None = None) -> dict:
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from evaluators.lmeval import BENCHMARKS, SYNTHETIC, write_tasks
    unknown = [t for t in tasks if t not in BENCHMARKS and t not in SYNTHETIC]
    if unknown:
        raise UserError(f"unknown eval task(s) {', '.join(unknown)}; choose from {', '.join([*BENCHMARKS, *SYNTHETIC])}")
    if k > 1 and temperature == 0:
        raise UserError("avg@k with k > 1 needs sampling: pass --temperature (the entropy paper uses 0.6 for AIME/AMC)")
    model_obj, tok, run_dir = _load(model)
    with tempfile.TemporaryDirectory(prefix="replicate-eval-") as tmp:
        tmp = Path(tmp)
        data = tmp / "data"
        data.mkdir()
        for t in tasks:
            if t in SYNTHETIC:
                _tiny_task_file(run_dir, data)
            elif data_dir is not None:
                src = Path(data_dir) / f"{BENCHMARKS[t][0]}.jsonl"
                if not src.exists():
                    raise UserError(f"{src} not found; put {BENCHMARKS[t][0]}.jsonl in --data-dir or drop --data-dir to use the hub")
                shutil.copy(src, data / src.name)
        local = data_dir is not None or all(t in SYNTHETIC for t in tasks)
        names = write_tasks(tmp / "tasks", tasks, data if local else None, k=k, temperature=temperature,
                            max_gen_toks=max_gen_toks)
        lm = HFLM(pretrained=model_obj, tokenizer=tok, batch_size=batch_size)
        res = lm_eval.simple_evaluate(model=lm, tasks=names, task_manager=TaskManager(include_path=str(tmp / "tasks")),
                                      limit=limit, log_samples=False)
    table = {}
    for name in names:
        r = res["results"][name]
        table[name.removeprefix("replicate_")] = {"avg@k": r.get("acc,all"), f"pass@{k}": r.get(f"pass@{k},all"),
                                                  "n": res["n-samples"][name]["effective"]}
    out = Path(out or (run_dir / "eval" if run_dir else results_root() / "eval" / Path(model).name))
    out.mkdir(parents=True, exist_ok=True)
    stem = f"eval-{'-'.join(tasks)}-k{k}-t{temperature:g}"
    payload = {"model": str(model), "k": k, "temperature": temperature, "limit": limit, "results": table}
    (out / f"{stem}.json").write_text(json.dumps(payload, indent=2))
    lines = [f"| task | avg@{k} | pass@{k} | n |", "|---|---|---|---|"]
    lines += [f"| {t} | {v['avg@k']:.4f} | {v[f'pass@{k}']:.4f} | {v['n']} |" for t, v in table.items()]
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    return {"table": table, "out": out / f"{stem}.md"}
