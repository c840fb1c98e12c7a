"""`python -m replicate data`: verl's parquet rows from each set's own fields, the manifest, one-line errors."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from evaluators.math import PROMPT, gold_answer, problem_text
from replicate.backends.verl.data import DAPO_TEMPLATE, manifest_entries, resolve
from replicate.cli import main
from replicate.errors import UserError
from replicate.specs import find_spec

pq = pytest.importorskip("pyarrow.parquet")
SHARED = next((p / "shared" / "data" / "math" for p in Path(__file__).resolve().parents[2:4]
               if (p / "shared" / "data" / "math").is_dir()), Path("../shared/data/math"))
SETS = ["aime24", "aime25", "amc23", "math500", "minerva_math", "olympiadbench"]
FIELDS = ["ability", "data_source", "extra_info", "prompt", "reward_model"]


def sample_sources(src: Path, n: int = 5):
    """The first n records of each ../shared set, a DAPO-Math-17k sample in its hub form (verl rows with its
    'Answer:' template) and an Omni-MATH sample (LaTeX answers in `answer`)."""
    import pyarrow as pa
    for name in SETS:
        (src / f"{name}.jsonl").write_text("".join((SHARED / f"{name}.jsonl").read_text().splitlines(True)[:n]))
    pre, post = DAPO_TEMPLATE
    pq.write_table(pa.Table.from_pylist([
        {"data_source": "math_dapo", "prompt": [{"role": "user", "content": f"{pre}Compute {i}^2.{post}"}],
         "ability": "MATH", "reward_model": {"style": "rule", "ground_truth": str(i * i)},
         "extra_info": {"index": f"dapo-{i}"}} for i in range(n)]), src / "dapo_math_17k.parquet")
    (src / "omni_math.jsonl").write_text("".join(json.dumps(
        {"domain": ["Algebra"], "difficulty": 3.0, "problem": f"Solve $x+{i}=0$.", "answer": f"$-{i}$",
         "source": "sample"}) + "\n" for i in range(1, n + 1)))


@pytest.mark.skipif(not SHARED.exists(), reason="needs ../shared/data/math")
def test_data_writes_every_set_of_fig11_paper_with_manifest(tmp_path, capsys):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    sample_sources(src)
    assert main(["data", "fig11", "--from", str(src), "--out", str(out)]) == 0
    print(capsys.readouterr().out)
    manifest = json.loads((out / "manifest.json").read_text())["files"]
    assert sorted(manifest) == sorted(["BytedTsinghua-SIA__DAPO-Math-17k/train.parquet",
                                       *(f"{s}/test.parquet" for s in [*SETS, "omni_math"])])
    for rel, entry in manifest.items():
        table = pq.read_table(out / rel)
        assert entry["rows"] == table.num_rows == 5 and sorted(table.schema.names) == FIELDS == entry["fields"]
        assert entry["template"] == PROMPT and Path(entry["source"]).parent == src
        assert len(entry["sha256"]) == len(entry["source_sha256"]) == 64
    for name in SETS:  # each set's own fields -> the same problem text and gold answer as evaluators.math reads
        rows = pq.read_table(out / name / "test.parquet").to_pylist()
        records = [json.loads(x) for x in (src / f"{name}.jsonl").read_text().splitlines()]
        assert [r["reward_model"]["ground_truth"] for r in rows] == [gold_answer(x) for x in records]
        assert [r["prompt"] for r in rows] == [[{"role": "user", "content": PROMPT.format(problem=problem_text(x).strip())}]
                                             for x in records]
        assert {r["data_source"] for r in rows} == {name} and {r["extra_info"]["split"] for r in rows} == {"validation"}
    math500 = pq.read_table(out / "math500" / "test.parquet").to_pylist()
    assert math500[0]["extra_info"]["id"] == "test/precalculus/807.json" and math500[0]["extra_info"]["level"] == 2
    dapo = pq.read_table(out / "BytedTsinghua-SIA__DAPO-Math-17k" / "train.parquet").to_pylist()
    assert dapo[3]["prompt"][0]["content"] == PROMPT.format(problem="Compute 3^2.")  # DAPO's template swapped
    assert dapo[3]["reward_model"]["ground_truth"] == "9" and dapo[3]["extra_info"]["id"] == "dapo-3"
    omni = pq.read_table(out / "omni_math" / "test.parquet").to_pylist()
    assert omni[1]["reward_model"]["ground_truth"] == "-2"

    config = find_spec("fig11").variant_configs("paper")["grpo"]
    entries = manifest_entries(config, out)  # what each run records in its provenance
    assert len(entries) == 8 and all(e["rows"] == 5 for e in entries.values())
    (out / "aime24" / "test.parquet").write_bytes(b"changed")
    assert "not written by" in manifest_entries(config, out)[str(out / "aime24" / "test.parquet")]["note"]


def test_validation_names_resolve_to_benchmarks_and_hub_ids():
    assert resolve("math500", "test")["hub"] == "HuggingFaceH4/MATH-500"
    assert resolve("HuggingFaceH4/MATH-500", "test")["data_source"] == "math500"  # fig1's paper preset
    dapo = resolve("BytedTsinghua-SIA/DAPO-Math-17k", "train")
    assert dapo["data_source"] == "dapo_math" and dapo["stem"] == "dapo_math_17k"


def _spec(tmp_path, validation="aime24") -> Path:
    path = tmp_path / "d.yaml"
    path.write_text(f"""id: dtest
