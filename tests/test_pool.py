"""The shared process pool and Ctrl-C: the first stops every worker and says per run what was kept, the second
exits at once; `--resume` then equals an uninterrupted run. SIGINT goes to the whole process group, as a
terminal's Ctrl-C does."""
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

STUBBORN = textwrap.dedent("""\
    import os
    import sys, time
    from replicate.runners.pool import Job, run_jobs

    def stubborn(i):  # a job that will not stop on the first Ctrl-C (a worker stuck in a long kernel)
        # one write(2) of the whole line: two workers' lines cannot interleave on the pipe (under PYTHONUNBUFFERED,
        # print writes the text and its newline apart, and "started 0started 1" counted as one start: a 60 s hang)
        os.write(1, f"started {i}\\n".encode())
        while True:
            try:
                time.sleep(0.05)
            except KeyboardInterrupt:
                pass

    if __name__ == "__main__":
        try:
            run_jobs([Job(stubborn, (i,), [f"run{i}"]) for i in range(int(sys.argv[1]))], 2, lambda *_: None,
                     log=lambda line: print(line, flush=True))
        except KeyboardInterrupt as exc:
            print(exc, file=sys.stderr)
            sys.exit(130)
    """)


def _default_sigint():
    """A shell that runs pytest in the background (`cmd &` without job control) starts it with SIGINT ignored, and
    Python then never raises KeyboardInterrupt: the child must get SIGINT's default back, as a terminal gives it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(argv, cwd, env=None):
    env = {**os.environ, "PYTHONPATH": str(REPO), "REPLICATE_HOME": str(cwd), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_default_sigint)


def _wait_for(cond, proc, timeout=300):
    """Poll cond until it holds. At the timeout the child's process group is killed, so a cond blocked in
    readline on a child that prints nothing more gets EOF and the test fails instead of hanging."""
    watchdog = threading.Timer(timeout, _kill_group, (proc,))
    watchdog.start()
    try:
        t0 = time.time()
        while not cond():
            assert proc.poll() is None, proc.communicate()
            assert time.time() - t0 < timeout
            time.sleep(0.1)
    finally:
        watchdog.cancel()


def _kill_group(proc):
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def test_a_wait_on_a_silent_child_fails_at_its_timeout_instead_of_hanging(tmp_path):
    proc = _start([sys.executable, "-c", "import time; print('one', flush=True); time.sleep(60)"], tmp_path)
    seen = []
    t0 = time.time()
    with pytest.raises(AssertionError):
        _wait_for(lambda: seen.append(proc.stdout.readline()) or "two" in seen[-1], proc, 2)
    assert time.time() - t0 < 10 and seen[0] == "one\n"
    proc.wait(timeout=10)


def _alive(pid):
    """Running (a zombie left for a container's init to reap counts as dead)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _children(pid):
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_second_ctrl_c_exits_at_once_and_kills_stuck_workers(tmp_path):
    (tmp_path / "stubborn.py").write_text(STUBBORN)
    proc = _start([sys.executable, "stubborn.py", "3"], tmp_path)
    seen = []
    _wait_for(lambda: seen.append(proc.stdout.readline()) or sum("started" in s for s in seen) == 2, proc, 60)
    workers = [p for p in _children(proc.pid) if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text()]
    os.killpg(proc.pid, signal.SIGINT)
    _wait_for(lambda: seen.append(proc.stdout.readline()) or "Ctrl-C: stopping" in seen[-1], proc, 10)
    time.sleep(0.5)
    assert proc.poll() is None  # the stuck workers hold the first Ctrl-C up
    t0 = time.time()
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    assert time.time() - t0 < 3 and proc.returncode == 130
    assert "second Ctrl-C: stopped at once" in err and "--resume" in err and "Traceback" not in err
    time.sleep(0.2)
    assert len(workers) == 2 and not any(_alive(p) for p in workers)


def test_ctrl_c_while_workers_start_is_quiet_and_quick(tmp_path):
    (tmp_path / "stubborn.py").write_text(STUBBORN.replace("import sys, time", "import sys, time\nimport torch"))
    proc = _start([sys.executable, "stubborn.py", "3"], tmp_path)
    _wait_for(lambda: len(_children(proc.pid)) >= 2, proc, 60)  # the workers exist and are importing torch
    t0 = time.time()
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and time.time() - t0 < 10
    assert "Traceback" not in err and "Warning" not in err and "continue with:" in err
    assert "started" not in out.replace("not started", "")  # no job began after the Ctrl-C
    assert sorted(line.split(":")[0] for line in out.splitlines() if "not started" in line) == ["run0", "run1", "run2"]


SPEC_STEPS = 12


@pytest.fixture(scope="module")
def pooled(tmp_path_factory, warm_store):
    """A 3-seed tiny spec whose warm-ups are cached in warm_store (built here once if missing)."""
    from conftest import TINY_SPEC
    from replicate.specs import load_spec
    from replicate.runners.rl.warmup import base_policy
    tmp = tmp_path_factory.mktemp("pooled")
    spec_file = tmp / "tinytest.yaml"
    spec_file.write_text(TINY_SPEC.replace("seeds: [0, 1]", "seeds: [0, 1, 2]")
                         .replace("checkpoint_every: 3", "checkpoint_every: 2"))
    cfg = load_spec(spec_file).resolve("tiny")
    for seed in (0, 1, 2):
        base_policy(cfg, warm_store, seed, log=lambda *_: None)
    return spec_file, cfg


def _strip(rows):
    return [{k: v for k, v in r.items() if k != "wall_time" and not k.startswith("time_")} for r in rows]


def test_ctrl_c_stops_the_pool_says_what_was_kept_and_resume_equals_uninterrupted(pooled, warm_store, tmp_path):
    from replicate.store import Run
    from replicate.runners.rl.trainer import train
    spec_file, cfg = pooled
    shutil.copytree(warm_store / "_warmup", tmp_path / "store" / "_warmup")
    argv = [sys.executable, "-m", "replicate", "run", str(spec_file), "--store", "store", "--steps", str(SPEC_STEPS)]
    proc = _start(argv, tmp_path, {"REPLICATE_WORKERS": "2"})

    def rows():
        return [len(p.read_text().splitlines()) for p in (tmp_path / "store").glob("tinytest/*/metrics.jsonl")]
    _wait_for(lambda: max(rows(), default=0) >= 3, proc)
    t0 = time.time()
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert time.time() - t0 < 10 and proc.returncode == 130, err
    assert "Traceback" not in err and "Warning" not in err
    said = [line for line in out.splitlines() if line.startswith("tiny-main-s")]
    assert len(said) == 3, out  # one line per run: two stopped (with what they kept), one never started
    assert sum(f"of {SPEC_STEPS} steps" in s for s in said) >= 1 and any("not started" in s for s in said)
    assert f"continue with: python -m replicate run {spec_file} --store store --steps {SPEC_STEPS} --resume" in err
    assert max(rows()) < SPEC_STEPS  # nothing trained to the end after the Ctrl-C

    res = subprocess.run([*argv, "--resume"], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(REPO), "REPLICATE_HOME": str(tmp_path),
                              "REPLICATE_WORKERS": "2", "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr
    from replicate.experiment import plan
    from replicate.specs import load_spec
    cfg = plan(load_spec(spec_file), "tiny", None, SPEC_STEPS)[0]["main"]
    for seed in (0, 1, 2):
        resumed = next(Run(p) for p in (tmp_path / "store" / "tinytest").glob(f"tiny-main-s{seed}-*"))
        assert resumed.done
        full = train(Run(tmp_path / f"full{seed}"), cfg, seed, warm_store, log=lambda *_: None)
        assert _strip(resumed.metrics()) == _strip(full)


def test_sigterm_to_the_parent_stops_the_pool_as_ctrl_c_does(tmp_path):
    (tmp_path / "stubborn.py").write_text(STUBBORN.replace("pass\n", "return 'stopped'\n", 1))
    proc = _start([sys.executable, "stubborn.py", "3"], tmp_path)
    seen = []
    _wait_for(lambda: seen.append(proc.stdout.readline()) or sum("started" in s for s in seen) == 2, proc, 60)
    workers = [p for p in _children(proc.pid) if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text()]
    proc.send_signal(signal.SIGTERM)  # the parent alone, as `kill PID` sends it
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:  # the workers hold the pipes open: kill them too, or this waits forever
        for p in [proc.pid, *workers]:
            with contextlib.suppress(ProcessLookupError):  # one already gone must not hide the real failure
                os.kill(p, signal.SIGKILL)
        out, err = proc.communicate()
    time.sleep(0.2)
    alive = [p for p in workers if _alive(p)]
    for p in alive:  # no stray workers left behind if the check fails
        os.kill(p, signal.SIGKILL)
    assert proc.returncode == 130 and "continue with:" in err and "Traceback" not in err, err
    assert "run2: not started" in out
    assert len(workers) == 2 and not alive


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_second_sigterm_or_sighup_exits_at_once_as_a_second_ctrl_c_does(tmp_path, sig):
    (tmp_path / "stubborn.py").write_text(STUBBORN)
    proc = _start([sys.executable, "stubborn.py", "3"], tmp_path)
    seen = []
    _wait_for(lambda: seen.append(proc.stdout.readline()) or sum("started" in s for s in seen) == 2, proc, 60)
    workers = [p for p in _children(proc.pid) if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text()]
    try:
        proc.send_signal(sig)
        _wait_for(lambda: seen.append(proc.stdout.readline()) or "stopping" in seen[-1], proc, 10)
        assert seen[-1].startswith(f"{sig.name}: stopping")
        time.sleep(0.5)
        assert proc.poll() is None  # the stuck workers hold the first stop up
        t0 = time.monotonic()
        proc.send_signal(sig)
        try:
            _out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:  # without the fix the second signal is lost in the wait
            err = "still running 10 s after the second signal"
        assert time.monotonic() - t0 < 3 and proc.returncode == 130, err
        assert f"second {sig.name}: stopped at once" in err and "--resume" in err and "Traceback" not in err, err
        time.sleep(0.2)
        assert len(workers) == 2 and not any(_alive(p) for p in workers)
    finally:  # no stray process left behind when a check fails
        for p in [proc.pid, *workers]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)


def test_the_cancelled_future_race_is_quiet_and_other_thread_errors_are_not(monkeypatch):
    """CPython 3.11's executor thread raises InvalidStateError on a cancelled future when the workers die after a
    stop (gh-107219): the pool's thread hook drops that one and hands any other thread error on."""
    from concurrent.futures import Future, InvalidStateError

    from replicate.runners import pool

    def raised(fn):
        try:
            fn()
        except Exception as exc:  # noqa: BLE001
            return threading.ExceptHookArgs((type(exc), exc, exc.__traceback__, None))
        raise AssertionError("did not raise")

    def cancelled_race():
        fut = Future()
        fut.cancel()
        fut.set_exception(RuntimeError("broken pool"))

    passed_on = []
    monkeypatch.setattr(pool, "_PREVIOUS_EXCEPTHOOK", passed_on.append)
    race, other = raised(cancelled_race), raised(lambda: 1 / 0)
    assert race.exc_type is InvalidStateError
    pool._quiet_cancelled_future_race(race)
    pool._quiet_cancelled_future_race(other)
    assert passed_on == [other]


def test_workers_exit_when_their_parent_is_killed(tmp_path):
    (tmp_path / "stubborn.py").write_text(STUBBORN)
    proc = _start([sys.executable, "stubborn.py", "2"], tmp_path)
    seen = []
    _wait_for(lambda: seen.append(proc.stdout.readline()) or sum("started" in s for s in seen) == 2, proc, 60)
    workers = [p for p in _children(proc.pid) if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text()]
    proc.kill()  # SIGKILL: no handler runs, the workers are orphaned
    proc.wait(timeout=10)
    t0 = time.time()
    while any(_alive(p) for p in workers) and time.time() - t0 < 10:
        time.sleep(0.2)
    alive = [p for p in workers if _alive(p)]
    for p in alive:  # no stray workers left behind if the check fails
        os.kill(p, signal.SIGKILL)
    assert len(workers) == 2 and not alive


KILLED = textwrap.dedent("""\
    import os, signal, sys
    from replicate.errors import UserError
    from replicate.runners.pool import Job, run_jobs

    def killed(i):  # a worker the OS kills (as the out-of-memory killer does)
        os.kill(os.getpid(), signal.SIGKILL)

    if __name__ == "__main__":
        try:
            run_jobs([Job(killed, (0,), ["run0"])], 1, lambda *_: None)
        except UserError as exc:
            print(exc, file=sys.stderr)
            sys.exit(2)
    """)


def test_a_worker_killed_from_outside_ends_the_pool_with_one_line(tmp_path):
    (tmp_path / "killed.py").write_text(KILLED)
    proc = _start([sys.executable, "killed.py"], tmp_path)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "a worker process was killed from outside" in err and "--resume" in err, err
    assert "Traceback" not in err
