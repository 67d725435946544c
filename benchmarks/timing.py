"""Shared timing helpers of the benchmark scripts."""
from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager

import numpy as np


def median_ms(fn, repeat: int) -> float:
    """Median wall time of `fn()` in milliseconds, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return float(np.median(times))


def _thread_cpu_s(tid: int, ticks_per_s: int) -> float | None:
    """CPU seconds (user + system) of one thread of this process, or None once it has ended (Linux)."""
    try:
        with open(f"/proc/self/task/{tid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / ticks_per_s


class ThreadCPU:
    """CPU seconds of this process while a block runs, split into `groups` of Python threads (by
    thread name up to its first ':'; the monitor's stages are `capture:<feed>` and `infer:<model>`)
    and `other`: the rest of the process (the calling thread, FFmpeg's and torch's own threads).
    Threads are read from /proc every `every_s`, so one that ends inside the block is counted to
    its last reading: up to `every_s` of its time (and the GIL's switch interval) moves to `other`,
    while the total (the process's) is exact.

        with ThreadCPU(("capture", "infer")) as cpu:
            session.run()
        cpu.seconds  # {"capture": ..., "infer": ..., "other": ..., "total": ...}
    """

    def __init__(self, groups: tuple[str, ...], every_s: float = 0.05):
        self.groups, self.every_s = tuple(groups), every_s
        self.seconds: dict[str, float] = {}
        self._start: dict[int, float] = {}
        self._last: dict[int, tuple[str, float]] = {}  # tid -> (group, CPU seconds at the last reading)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._total = 0.0  # the process's CPU seconds at the start
        self._ticks_per_s = os.sysconf("SC_CLK_TCK")  # /proc counts CPU time in clock ticks

    def _read(self) -> None:
        for t in threading.enumerate():
            if t.native_id is None or t is self._thread:
                continue
            cpu = _thread_cpu_s(t.native_id, self._ticks_per_s)
            if cpu is not None:
                # a thread first seen after the start was started inside the block: all its time counts
                self._start.setdefault(t.native_id, 0.0 if self._thread else cpu)
                self._last[t.native_id] = (t.name.split(":", 1)[0], cpu)

    def _sample(self) -> None:
        while not self._stop.wait(self.every_s):
            self._read()

    def __enter__(self) -> "ThreadCPU":
        self._read()  # threads already running count from here
        self._total = time.process_time()
        self._thread = threading.Thread(target=self._sample, name="ThreadCPU", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._read()
        total = time.process_time() - self._total
        groups = dict.fromkeys(self.groups, 0.0)
        for tid, (group, cpu) in self._last.items():
            if group in groups:
                groups[group] += cpu - self._start[tid]
        self.seconds = {**groups, "other": total - sum(groups.values()), "total": total}


@contextmanager
def call_cpu(obj, *names: str):
    """CPU seconds spent inside `obj.NAME(...)` calls while the block runs, by name: each call's
    thread time (the calling thread's, so a call must not hand its work to other threads). The
    methods are wrapped on this one instance and unwrapped afterwards.

        with call_cpu(predictor, "prepare", "outputs") as spent:
            session.run()
        spent  # {"prepare": ..., "outputs": ...}
    """
    spent = dict.fromkeys(names, 0.0)

    def timed(name, fn):
        def call(*args, **kwargs):
            t = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += time.thread_time() - t
        return call

    for name in names:
        setattr(obj, name, timed(name, getattr(obj, name)))
    try:
        yield spent
    finally:
        for name in names:
            delattr(obj, name)
