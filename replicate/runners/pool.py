"""Worker processes shared by the runners: how many train at once, jobs in spawned workers, steps counted across
them, and Ctrl-C that stops.

Ctrl-C reaches only this (the parent) process: the workers start with SIGINT blocked, then ignored, so a terminal's
Ctrl-C, which goes to the whole process group, cannot kill a worker mid-import or mid-write. The first Ctrl-C
cancels every queued job and asks each busy worker to stop (SIGUSR1, raised there as KeyboardInterrupt, which the
trainer turns into a statement of what it kept); the parent waits for them, prints one line per run and the
`--resume` command, and raises `Interrupted`. A second Ctrl-C kills the workers and exits at once. SIGTERM and
SIGHUP (`kill`, a closed terminal) stop the parent as a Ctrl-C does, the first and the second; a worker whose parent
is gone (SIGKILL) exits within seconds instead of training on unwatched; a worker the OS kills (out of memory) ends
the pool with one line.
"""
from __future__ import annotations

import atexit
import os
import shlex
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, InvalidStateError, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Callable

from replicate.errors import Interrupted, UserError


@dataclass
class Job:
    """fn(*args) in a worker (fn and args picklable, fn at module level); runs: the names of the runs it trains,
    in order, for the lines that say what was kept."""
    fn: Callable
    args: tuple
    runs: list[str] = field(default_factory=list)


@dataclass
class _Stopped:
    """A job interrupted by the first Ctrl-C (or never started after it), with what the worker said."""
    said: str = ""
    started: bool = True


# ---- the worker side ------------------------------------------------------------------------------------------
_QUEUE = None   # progress messages to the parent: ("start" | "end", pid) and ("steps", pid, n)
_STOP = None    # set by the parent's first Ctrl-C: a job picked up after it does not start
_BUSY = False   # a job is running in this worker (SIGUSR1 interrupts only then)


def _init(stop, queue):
    global _STOP, _QUEUE
    _STOP, _QUEUE = stop, queue
    queue.cancel_join_thread()  # a worker never blocks at exit on progress the parent did not read
    atexit.register(os._exit, 0)  # its results are sent: skip torch's seconds-long interpreter teardown
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # discards a Ctrl-C that came while this worker started
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a closed terminal hangs up the whole group: the parent stops us
    signal.signal(signal.SIGUSR1, _on_stop)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked by the parent while spawning
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), daemon=True).start()


def _exit_when_orphaned(parent: int, every: float = 1.0):
    """Exit this worker once its parent is gone (killed with SIGKILL, which no handler sees): its run keeps the
    steps up to its last checkpoint, and nothing trains on that nobody will read."""
    while os.getppid() == parent:
        time.sleep(every)
    os._exit(1)


def _on_stop(signum, frame):
    if _BUSY:
        raise KeyboardInterrupt


def _call(fn, args):
    global _BUSY
    _BUSY = True
    try:
        _QUEUE.put(("start", os.getpid()))
        if _STOP.is_set():
            return _Stopped(started=False)
        return fn(*args)
    except KeyboardInterrupt as exc:  # the job did not say what it kept itself
        return _Stopped(str(exc))
    finally:
        _BUSY = False
        _QUEUE.put(("end", os.getpid()))


def steps_done(n: int = 1):
    """Count n training steps towards the pool's progress bar (a no-op outside a pool worker)."""
    if _QUEUE is not None:
        _QUEUE.put(("steps", os.getpid(), n))
    if _STOP is not None and _STOP.is_set() and _BUSY:  # in case the signal came before the job said "start"
        raise KeyboardInterrupt


