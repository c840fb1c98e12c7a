#!/usr/bin/env python3
"""A stand-in for `python3 -m verl.trainer.main_ppo` in the end-to-end test (no GPU, no verl).

It takes verl's Hydra overrides as verl would, checks what verl itself would need (the train and validation
parquet files exist and carry verl's fields; the custom_reward_function file loads and scores a right answer
1 and a wrong one 0, called as verl's reward manager calls it), then replays the recorded file-logger lines of
its arm and seed (tests/data/verl_replay/<arm>-s<seed>.jsonl, chosen by trainer.experiment_name
`<scale>-<arm>-s<seed>`) into $VERL_FILE_LOGGER_PATH, opened "wb" as verl's FileLogger opens it, up to
trainer.total_training_steps. $STANDIN_FAIL=<arm>-s<seed> makes that run stop halfway with status 1.
Each call appends its experiment name to $STANDIN_CALLS.
"""
import importlib.util
import json
import os
import sys
from pathlib import Path


def overrides(argv):
    out = {}
    for arg in argv:
        key, _, value = arg.partition("=")
        out[key] = value
    return out


def parquet_list(value):
    return [v.strip("'") for v in value.strip("[]").split(",")] if value.startswith("[") else [value.strip("'")]


def check_data_and_reward(o):
    import pyarrow.parquet as pq
    files = parquet_list(o["data.train_files"]) + parquet_list(o["data.val_files"])
    spec = importlib.util.spec_from_file_location("custom_module", o["custom_reward_function.path"].strip("'"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fn = getattr(module, o["custom_reward_function.name"])
    for f in files:
        row = pq.read_table(f).slice(0, 1).to_pylist()[0]
        assert {"data_source", "prompt", "ability", "reward_model", "extra_info"} <= set(row), f
        gt = row["reward_model"]["ground_truth"]
        right = fn(data_source=row["data_source"], solution_str=f"so \\boxed{{{gt}}}", ground_truth=gt,
                   extra_info=dict(row["extra_info"], num_turns=None))
        wrong = fn(data_source=row["data_source"], solution_str="\\boxed{no answer}", ground_truth=gt,
                   extra_info=row["extra_info"])
        assert right["score"] == 1.0 and wrong["score"] == 0.0, (f, right, wrong)


def main():
    o = overrides(sys.argv[1:])
    name = o["trainer.experiment_name"]
    with open(os.environ["STANDIN_CALLS"], "a") as fh:
        fh.write(name + "\n")
    check_data_and_reward(o)
    arm_seed = name.split("-", 1)[1]
    lines = (Path(__file__).parent / "verl_replay" / f"{arm_seed}.jsonl").read_text().splitlines()
    steps = int(o["trainer.total_training_steps"])
    fail = os.environ.get("STANDIN_FAIL") == arm_seed
    with open(os.environ["VERL_FILE_LOGGER_PATH"], "wb", buffering=0) as log:
        for line in lines:
            step = json.loads(line)["step"]
            if step > steps or (fail and step > steps // 2):
                break
            log.write(line.encode() + b"\n")
    if fail:
        print("stand-in: simulated crash (CUDA out of memory)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
