"""Command line: list | run SPEC.yaml | report | <figure id>."""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from replicate.allocator import keep_freed_memory
from replicate.errors import Interrupted, UserError


def _fraction(text: str) -> float:
    """argparse type: a number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a probability between 0 and 1 (e.g. 0.8)")
    return value


def _add_run_options(p):
    p.add_argument("--scale", help="tiny (default), small or paper")
    p.add_argument("--seeds", type=int, help="number of seeds (the spec's first N; more adds 0..N-1)")
    p.add_argument("--pilot", action="store_true", help="run the spec's tuning_seeds instead of its judged seeds: "
                   "a pilot for `power` and for tuning, written to results/<id>/<scale>-pilot/, never a reference")
    p.add_argument("--steps", type=int, help="override the number of RL steps")
    p.add_argument("--out", type=Path, help="output directory (default results/<id>/<scale>)")
    p.add_argument("--store", type=Path, help="run store root (default ./runs or $REPLICATE_STORE)")
    p.add_argument("--force", action="store_true", help="retrain even if a finished run exists")
    p.add_argument("--resume", action="store_true", help="continue interrupted runs from their last checkpoint")
    p.add_argument("--update-reference", action="store_true", help="also rewrite figures/<id>/ (the committed reference)")
    p.add_argument("--no-final-state", action="store_true", help="keep no final.pt in finished runs (model, optimizer "
                   "and RNG state: 1.6 GB a small run); `--steps N --resume` then trains a longer run from step 0")
    p.add_argument("--backend", choices=("ours", "verl"), default="ours", help="trainer: ours (default) or verl")
    p.add_argument("--dry-run", action="store_true", help="with --backend verl: print the launch commands (slurm: write "
                   "the sbatch scripts) without launching")
    p.add_argument("--launcher", choices=("local", "slurm", "ray"), default="local",
                   help="with --backend verl: run here, submit sbatch scripts, or print `ray job submit` commands")
    p.add_argument("--reward", choices=("ours", "verl-rule"), default="ours",
                   help="with --backend verl: evaluators.math (default) or verl's math_dapo rule")
    p.add_argument("--nnodes", type=int, default=1, help="with --backend verl: nodes per run")
    p.add_argument("--gpus-per-node", type=int, default=8, help="with --backend verl: GPUs per node")
    p.add_argument("--track", choices=("none", "tensorboard", "wandb"),
                   help="metrics tracker per run (default: tensorboard when installed); wandb runs offline unless "
                        "WANDB_MODE says otherwise; extras: pip install 'replicate-rl[track]' or '[wandb]'")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override a config key of every arm, e.g. --set rollout.group_size=4 (YAML value; "
                        "null deletes the key); repeatable")


def _check_positive(**values):
    for name, value in values.items():
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {value}")


def cmd_list(args):
    from replicate.report.index_html import spec_order
    from replicate.report.results import last_result
    from replicate.specs import all_specs, load_spec
    for spec in sorted((load_spec(path) for path in set(all_specs().values())), key=spec_order):
        scales = ",".join(dict.fromkeys([spec.default_scale, *spec.scales]))
        aliases = f" ({', '.join(spec.aliases)})" if spec.aliases else ""
        print(f"{spec.id}{aliases}\n    {spec.reproduces}\n    scales: {scales}; last result: "
              f"{last_result(spec.id, spec.default_scale)}")
        for scale in spec.scales:
            if scale != spec.default_scale and (shown := last_result(spec.id, scale)) != "not run":
                print(f"    at scale {scale}: {shown}")
    unbuilt = unbuilt_artifacts(all_specs())
    for paper, item in unbuilt:
        print(f"{item['id']} ({paper}): not built yet: {item['what']}")
    if not unbuilt:
        print("every figure and table listed in experiments/reported/*/artifacts.yaml has a spec")


def unbuilt_artifacts(specs: dict) -> list[tuple[str, dict]]:
    """(paper, artifact) for every entry of experiments/reported/<paper>/artifacts.yaml that no spec builds (its
    `spec:`, else its id, is no spec id or alias: ids need not be unique across papers)."""
    import yaml
    from replicate.paths import experiments_dir
    out = []
    for path in sorted((experiments_dir() / "reported").glob("*/artifacts.yaml")):
        data = yaml.safe_load(path.read_text()) or {}
        for item in data.get("artifacts", []):
            if item.get("spec", item["id"]) not in specs:
                out.append((data.get("paper", path.parent.name), item))
    return out


def choose_tracker(track: str | None) -> None:
    """--track: check its package is there (a one-line error naming the extra) and pass it on to every process."""
    if track is None:
        return
    extra = {"tensorboard": "track", "wandb": "wandb"}.get(track)
    if extra:
        import importlib.util
        if importlib.util.find_spec(track) is None:
            raise UserError(f"--track {track} needs {track}: pip install 'replicate-rl[{extra}]' (or drop --track)")
    if track == "wandb":
        os.environ.setdefault("WANDB_MODE", "offline")  # no network, no account; `wandb sync` uploads later
    os.environ["REPLICATE_TRACK"] = track


def cmd_reproduce(spec, args):
    from replicate.specs import parse_overrides
    _check_positive(steps=args.steps, seeds=args.seeds)
    if args.resume and args.force:
        raise UserError("--resume and --force contradict each other: --resume continues the stored runs, --force "
                        "retrains them from scratch; pick one")
    choose_tracker(args.track)
    if args.no_final_state:
        os.environ["REPLICATE_KEEP_FINAL"] = "0"  # read by the store, in this process and every worker
    overrides = parse_overrides(args.overrides)
    if args.backend == "verl":
        if overrides or args.pilot:
            raise UserError(f"{'--set' if overrides else '--pilot'} is not passed to --backend verl yet; "
                            "edit the spec instead")
        from replicate.backends.verl import Options, run_verl
        _check_positive(nnodes=args.nnodes, gpus_per_node=args.gpus_per_node)
        opts = Options(launcher=args.launcher, dry_run=args.dry_run, reward=args.reward, nnodes=args.nnodes,
                       n_gpus_per_node=args.gpus_per_node)
        return run_verl(spec, args.scale, opts, seeds=args.seeds, steps=args.steps, out=args.out, store=args.store,
                        force=args.force)
    from replicate.experiment import plan, reproduce
    from replicate.runners import RUNNERS
    if RUNNERS[spec.runner].trains:  # bad --set / --steps values fail here, before --out or any training
        plan(spec, args.scale or spec.default_scale, args.seeds, args.steps, overrides)
    res = reproduce(spec, scale=args.scale, seeds=args.seeds, steps=args.steps, out=args.out, store=args.store,
                    force=args.force, resume=args.resume, update_reference=args.update_reference,
                    overrides=overrides, pilot=args.pilot)
    if res["analysis"] is None:  # a process other than 0 of `accelerate launch`: process 0 reports
        return
    text = (res["out"] / "claims.md").read_text()
    claims, _, numbers = text.partition("\n```json")  # the analysis' numbers stay in the file, not the terminal
    print(claims.rstrip() + ("\n\n(the analysis' numbers: the JSON block at the end of claims.md)\n" if numbers else "\n"))
    print(f"wrote {res['out']}/{spec.id}.png, .pdf, claims.json, claims.md")


def cmd_power(args):
    """Seeds per claim for a decisive verdict, from a result's per-seed values (analysis/power.py)."""
    import json
    from replicate.analysis.power import power_table, power_text
    from replicate.report.claims import judge_claims
    from replicate.report.results import best_result
    from replicate.specs import find_spec
    spec = find_spec(args.spec)
    if args.pilot is not None:
        f = args.pilot / "claims.json"
        if not f.exists():
            raise UserError(f"--pilot {args.pilot}: no claims.json there; pass a result directory of {spec.id}")
        result, source = json.loads(f.read_text()), str(args.pilot)
    else:
        result = best_result(spec.id, args.scale or spec.default_scale)
        if result is None:
            raise UserError(f"{spec.id} has no result at scale {args.scale or spec.default_scale}; run a pilot "
                            f"(python -m replicate {spec.id} --pilot: its tuning seeds) or pass --pilot DIR")
        source = f"{result['origin']} {result['dir']}"
    # the spec's current claims, judged on the result's stored per-seed values
    rows = judge_claims(spec.claims, result.get("per_seed", {}))
    judged, seeds = _judged_seeds(spec, args.scale or spec.default_scale), result.get("seeds")
    table = power_table(rows, len(judged) if judged else None, len(seeds) if seeds else None, args.sd_ucl)
    print(power_text(spec.id, f"{source}, seeds {seeds}", table, len(judged) if judged else None, args.sd_ucl))