base: fig1
paper: entropy-mechanism
reproduces: "test"
body: {{}}
scales:
  paper:
    task: {{name: math, params: {{train: BytedTsinghua-SIA/DAPO-Math-17k, validation: {validation}}}}}
variants: [{{name: grpo}}]
analyses: [arm_compare]
panels: [{{kind: arm_entropy}}]
""")
    return path


@pytest.mark.parametrize("files, message", [
    ({"dapo_math_17k.jsonl": '{"question": "1+1?"}\n', "aime24.jsonl": '{"problem": "x", "answer": "1"}\n'},
     "record 1 has no answer"),
    ({"dapo_math_17k.jsonl": '{"answer": "2"}\n', "aime24.jsonl": '{"problem": "x", "answer": "1"}\n'},
     "record 1 has no problem text"),
    ({"dapo_math_17k.jsonl": '{"problem": "1+1?", "answer": "2"}\n{"problem": \n'}, "dapo_math_17k.jsonl: unreadable"),
    ({"dapo_math_17k.parquet": "not parquet"}, "dapo_math_17k.parquet: unreadable"),
    ({"dapo_math_17k.jsonl": '{"problem": "1+1?", "answer": "2"}\n'}, "no file for aime24 in"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, files, message):
    src = tmp_path / "src"
    src.mkdir()
    for name, text in files.items():
        (src / name).write_text(text)
    assert main(["data", str(_spec(tmp_path)), "--from", str(src), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err and "Traceback" not in err
    assert not (tmp_path / "out" / "manifest.json").exists() or "aime24" not in (tmp_path / "out" / "manifest.json").read_text()


def test_missing_data_is_named_before_any_launch(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REPLICATE_HOME", str(tmp_path))
    monkeypatch.setenv("VERL_DATA_DIR", str(tmp_path / "nodata"))
    monkeypatch.setenv("REPLICATE_VERL_ENTRY", "false")
    assert main(["run", str(_spec(tmp_path)), "--scale", "paper", "--backend", "verl"]) == 2
    err = capsys.readouterr().err
    assert "train.parquet not found: write verl's data first with `python -m replicate data" in err
    assert not (tmp_path / "runs").exists()


def test_a_spec_without_the_scale_is_a_user_error(capsys):
    assert main(["data", "fig11", "--scale", "huge"]) == 2
    assert "has no scale 'huge'" in capsys.readouterr().err
    with pytest.raises(UserError, match="model.kind"):
        from replicate.backends.verl.data import write_data
        write_data(find_spec("fig11"), "tiny", Path("."), Path("/nonexistent"))
    shutil.rmtree(Path("/nonexistent"), ignore_errors=True)
