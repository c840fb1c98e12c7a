"""Speed of the training core, arms side by side in one process: `python -m replicate bench
{rollout,update,entropy,rl-step,all}`.

Every arm is timed interleaved with its rivals (A B, B A, A B, ...) over several repetitions; the table gives
medians and ratios, and results/bench/<what>-<device>.json (or --out) keeps them with the machine they ran on. Models are
random-init from configs written here (Qwen2.5-0.5B and SmolLM2-135M shapes; no download). On CPU the shapes
are cut down (fewer layers, small batches) so an arm takes seconds; with CUDA present each arm also runs on the
GPU with the paper's smallest shapes.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch


SHAPES = {
    "qwen2.5-0.5b": dict(model_type="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
                         max_position_embeddings=4096, tie_word_embeddings=True),
    "smollm2-135m": dict(model_type="llama", hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, vocab_size=49152,
                         max_position_embeddings=4096, tie_word_embeddings=True),
    # CPU stand-ins: SmolLM2-135M's widths and vocabulary with 4 of its 30 layers; the fig1 tiny testbed's model
    "smollm2-135m-4L": dict(model_type="llama", hidden_size=576, intermediate_size=1536, num_hidden_layers=4,
                            num_attention_heads=9, num_key_value_heads=3, vocab_size=49152,
                            max_position_embeddings=4096, tie_word_embeddings=True),
    "tiny": dict(model_type="qwen2", hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, vocab_size=1000,
                 max_position_embeddings=1024, tie_word_embeddings=True),
}

# (shape, batch B, prompt length P, new tokens T); quick: the test's budget
CASES = {
    ("rollout", "cpu"): [("tiny", 16, 16, 32), ("smollm2-135m-4L", 8, 32, 32)],
    ("rollout", "cuda"): [("qwen2.5-0.5b", 64, 128, 256), ("smollm2-135m", 64, 128, 256)],  # the paper's first
    ("update", "cpu"): [("tiny", 16, 16, 32), ("smollm2-135m-4L", 8, 32, 32)],
    ("update", "cuda"): [("smollm2-135m", 64, 128, 256), ("qwen2.5-0.5b", 64, 128, 256)],
    ("entropy", "cpu"): [("smollm2-135m", 4, 0, 256)],     # logits [4, 256, 49152] float32: 201 MB
    ("entropy", "cuda"): [("qwen2.5-0.5b", 16, 0, 256)],   # [16, 256, 151936] float32: 2.5 GB
}
QUICK = {"rollout": [("tiny", 4, 8, 8)], "update": [("tiny", 4, 8, 8)], "entropy": [("tiny", 2, 0, 64)]}


# -- measurement helpers ---------------------------------------------------------------------------------------

def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def interleave(arms: dict, reps: int, device: str = "cpu", warm: bool = True) -> dict[str, list[float]]:
    """Seconds of each arm per repetition, after one untimed call of each (unless the caller `warm`ed them already);
    the order alternates every repetition."""
    for fn in arms.values() if warm else ():
        fn()
    times = {name: [] for name in arms}
    order = list(arms)
    for r in range(reps):
        for name in (order if r % 2 == 0 else order[::-1]):
            times[name].append(timed_call(arms[name], device))
    return times


def timed_call(fn, device: str) -> float:
    """Seconds of one call of fn, the device synchronised before and after."""
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def med(xs):
    return statistics.median(xs)


def cpu_fields(path: str = "/proc/cpuinfo") -> dict:
    """The first CPU's model name, family, model and stepping from /proc/cpuinfo: one name ("AMD EPYC") covers
    several CPU kinds (Zen 4 is family 25, Zen 5 family 26), and timings compare only within one kind."""
    want = {"model name": "cpu", "cpu family": "family", "model": "model", "stepping": "stepping"}
    fields = {}
    try:
        with open(path) as f:
            for line in f:
                if not line.strip() and fields:
                    break  # the first processor's block only
                key, _, value = line.partition(":")
                if key.strip() in want:
                    fields.setdefault(want[key.strip()], value.strip())
    except OSError:
        pass
    return fields


def machine(device: str) -> dict:
    fields = cpu_fields()
    cpu = fields.pop("cpu", None) or platform.processor() or "unknown"
    kind = ", ".join(f"{k} {fields[k]}" for k in ("family", "model", "stepping") if k in fields)
    info = {"device": device, "cpu": cpu, "cpu_family_model_stepping": kind or "unknown",
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "glibc_tunables": os.environ.get("GLIBC_TUNABLES")}  # replicate.allocator's, or the user's
    import transformers
    info["transformers"] = transformers.__version__
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    return info


def cpu_name(info: dict) -> str:
    """'AMD EPYC, family 25, model 17, stepping 1': the model name and the kind, for a table's title."""
    return f"{info['cpu']}, {info['cpu_family_model_stepping']}"