def _judged_seeds(spec, scale: str) -> list:
    """The seeds a full run of `spec` judges at `scale`, as `reproduce` plans them."""
    from replicate.experiment import runs_planned
    from replicate.runners import RUNNERS
    return runs_planned(spec.at_scale(scale), RUNNERS[spec.runner], scale, None, None, None)[1]


def cmd_report(args):
    from replicate.summary import write_report
    path = write_report(args.out)
    print(f"wrote {path} and {path.parent / 'index.html'} (open it in a browser)")


def cmd_eval(args):
    _check_positive(k=args.k, limit=args.limit, max_gen_toks=args.max_gen_toks, batch_size=args.batch_size)
    from replicate.benchmarks import run_eval
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    res = run_eval(args.model, tasks, k=args.k,
                   temperature=args.temperature, data_dir=args.data_dir, limit=args.limit,
                   max_gen_toks=args.max_gen_toks, batch_size=args.batch_size, out=args.out)
    print(res["out"].read_text())
    print(f"wrote {res['out']}")


def cmd_bench(args):
    from replicate import bench
    if args.what not in bench.BENCHES:
        raise UserError(f"unknown benchmark {args.what!r}; choose one of {', '.join(bench.BENCHES)}")
    if args.against and args.what != "small-step":
        raise UserError(f"--against times whole commands of the small-step bench only; drop it for {args.what!r}")
    bench.run(args.what, args)


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (what is wrong, a close option name, where the help is), exit 2."""

    def error(self, message):
        import difflib
        import re
        unknown = re.match(r"unrecognized arguments: (--?[\w-]+)", message)
        known = [o for a in self._actions for o in a.option_strings if o.startswith("--")]
        close = difflib.get_close_matches(unknown.group(1), known, n=1) if unknown else []
        hint = f"; did you mean {close[0]}?" if close else ""
        self.exit(2, f"error: {self.prog}: {message}{hint} (see {self.prog} --help)\n")


COMMANDS = ("list", "run", "report", "eval", "bench", "check", "compare", "data", "power")


def build_parser() -> argparse.ArgumentParser:
    """The commands' parser (a figure id such as `fig1` gets its own, in main)."""
    parser = Parser(prog="python -m replicate",
                    description="Reproduce figures and claims of RL-for-reasoning papers.")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + ",<figure id>}")
    parser.commands = sub.choices  # name -> its parser, for an unknown option's error (see _parse)
    sub.add_parser("list", help="every spec, its figure, scales and last result")
    p_run = sub.add_parser("run", help="reproduce a spec file anywhere")
    p_run.add_argument("spec", type=Path)
    _add_run_options(p_run)
    p_rep = sub.add_parser("report", help="REPORT.md and a static index.html of every figure and claims table")
    p_rep.add_argument("--out", type=Path, help="where to write REPORT.md (default results/REPORT.md; index.html "
                                                  "goes beside it)")
    _add_eval(sub)
    _add_bench(sub)
    _add_result_commands(sub)
    return parser


