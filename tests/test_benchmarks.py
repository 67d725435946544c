"""The benchmark helpers whose behaviour others' figures rest on: benchmarks/alternate.py runs a
command at two revisions in turn; timing.ThreadCPU splits a process's CPU time by thread and
timing.call_cpu a thread's by method. Smoke runs of a few seconds; no speed is asserted."""
import hashlib
import json
import subprocess
import sys
import threading
import time

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from timing import ThreadCPU, call_cpu  # noqa: E402


def alternate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "alternate.py"), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def worktrees() -> list[str]:
    return subprocess.run(["git", "-C", str(ROOT), "worktree", "list"], capture_output=True, text=True).stdout.splitlines()


def test_alternate_runs_the_two_revisions_in_turn_each_from_its_own_tree():
    before = worktrees()
    # Each run writes where it imported the project from into its own {out} folder, and checks it there.
    check = ("import model, pathlib, sys; here = pathlib.Path(model.__file__).resolve().parents[1]; "
             "sys.exit(0 if here == pathlib.Path.cwd().resolve() else 5)")
    r = alternate("--before", "HEAD", "--runs", "2", "--", "-c", check)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [line.split()[2] for line in lines[:4]] == ["before", "after"] * 2
    out = json.loads(lines[-1])
    assert out["runs"] == 2 and out["before"] != out["after"]
    assert out["before_wall_s"] > 0 and out["after_cpu_s"] > 0 and out["speedup_wall"] > 0
    assert worktrees() == before  # the revision's worktree is removed


def test_a_failing_command_is_one_line_and_a_nonzero_exit():
    r = alternate("--before", "HEAD", "--runs", "1", "--", "-c", "import sys; sys.exit('no such video')")
    assert r.returncode == 1
    assert "exited with 1: no such video" in r.stderr and "Traceback" not in r.stderr
    r = alternate("--before", "no-such-revision", "--runs", "1", "--", "-c", "pass")
    assert r.returncode == 1 and "no-such-revision" in r.stderr and "Traceback" not in r.stderr


def spin(seconds: float) -> None:
    """Burn this thread's CPU for `seconds`, mostly outside the GIL (hashing a large buffer releases
    it), as decoding and the model do, so that the sampling thread reads on time."""
    data = bytes(1 << 20)
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        hashlib.sha256(data).digest()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_thread_cpu_counts_each_group_of_threads_and_the_rest():
    early = threading.Thread(target=spin, args=(0.3,), name="capture:a")
    with ThreadCPU(("capture", "infer")) as cpu:
        early.start()
        early.join()  # ended inside the block: counted to its last reading
        late = threading.Thread(target=spin, args=(0.6,), name="infer:m")
        late.start()
        spin(0.2)  # the calling thread: other
        late.join()
    s = cpu.seconds
    assert set(s) == {"capture", "infer", "other", "total"}
    assert 0.2 <= s["capture"] <= 0.35 and 0.5 <= s["infer"] <= 0.65, s
    assert 0.15 <= s["other"] <= 0.4, s  # the calling thread, and what the ended threads did after their last reading
    assert s["total"] == pytest.approx(s["capture"] + s["infer"] + s["other"])


class Stage:
    def work(self, seconds):
        spin(seconds)
        return seconds

    def idle(self, seconds):
        time.sleep(seconds)


def test_call_cpu_counts_the_cpu_inside_each_method_and_unwraps_them():
    stage = Stage()
    with call_cpu(stage, "work", "idle") as spent:
        assert stage.work(0.2) == 0.2  # the wrapped method still answers
        stage.work(0.1)
        stage.idle(0.3)  # asleep: no CPU
        spin(0.2)  # outside every method
    assert 0.28 <= spent["work"] <= 0.4 and spent["idle"] < 0.05, spent
    assert "work" not in vars(stage) and stage.work.__func__ is Stage.work