def devices(args) -> list[str]:
    want = getattr(args, "device", None) or "auto"
    if want == "auto":
        return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    return [want]


def build_model(shape: str, device: str, seed: int = 0):
    from transformers import AutoConfig, AutoModelForCausalLM
    cfg = dict(SHAPES[shape])
    model_type = cfg.pop("model_type")
    torch.manual_seed(seed)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **cfg), dtype=dtype)
    return model.eval(), cfg["vocab_size"]


@contextmanager
def profiler_lines_hidden():
    """Kineto writes 'USDT: ... profiler_start/stop' lines to the process's stderr from C++; this points file
    descriptor 2 at /dev/null around a profile's start and stop only (peak_extra_bytes: not while its fn runs), so
    a bench's table is not interleaved with them."""
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def peak_extra_bytes(fn, device: str) -> int:
    """Peak bytes allocated by fn above what was allocated when it started (CUDA: the allocator's peak;
    CPU: the allocations and frees torch.profiler records, replayed in order)."""
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    from torch.profiler import ProfilerActivity, profile
    prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    with profiler_lines_hidden():
        prof.start()
    try:
        fn()
    finally:
        with profiler_lines_hidden():
            prof.stop()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    cur = peak = 0
    for e in events:
        cur += e.nbytes()
        peak = max(peak, cur)
    return peak


def default_out() -> Path:
    """results/bench/ (not figures/bench/, the committed reference: a timing is this machine's, not the project's)."""
    from replicate.paths import results_root
    return results_root() / "bench"


def write_json(what: str, device: str, payload: dict, out_dir: Path | None) -> Path:
    out_dir = Path(out_dir) if out_dir else default_out()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{what}-{device}.json"
    path.write_text(json.dumps({"what": what, "machine": machine(device), **payload}, indent=1) + "\n")
    return path