def _add_eval(sub):
    p_eval = sub.add_parser("eval", help="score a model or a run on lm-eval tasks")
    p_eval.add_argument("--model", required=True, help="a run directory of the store, a model dir/.gguf, or a hub id")
    from evaluators.lmeval import BENCHMARKS, SYNTHETIC
    p_eval.add_argument("--tasks", help=f"comma-separated: {','.join([*BENCHMARKS, *SYNTHETIC])} (default for a run: "
                                        "the tiny task it trained on)")
    p_eval.add_argument("--k", type=int, default=1, help="samples per problem (avg@k and pass@k)")
    p_eval.add_argument("--temperature", type=float, default=0.0)
    p_eval.add_argument("--data-dir", type=Path, help="local <task>.jsonl files instead of the hub (offline)")
    p_eval.add_argument("--limit", type=int, help="first N problems of each task")
    p_eval.add_argument("--max-gen-toks", type=int, help="max new tokens (default: the run's rollout.max_new_tokens, "
                                                         "else 2048; never past the model's positions)")
    p_eval.add_argument("--batch-size", type=int, default=16)
    p_eval.add_argument("--out", type=Path)


def _add_bench(sub):
    p_bench = sub.add_parser("bench", help="side-by-side speed ratios: evaluators, rollout, update, entropy, rl-step, rl-rows, small-step, all")
    p_bench.add_argument("what")
    p_bench.add_argument("--seconds", type=float, default=8.0, help="time budget per measured arm (evaluators)")
    p_bench.add_argument("--reps", type=int, help="timed repetitions per arm (rollout, update, entropy, rl-step, rl-rows, small-step)")
    p_bench.add_argument("--quick", action="store_true", help="tiny shapes and 2 repetitions (a smoke test)")
    p_bench.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                         help="auto: CPU, and the GPU where CUDA is present")
    p_bench.add_argument("--out", type=Path, help="where the JSON goes (default results/bench/; figures/bench/ holds the committed timings)")
    p_bench.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p_bench.add_argument("--against", metavar="REV", help="small-step: the preset's step at git revision REV (e.g. "
                         "479b383, main when issue 22 was filed) against the code here, whole commands alternating")