# ---- the parent side ------------------------------------------------------------------------------------------
def run_jobs(jobs: list[Job], workers: int, on_result: Callable, steps: int = 0, desc: str = "",
             log=print) -> None:
    """Run every job in `workers` spawned processes; on_result(job, result) as each finishes. `steps`: the
    training steps of all jobs, for a progress bar that counts them (workers call steps_done())."""
    import multiprocessing
    from tqdm import tqdm
    ctx = multiprocessing.get_context("spawn")
    stop, queue = ctx.Event(), ctx.Queue()
    # SIGINT blocked while the workers are spawned: they inherit the mask and ignore Ctrl-C from their first
    # instruction on (see _init); a Ctrl-C meanwhile stays pending here and is raised once unblocked, below
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init, initargs=(stop, queue))
        futures = {pool.submit(_call, job.fn, job.args): job for job in jobs}
    except BaseException:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        raise
    bar = tqdm(total=steps, desc=desc, unit="step", leave=False, smoothing=0.1) if steps else None
    busy: set[int] = set()
    pending = set(futures)
    previous = _terminate_as_ctrl_c()
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            _drain(queue, busy, bar)
            for fut in done:
                on_result(futures[fut], fut.result())
    except KeyboardInterrupt as exc:
        _stop(pool, futures, pending, stop, queue, busy, on_result, log, bar, what=str(exc) or "Ctrl-C")
    except BrokenProcessPool:
        _stop(pool, futures, pending, stop, queue, busy, lambda *_: None, lambda *_: None, bar, quiet=True)
        raise UserError(f"a worker process was killed from outside (out of memory? see `dmesg`); finished runs are "
                        f"kept; continue with: {resume_command()} (fewer at once: REPLICATE_WORKERS=1)") from None
    except BaseException:
        _stop(pool, futures, pending, stop, queue, busy, lambda *_: None, lambda *_: None, bar, quiet=True)
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if bar is not None:
            bar.close()
    pool.shutdown(wait=True)


def _quiet_cancelled_future_race(args) -> None:
    """threading.excepthook that drops CPython 3.11's InvalidStateError from the executor's manager thread: when the
    workers die (`kill -- -PGID`) after the stop cancelled the queued jobs, it sets an exception on a cancelled
    future (gh-107219, fixed in 3.12). Any other thread exception goes to the previous hook."""
    if args.exc_type is InvalidStateError and "CANCELLED" in str(args.exc_value):
        return
    _PREVIOUS_EXCEPTHOOK(args)


_PREVIOUS_EXCEPTHOOK = threading.excepthook
threading.excepthook = _quiet_cancelled_future_race


