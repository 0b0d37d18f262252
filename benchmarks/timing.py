"""The one timing helper every benchmark uses: warm up, then measure; figures stand beside the run's matmul peak.

- ``measure(fn, warmup=…, repeat=…)`` (or ``min_time=…``) calls ``fn`` ``warmup`` times untimed, then times
  each further call with ``time.perf_counter`` (and the process's CPU time with ``time.process_time``) and
  returns a :class:`Timing`: median, quartiles, min, max, n. ``setup`` builds each call's argument outside
  the timed span; ``sync`` (e.g. ``torch.cuda.synchronize``) runs just before and just after each timed call.
- ``stopwatch()`` times a one-off cost that cannot be repeated (a first call, a cache build, a whole fit).
- ``beside_peak(name, timing, units=…, flops=…, peak=…)`` gives a figure's throughput and, where its FLOPs
  are known, its achieved GFLOP/s and share of the matmul peak (``benchmarks.reference.run_peak_flops``,
  measured once per run).

Which statistic a figure uses (median or best) is the benchmark's choice and is kept from run to run so that
``results.json`` history stays comparable.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

_clock = time.perf_counter      # wall clock; tests replace these two with fakes
_cpu_clock = time.process_time  # CPU seconds of this process (all its threads)


def _quantile(sorted_times: tuple[float, ...], q: float) -> float:
    """Linear-interpolation quantile (numpy's default) of already sorted values."""
    pos = (len(sorted_times) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(sorted_times) - 1)
    return sorted_times[lo] + (sorted_times[hi] - sorted_times[lo]) * (pos - lo)


@dataclass(frozen=True)
class Timing:
    """Seconds of each timed call (warm-up calls excluded), wall and CPU, with their summary statistics."""

    times: tuple[float, ...]
    cpu_times: tuple[float, ...] = ()
    warmup: int = 0
    results: tuple = field(default=(), repr=False)  # fn's return values from the timed calls, if kept

    def __post_init__(self):
        if not self.times:
            raise ValueError("a Timing needs at least one timed call")

    @property
    def n(self) -> int:
        return len(self.times)

    @property
    def total_s(self) -> float:
        return sum(self.times)

    @property
    def median_s(self) -> float:
        return statistics.median(self.times)

    @property
    def min_s(self) -> float:
        return min(self.times)

    @property
    def max_s(self) -> float:
        return max(self.times)

    @property
    def q1_s(self) -> float:
        return _quantile(tuple(sorted(self.times)), 0.25)

    @property
    def q3_s(self) -> float:
        return _quantile(tuple(sorted(self.times)), 0.75)

    @property
    def iqr_s(self) -> float:
        return self.q3_s - self.q1_s

    @property
    def cpu_median_s(self) -> float | None:
        return statistics.median(self.cpu_times) if self.cpu_times else None

    def seconds(self, stat: str = "median") -> float:
        """One call's seconds by ``stat``: "median", "min" (best), "max" or "mean" (total / n)."""
        if stat == "mean":
            return self.total_s / self.n
        return {"median": self.median_s, "min": self.min_s, "max": self.max_s}[stat]

    def per_s(self, units: float = 1.0, stat: str = "median") -> float:
        """Throughput: ``units`` done per call (images, frames) divided by one call's seconds."""
        return units / self.seconds(stat)

    def summary(self) -> dict:
        return {"n": self.n, "warmup": self.warmup, "median_s": self.median_s, "iqr_s": self.iqr_s,
                "min_s": self.min_s, "max_s": self.max_s, "cpu_median_s": self.cpu_median_s}


def measure(fn: Callable, *, warmup: int = 1, repeat: int | None = None, min_time: float | None = None,
            setup: Callable[[], Any] | None = None, sync: Callable[[], Any] | None = None,
            keep_results: bool = False, max_repeat: int = 1000) -> Timing:
    """Call ``fn`` ``warmup`` times untimed, then time it ``repeat`` (default 5) times; with ``min_time``, keep timing until
    the timed calls add up to ``min_time`` seconds (``repeat`` is then the least number of calls, default 1;
    ``max_repeat`` the most).

    With ``setup``, ``fn(setup())`` is called and ``setup`` runs outside the timed span (fresh inputs per call).
    """
    if min_time is None and repeat is None:
        repeat = 5
    if (repeat is not None and repeat < 1) or (min_time is not None and min_time < 0):
        raise ValueError("measure needs repeat >= 1 and min_time >= 0")
    if warmup < 0:
        raise ValueError("warmup must be >= 0")

    def call():
        return fn(setup()) if setup is not None else fn()

    def timed_call():
        arg = setup() if setup is not None else None
        if sync is not None:
            sync()
        c0, t0 = _cpu_clock(), _clock()
        out = fn(arg) if setup is not None else fn()
        if sync is not None:
            sync()
        t1, c1 = _clock(), _cpu_clock()
        return t1 - t0, c1 - c0, out

    for _ in range(warmup):
        call()
    times, cpu, results = [], [], []
    while True:
        dt, dc, out = timed_call()
        times.append(dt)
        cpu.append(dc)
        if keep_results:
            results.append(out)
        del out
        if min_time is None:
            if len(times) >= repeat:
                break
        elif (len(times) >= (repeat or 1) and sum(times) >= min_time) or len(times) >= max_repeat:
            break
    return Timing(tuple(times), tuple(cpu), warmup, tuple(results))


class Stopwatch:
    """Wall and CPU seconds of one ``with`` block; ``s`` and ``cpu_s`` are set when the block ends."""

    s: float
    cpu_s: float


@contextmanager
def stopwatch(cpu_clock: Callable[[], float] | None = None) -> Iterator[Stopwatch]:
    """Time a one-off cost that cannot be repeated: ``with stopwatch() as sw: ...`` then ``sw.s``, ``sw.cpu_s``.

    ``cpu_clock`` replaces the process's CPU clock (e.g. one that adds finished child processes)."""
    cpu_clock = cpu_clock or _cpu_clock
    sw = Stopwatch()
    c0, t0 = cpu_clock(), _clock()
    try:
        yield sw
    finally:
        sw.s, sw.cpu_s = _clock() - t0, cpu_clock() - c0


def beside_peak(name: str, timing: Timing, *, units: float, unit: str = "images", flops: float | None = None,
                peak: float | None = None, stat: str = "median") -> dict:
    """A figure beside the run's reference: ``{name}_{unit}_per_s`` and, when ``flops`` per call are known,
    ``{name}_gflops`` and ``{name}_share_of_matmul_peak`` (achieved FLOP/s over the matmul peak's FLOP/s)."""
    dt = timing.seconds(stat)
    out = {f"{name}_{unit}_per_s": units / dt}
    if flops is not None:
        out[f"{name}_gflops"] = flops / dt / 1e9
        if peak is not None:
            out[f"{name}_share_of_matmul_peak"] = flops / dt / peak
    return out


# --- peak memory in a fresh process ----------------------------------------------------------------------

# The opening of a memory benchmark's child process (Python source): ``status(key)`` reads this process's
# /proc/self/status in kB, ``start_sampling()`` returns ``(rss_now, samples, done)`` with a thread appending
# the resident set to ``samples`` every 20 ms until ``done.set()``.
RSS_SAMPLER = r'''
import json, sys, threading


def status(key):  # kB, from the kernel's own accounting of this process
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])


def start_sampling():
    samples, done = [status("VmRSS")], threading.Event()

    def sample():
        while not done.wait(0.02):
            samples.append(status("VmRSS"))

    threading.Thread(target=sample, daemon=True).start()
    return samples[0], samples, done
'''


def run_child(code: str, *args: str, cwd=None) -> dict:
    """Run ``RSS_SAMPLER + code`` in a fresh Python with ``args`` (a memory figure needs a process of its own)
    and return the JSON its last printed line holds; a failure is an error with the child's stderr."""
    import json
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", RSS_SAMPLER + code, *args], capture_output=True, text=True, cwd=cwd)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark child {args} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