def _add_result_commands(sub):
    """power, check, compare and data: commands that read results or write a backend's data."""
    p_pow = sub.add_parser("power", help="seeds each claim needs for a decisive verdict, from a result or pilot")
    p_pow.add_argument("spec")
    p_pow.add_argument("--scale", help="the result's scale (default: the spec's default)")
    p_pow.add_argument("--pilot", type=Path, help="a result directory (claims.json) to plan from instead")
    p_pow.add_argument("--sd-ucl", type=_fraction, metavar="P",
                       help="plan on each SD's one-sided P upper confidence limit (0.8 is usual for a small pilot)")
    p_chk = sub.add_parser("check", help="compare results (CSV or dir with table.csv) with a paper's reported table")
    p_chk.add_argument("results", nargs="?", type=Path, help="CSV model,method,<benchmark>... or a dir holding table.csv")
    p_chk.add_argument("--against", help="reported table, e.g. entropy-mechanism/table2")
    p_chk.add_argument("--tolerance", action="append", help="points: 3 (every cell) or aime24=5; repeatable")
    p_chk.add_argument("--export", metavar="TABLE", help="write the reported TABLE as a results CSV instead")
    p_chk.add_argument("--out", type=Path, help="where check.json/.md (or the exported CSV) go")
    p_cmp = sub.add_parser("compare", help="two results of a spec side by side, claim by claim (--gate: exit 1 on a change)")
    p_cmp.add_argument("a", help="a result folder (results/<id>/<scale>/...) or a spec id (its committed reference)")
    p_cmp.add_argument("b", help="the result to compare with (with --gate: the reference), same forms")
    p_cmp.add_argument("--gate", action="store_true", help="exit 1 when a verdict differs or A's mean leaves B's interval")
    p_cmp.add_argument("--out", type=Path, help="where compare.md/.json/.png go (default results/compare/...)")
    p_data = sub.add_parser("data", help="write verl's parquet files (and a manifest) for a spec's train and validation sets")
    p_data.add_argument("spec", help="a spec id (fig11) or a spec file")
    p_data.add_argument("--scale", default="paper", help="the scale whose sets to write (default paper)")
    p_data.add_argument("--from", dest="from_dir", type=Path, help="local <set>.jsonl/.json/.parquet files (else the hub)")
    p_data.add_argument("--out", type=Path, help="where the parquet files go (default $VERL_DATA_DIR or data/verl)")