def _terminate_as_ctrl_c() -> dict:
    """SIGTERM and SIGHUP raise KeyboardInterrupt here, so `kill` or a closed terminal stops the workers and keeps
    their runs as a Ctrl-C does. Returns the handlers it replaced (none off the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)
    return {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}


def _drain(queue, busy: set, bar) -> None:
    import queue as queue_mod
    while True:
        try:
            msg = queue.get_nowait()
        except (queue_mod.Empty, OSError, EOFError):
            return
        if msg[0] == "start":
            busy.add(msg[1])
        elif msg[0] == "end":
            busy.discard(msg[1])
        elif msg[0] == "steps" and bar is not None:
            bar.update(msg[2])


def _stop(pool, futures, pending, stop, queue, busy, on_result, log, bar, quiet=False, what="Ctrl-C"):
    """The first stop (`what`: Ctrl-C, SIGTERM or SIGHUP): cancel the queued jobs, interrupt the running ones, say
    per run what was kept. Meanwhile any of the three again exits at once."""
    stop.set()
    main = threading.current_thread() is threading.main_thread()  # only it may set signal handlers
    stops = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, lambda signum, _: _exit_now(pool, signum, second=not quiet))
                for sig in stops} if main else {}
    try:
        cancelled = {fut for fut in pending if fut.cancel()}
        if bar is not None:
            bar.close()
        if not quiet:
            log(f"{what}: stopping the running runs and cancelling the queued ones (Ctrl-C again exits at once)")
        running = _wait_stopped(pool, futures, pending - cancelled, queue, busy, on_result, log)
        for fut in sorted(cancelled | running, key=list(futures).index):
            for name in futures[fut].runs:
                log(f"{name}: not started (it was queued); nothing to keep")
        pool.shutdown(wait=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not quiet:
        raise Interrupted(f"interrupted; continue with: {resume_command()}")


def _wait_stopped(pool, futures, running, queue, busy, on_result, log, grace: float = 1.0) -> set:
    """Interrupt each busy worker and collect what its job says. Once no worker has been busy for `grace`
    seconds, the jobs left are queued or waiting for a worker still starting: the workers are killed (nothing
    of theirs to save) and those jobs returned."""
    signalled: set[int] = set()
    idle_since = None
    while running:
        _drain(queue, busy, None)
        for pid in busy - signalled:
            _kill(pid, signal.SIGUSR1)
            signalled.add(pid)
        done, running = wait(running, timeout=0.2)
        for fut in done:
            _settle(futures[fut], fut, on_result, log)
        idle_since = None if busy else (idle_since or time.monotonic())
        if running and idle_since and time.monotonic() - idle_since > grace:
            _kill_workers(pool)
            break
    return running


def _settle(job: Job, fut, on_result, log):
    """A job that ended after the first Ctrl-C: its result, or a line per run saying it stopped."""
    try:
        result = fut.result()
    except Exception as exc:  # noqa: BLE001 (the interrupt is what the user asked about; say the error in a line)
        result = _Stopped(f"failed: {exc}")
    if not isinstance(result, _Stopped):
        on_result(job, result)
        return
    for name in job.runs:
        why = "not started (it was queued); nothing to keep" if not result.started else \
            f"stopped; {result.said or 'its finished steps are kept'}"
        log(f"{name}: {why}")


def _kill(pid: int, sig) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_workers(pool):
    for pid in list(getattr(pool, "_processes", None) or {}):
        _kill(pid, signal.SIGKILL)


def _exit_now(pool, signum: int = signal.SIGINT, second: bool = True):
    """The second stop (Ctrl-C, SIGTERM or SIGHUP while the first waits for the workers), or a stop while the pool
    winds down after an error: kill the workers and exit, no waiting (a run keeps its steps up to its checkpoint)."""
    _kill_workers(pool)
    what = ("second " if second else "") + ("Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name)
    os.write(2, (f"\n{what}: stopped at once; each run keeps its steps up to its last checkpoint; continue "
                 f"with: {resume_command()}\n").encode())
    os._exit(130)


def resume_command() -> str:
    """The command line that was run, with --resume (what continues every stopped run)."""
    argv = list(sys.argv[1:])
    if "--resume" not in argv:
        argv.append("--resume")
    return "python -m replicate " + shlex.join(argv)


def kept(run, total: int) -> str:
    """What an interrupted run has in the store: its logged steps and the step its checkpoint resumes from."""
    rows = run.metrics(torn_ok=True) if run.started else []
    if not rows:
        return f"{run.path.name}: stopped before its first step; nothing of it to keep (a finished warm-up is cached)"
    ckpt = 0
    if run.checkpoint_file.exists():
        import torch
        ckpt = torch.load(run.checkpoint_file, mmap=True, weights_only=False, map_location="cpu")["step"]
    return (f"{run.path.name}: stopped after {len(rows)} of {total} steps; kept its metrics and the checkpoint at "
            f"step {ckpt} (--resume continues from step {ckpt})" if ckpt else
            f"{run.path.name}: stopped after {len(rows)} of {total} steps, before its first checkpoint; "
            "--resume starts it again from step 0")


def parallel_workers(pending) -> int:
    """How many processes train at once: $REPLICATE_WORKERS, else one per CPU core (at most one per seed) on a
    CPU-only machine outside `accelerate launch` (tiny and pretrained models alike), else 1."""
    from replicate.paths import world_size
    if world_size() > 1:  # under `accelerate launch` the processes share each run; no pool on top
        return 1
    if os.environ.get("REPLICATE_WORKERS"):
        return max(1, int(os.environ["REPLICATE_WORKERS"]))
    import torch
    if torch.cuda.is_available():
        return 1
    if not pending:
        return 1
    return max(1, min(os.cpu_count() or 1, len({s for _, _, s, _ in pending})))
