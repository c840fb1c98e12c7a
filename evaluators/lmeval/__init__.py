"""lm-eval tasks for the papers' math benchmarks and the tiny tier's synthetic tasks, scored by evaluators.math.

Tasks are written as lm-eval YAML into a folder registered with TaskManager(include_path=...): from local
JSONL files (`data_dir`, offline) or from their hub datasets (needs a network). Protocol: k samples per problem
at a temperature; metrics avg@k (mean correctness, `acc`) and pass@k.
"""
from __future__ import annotations

from pathlib import Path

import yaml

# name -> (local file stem, hub dataset, hub split). Hub names are the usual public copies; they were not
# reachable from the machine this was written on, so override with data_dir if one has moved.
BENCHMARKS = {
    "math500": ("math500", "HuggingFaceH4/MATH-500", "test"),
    "aime24": ("aime24", "HuggingFaceH4/aime_2024", "train"),
    "aime25": ("aime25", "yentinglin/aime_2025", "train"),
    "amc23": ("amc23", "math-ai/amc23", "test"),
    "minerva_math": ("minerva_math", "math-ai/minervamath", "test"),
    "olympiadbench": ("olympiadbench", "Hothan/OlympiadBench", "train"),
    "omni_math": ("omni_math", "KbsdJames/Omni-MATH", "test"),  # 4,428 problems; gold in `answer` (LaTeX)
}
# written per run by replicate.benchmarks from the run task's validation set; countdown is scored by its own verifier
SYNTHETIC = {"tiny_addition": "tiny_addition", "tiny_countdown": "tiny_countdown",
             "tiny_short_answer": "tiny_short_answer"}

UTILS = '''from evaluators.lmeval.metrics import doc_to_text, process_results  # noqa: F401
'''


def task_name(name: str) -> str:
    return f"replicate_{name}"


def write_tasks(folder: Path, names: list[str], data_dir: Path | None, k: int = 1, temperature: float = 0.0,
                max_gen_toks: int = 2048, prompt: bool = True) -> list[str]:
    """Write one lm-eval YAML per task into `folder`; returns the registered task names."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "utils.py").write_text(UTILS)
    out = []
    for name in names:
        if name in BENCHMARKS:
            stem, hub, split = BENCHMARKS[name]
        elif name in SYNTHETIC:
            stem, hub, split = SYNTHETIC[name], None, "test"
        else:
            known = ", ".join([*BENCHMARKS, *SYNTHETIC])
            raise ValueError(f"unknown eval task {name!r}; choose from {known}")
        if data_dir is not None:
            path = Path(data_dir) / f"{stem}.jsonl"
            if not path.exists():
                raise FileNotFoundError(f"{path} not found; put {stem}.jsonl in --data-dir or drop --data-dir to use the hub")
            source = {"dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(path.resolve())}},
                      "test_split": "test"}
        elif hub is None:
            raise FileNotFoundError(f"task {name!r} has no hub dataset; pass --data-dir with {stem}.jsonl")
        else:
            source = {"dataset_path": hub, "test_split": split}
        generation = {"until": [], "max_gen_toks": max_gen_toks, "do_sample": temperature > 0}
        if temperature > 0:
            generation["temperature"] = temperature
        cfg = {
            "task": task_name(name), **source, "output_type": "generate_until",
            "doc_to_text": "!function utils.doc_to_text" if prompt else "{{problem}}",
            "doc_to_target": "", "process_results": "!function utils.process_results",
            "generation_kwargs": generation, "repeats": k,
            "filter_list": [{"name": "all", "filter": [{"function": "take_first_k", "k": k}]}],
            "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                            {"metric": f"pass@{k}", "aggregation": "mean", "higher_is_better": True}],
            "metadata": {"version": 1.0, "k": k, "temperature": temperature},
        }
        text = yaml.safe_dump(cfg, sort_keys=False).replace("'!function utils.doc_to_text'", "!function utils.doc_to_text")
        text = text.replace("'!function utils.process_results'", "!function utils.process_results")
        (folder / f"{task_name(name)}.yaml").write_text(text)
        out.append(task_name(name))
    return out