def main(argv=None) -> int:
    """The command line; `argv` None: this process is the command, and keeps the memory its steps free
    (replicate.allocator) for itself and its workers. A caller that passes argv (a test) keeps its malloc as it is."""
    if argv is None:
        keep_freed_memory()
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    try:
        return _dispatch(parser, _parse(parser, argv))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `python -m replicate list | head -1`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt as exc:
        msg = str(exc) if isinstance(exc, Interrupted) else \
            "interrupted while no run was training; finished runs are kept in the run store"
        print(msg, file=sys.stderr)
        return 130


def _parse(parser, argv: list[str]) -> argparse.Namespace:
    """The arguments of a command, or of a figure id (its own parser, once the id is known). An unknown option is
    the subcommand's error, so its did-you-mean and help pointer are the subcommand's."""
    if argv and argv[0] not in (*COMMANDS, "-h", "--help"):
        from replicate.specs import all_specs, find_spec
        is_path = argv[0].endswith((".yaml", ".yml")) or "/" in argv[0]
        known = {} if is_path else all_specs()  # read once: the figure is loaded from the file found here
        if not is_path and argv[0] not in known:
            find_spec(argv[0])  # the unknown-spec error, with its did-you-mean, before any option is read
        p_fig = Parser(prog=f"python -m replicate {argv[0]}",
                       description=f"Reproduce the figure and claims of spec {argv[0]!r}.")
        _add_run_options(p_fig)
        args = p_fig.parse_args(argv[1:])
        args.command, args.spec_file = "figure", known.get(argv[0], argv[0])
        return args
    args, extra = parser.parse_known_args(argv)
    if extra:
        parser.commands.get(args.command, parser).error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _dispatch(parser, args) -> int:
    """Run the chosen command; stdout is flushed here so a closed pipe surfaces inside main()."""
    out = getattr(args, "out", None)
    if out is not None and args.command in ("report", "eval", "bench", "check", "compare", "data"):
        from replicate.paths import ensure_writable  # refused in one line before any work, not after it
        names_a_file = args.command == "report" or (args.command == "check" and args.export and not out.is_dir())
        ensure_writable(out.parent if names_a_file else out, f"--out {out}: its folder" if names_a_file else "--out")
    if args.command == "list":
        cmd_list(args)
    elif args.command == "run":
        from replicate.specs import load_spec
        rc = cmd_reproduce(load_spec(args.spec), args)
        if rc:
            return rc
    elif args.command == "data":
        from replicate.backends.verl.data import cli_data
        cli_data(args)
    elif args.command == "report":
        cmd_report(args)
    elif args.command == "eval":
        cmd_eval(args)
    elif args.command == "bench":
        cmd_bench(args)
    elif args.command == "power":
        cmd_power(args)
    elif args.command == "check":
        from replicate.report.check import cli_check
        return cli_check(args)
    elif args.command == "compare":
        from replicate.report.compare import run_compare
        return run_compare(args.a, args.b, args.out, args.gate)
    elif args.command == "figure":
        from replicate.specs import load_spec
        rc = cmd_reproduce(load_spec(args.spec_file), args)
        if rc:
            return rc
    else:
        parser.print_help()
        return 2
    sys.stdout.flush()
    return 0