def table(title: str, header: list[str], rows: list[list]) -> str:
    cells = [[str(c) for c in header]] + [[f"{c:.3g}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [title, "  " + "  ".join(h.ljust(w) for h, w in zip(cells[0], widths))]
    lines += ["  " + "  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells[1:]]
    return "\n".join(lines)


def _cases(what, device, args):
    return QUICK[what] if getattr(args, "quick", False) else CASES[(what, device)]


def _reps(args, default=5):
    return max(2, getattr(args, "reps", None) or (2 if getattr(args, "quick", False) else default))


# -- rollout: our KV-cached sampler vs transformers' generate() ---------------------------------------------------

def rollout_arms(model, ids, mask, T: int, gen, seen: dict, static: bool) -> dict:
    """The rollout arms on one batch, each sampling T new tokens per row at temperature 1 (stop id -1 never fires).
    With `static`, issue 25's GPU levers too, measured apart: transformers' generate() with a static KV cache (it
    compiles the decode step itself on CUDA: `hf_static`), and our loop over a static cache (bench/static_decode.py)
    eager (`ours_static`) and with its decode step compiled to CUDA graphs (`ours_static_compiled`)."""
    from replicate.bench.static_decode import decode_step, static_cache, static_generate
    from replicate.runners.rl.rollout import generate

    def ours():
        seen["ours"] = generate(model, ids, mask, T, 1.0, [-1], 0, gen)[0].shape

    def hf(name, **extra):
        def arm():
            with torch.no_grad():
                out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=1.0, top_k=0,
                                     top_p=1.0, max_new_tokens=T, min_new_tokens=T, pad_token_id=0, **extra)
            seen[name] = out[:, ids.shape[1]:].shape
        return arm

    def ours_static(name, compiled):
        step, cache = decode_step(model, compiled), static_cache(model, ids.shape[1] + T)

        def arm():
            seen[name] = static_generate(model, ids, mask, T, 1.0, gen, step, cache).shape
        return arm
    arms = {"ours": ours, "hf_generate": hf("hf_generate")}
    if static:
        arms.update(hf_static=hf("hf_static", cache_implementation="static"),
                    ours_static=ours_static("ours_static", False),
                    ours_static_compiled=ours_static("ours_static_compiled", True))
    return arms


def first_call_seconds(arms: dict, device: str) -> dict[str, float]:
    """Each arm's first call, timed: a compiled arm pays its compilation here (interleave() then times it warm)."""
    return {name: timed_call(fn, device) for name, fn in arms.items()}


ROLLOUT_NOTE = ("sampling at temperature 1, no top-k/top-p, no EOS: every row generates T new tokens; tokens/s = "
                "B*T / median s; first_call_s: each arm's untimed first call (a compile lands there); the JSON is "
                "rewritten after each shape, so a run stopped at a time limit keeps the shapes it finished")


def bench_rollout(args) -> list[dict]:
    results = []
    for device in devices(args):
        rows = []
        for shape, B, P, T in _cases("rollout", device, args):
            model, vocab = build_model(shape, device)
            ids = torch.randint(10, vocab, (B, P), device=device, generator=torch.Generator(device).manual_seed(1))
            seen = {}
            arms = rollout_arms(model, ids, torch.ones_like(ids), T, torch.Generator(device=device).manual_seed(0),
                                seen, static=device == "cuda")
            first = first_call_seconds(arms, device)
            print(f"  rollout {shape} on {device}, first calls: " + ", ".join(f"{k} {v:.1f} s" for k, v in first.items()),
                  file=sys.stderr, flush=True)
            write_json("rollout", device, {"rows": rows + [{"shape": shape, "B": B, "P": P, "T": T,
                                                            "first_call_s": first}], "note": ROLLOUT_NOTE},
                       getattr(args, "out", None))  # a run cut off in the timed calls keeps the compiles' seconds
            times = interleave(arms, _reps(args), device, warm=False)
            assert set(seen.values()) == {(B, T)}, seen
            tok_s = {name: B * T / med(ts) for name, ts in times.items()}
            rows.append({"shape": shape, "B": B, "P": P, "T": T, "reps": len(times["ours"]),
                         "ours_tok_s": tok_s["ours"], "hf_generate_tok_s": tok_s["hf_generate"],
                         "ours_over_hf": tok_s["ours"] / tok_s["hf_generate"],
                         **{f"{name}_tok_s": v for name, v in tok_s.items() if name in STATIC_ARMS},
                         "first_call_s": first, "seconds": times})
            del model
            path = write_json("rollout", device, {"rows": rows, "note": ROLLOUT_NOTE}, getattr(args, "out", None))
            print(f"  rollout {shape} on {device}: " + ", ".join(f"{k} {v:.0f} tok/s" for k, v in tok_s.items()),
                  file=sys.stderr, flush=True)
        print(rollout_table(rows, device) + f"\n  -> {path}")
        results += rows
    return results


STATIC_ARMS = {"hf_static": "HF static+compiled", "ours_static": "ours static", "ours_static_compiled":
               "ours static+compiled"}


def rollout_table(rows: list[dict], device: str) -> str:
    """New tokens/s of each arm; the static-cache arms (CUDA) with their first call's seconds (the compile)."""
    static = [name for name in STATIC_ARMS if rows and f"{name}_tok_s" in rows[0]]
    header = ["shape", "B", "P", "T", "ours", "HF generate", "ours/HF"]
    header += [h for name in static for h in (STATIC_ARMS[name], "1st call s")]
    body = [[r["shape"], r["B"], r["P"], r["T"], round(r["ours_tok_s"]), round(r["hf_generate_tok_s"]),
             round(r["ours_over_hf"], 2)] + [c for name in static for c in
                                             (round(r[f"{name}_tok_s"]), round(r["first_call_s"][name], 1))]
            for r in rows]
    return table(f"rollout on {device} ({machine(device)['torch_threads']} threads): new tokens/s, medians", header,
                 body)


# -- update: one PPO update (forward + backward + AdamW) through the trainer's functions, and its MFU ------------

UPDATE_NOTE = ("one PPO update = response_logprobs + vanilla PPO loss (token-mean) + backward per micro-batch, one "
               "AdamW step; FLOPs = 6 * B * (body params * (P+T) + head params * T), the LM head scoring only the "
               "response (attention not counted); peak = a {} matmul timed interleaved with the update; the JSON is "
               "rewritten after each shape")


def bench_update(args) -> list[dict]:
    from replicate.algorithms import POLICY_LOSSES
    from replicate.runners.rl.models import response_logprobs
    results = []
    for device in devices(args):
        rows = []
        for shape, B, P, T in _cases("update", device, args):
            model, vocab = build_model(shape, device)
            n_params = sum(p.numel() for p in model.parameters())
            g = torch.Generator(device).manual_seed(1)
            ids = torch.randint(10, vocab, (B, P), device=device, generator=g)
            mask = torch.ones_like(ids)
            resp = torch.randint(10, vocab, (B, T), device=device, generator=g)
            rmask = torch.ones(B, T, device=device)
            micro = min(B, 8)
            with torch.no_grad():
                old = torch.cat([response_logprobs(model, ids[i:i + micro], mask[i:i + micro], resp[i:i + micro],
                                                   1.0)[0] for i in range(0, B, micro)])
            adv = torch.randn(B, 1, device=device, generator=g).expand(B, T).contiguous()
            model.train()
            opt = torch.optim.AdamW(model.parameters(), lr=1e-6)

            def update():  # what trainer.ppo_update does per mini-batch: micro-batched fwd+bwd, one optimizer step
                opt.zero_grad(set_to_none=True)
                for i in range(0, B, micro):
                    lp, _ = response_logprobs(model, ids[i:i + micro], mask[i:i + micro], resp[i:i + micro], 1.0)
                    loss, _ = POLICY_LOSSES["vanilla"](old[i:i + micro], lp, adv[i:i + micro], rmask[i:i + micro],
                                                       loss_agg_mode="token-mean")
                    (loss * min(micro, B - i) / B).backward()
                opt.step()
            n = 1024 if device == "cpu" else 8192
            dtype = torch.float32 if device == "cpu" else torch.bfloat16
            a = torch.randn(n, n, device=device, dtype=dtype)
            bm = torch.randn(n, n, device=device, dtype=dtype)
            mm_reps = 3 if device == "cpu" else 10

            def matmul():
                for _ in range(mm_reps):
                    a @ bm
            times = interleave({"update": update, "matmul": matmul}, _reps(args), device)
            peak = mm_reps * 2 * n ** 3 / med(times["matmul"])
            dt = med(times["update"])
            toks = B * (P + T)
            head = vocab * model.config.hidden_size  # the LM head runs on the T response positions only
            flops = 6 * ((n_params - head) * toks + head * B * T) / dt
            rows.append({"shape": shape, "params": n_params, "B": B, "P": P, "T": T, "micro": micro,
                         "reps": len(times["update"]), "update_s": dt, "tok_s": toks / dt, "flop_s": flops,
                         "peak_matmul_flop_s": peak, "mfu": flops / peak, "seconds": times})
            del model, opt
            path = write_json("update", device, {"rows": rows, "note": UPDATE_NOTE.format(
                "1024^3 float32" if device == "cpu" else "8192^3 bf16")}, getattr(args, "out", None))
        print(table(f"update on {device}: tokens/s of fwd+bwd+AdamW and MFU against the measured matmul peak",
                    ["shape", "params", "B", "P+T", "s/update", "tokens/s", "GFLOP/s", "peak GFLOP/s", "MFU"],
                    [[r["shape"], f"{r['params'] / 1e6:.1f}M", r["B"], r["P"] + r["T"], round(r["update_s"], 3),
                      round(r["tok_s"]), round(r["flop_s"] / 1e9, 1), round(r["peak_matmul_flop_s"] / 1e9, 1),
                      round(r["mfu"], 3)] for r in rows]) + f"\n  -> {path}")
        results += rows
    return results


# -- entropy: peak memory and time of entropy + log-prob over [B, T, V] logits, chunked or not --------------------

def bench_entropy(args) -> list[dict]:
    from replicate.algorithms import entropy_from_logits, logprobs_from_logits
    results = []
    for device in devices(args):
        rows = []
        for shape, B, _, T in _cases("entropy", device, args):
            V = SHAPES[shape]["vocab_size"]
            g = torch.Generator(device).manual_seed(0)
            logits = torch.randn(B, T, V, device=device, generator=g)
            labels = torch.randint(0, V, (B, T), device=device, generator=g)
            chunk = max(1, B * T // 16)
            arms = {"unchunked": lambda: (logprobs_from_logits(logits, labels), entropy_from_logits(logits)),
                    f"chunked({chunk})": lambda: (logprobs_from_logits(logits, labels, chunk_size=chunk),
                                                  entropy_from_logits(logits, chunk_size=chunk))}
            ref = entropy_from_logits(logits)
            assert torch.allclose(ref, entropy_from_logits(logits, chunk_size=chunk), atol=1e-4)
            times = interleave(arms, _reps(args), device)
            mem = {name: peak_extra_bytes(fn, device) for name, fn in arms.items()}
            ent_only = {"unchunked": peak_extra_bytes(lambda: entropy_from_logits(logits), device),
                        f"chunked({chunk})": peak_extra_bytes(lambda: entropy_from_logits(logits, chunk), device)}
            base = logits.numel() * logits.element_size()
            for name in arms:
                rows.append({"shape": shape, "B": B, "T": T, "V": V, "arm": name, "logits_mb": base / 2**20,
                             "seconds": med(times[name]), "extra_over_logits": mem[name] / base,
                             "entropy_only_extra_over_logits": ent_only[name] / base, "reps": len(times[name])})
            u, c = rows[-2], rows[-1]
            c["time_over_unchunked"] = c["seconds"] / u["seconds"]
            c["memory_over_unchunked"] = c["extra_over_logits"] / u["extra_over_logits"]
            del logits
        path = write_json("entropy", device, {"rows": rows, "note": "log-prob (logprobs_from_logits) + "
                                              "entropy_from_logits, both with and without chunk_size; memory = peak "
                                              "bytes allocated above the logits, over the logits' bytes"},
                          getattr(args, "out", None))
        print(table(f"entropy on {device}: entropy + log-prob of [B, T, V] float32 logits; peak extra memory "
                    "in units of the logits",
                    ["B x T x V", "arm", "ms", "extra mem (H+logp)", "extra mem (H only)"],
                    [[f"{r['B']}x{r['T']}x{r['V']}", r["arm"], round(1000 * r["seconds"], 1),
                      round(r["extra_over_logits"], 2), round(r["entropy_only_extra_over_logits"], 2)]
                     for r in rows]) + f"\n  -> {path}")
        results += rows
    return results
