"""The benchmarks' shared timing helper, on a fake clock: no real time is measured or asserted here."""
import json
import re
from pathlib import Path

import pytest

from benchmarks import reference, timing
from benchmarks.timing import Timing, beside_peak, measure, stopwatch

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


class FakeClock:
    """A clock that only moves when told to (``advance``), or by ``tick`` on every read."""

    def __init__(self, tick: float = 0.0):
        self.now, self.tick, self.reads = 0.0, tick, 0

    def __call__(self) -> float:
        self.reads += 1
        self.now += self.tick
        return self.now

    def advance(self, s: float) -> None:
        self.now += s


@pytest.fixture
def clock(monkeypatch):
    wall, cpu = FakeClock(), FakeClock()
    monkeypatch.setattr(timing, "_clock", wall)
    monkeypatch.setattr(timing, "_cpu_clock", cpu)
    return wall, cpu


def _costing(wall, durations, cpu=None, cpu_share=0.5):
    """A function whose i-th call takes durations[i] fake seconds (and cpu_share of that in CPU seconds)."""
    calls = []

    def fn(*args):
        d = durations[len(calls)]
        calls.append(args)
        wall.advance(d)
        if cpu is not None:
            cpu.advance(d * cpu_share)
        return len(calls)

    return fn, calls


def test_warmup_calls_are_not_timed(clock):
    wall, _ = clock
    fn, calls = _costing(wall, [100.0, 100.0, 1.0, 2.0, 3.0])
    t = measure(fn, warmup=2, repeat=3)
    assert len(calls) == 5
    assert t.times == (1.0, 2.0, 3.0)
    assert (t.n, t.warmup) == (3, 2)


@pytest.mark.parametrize("repeat", [1, 4, 7])
def test_repeat_count_is_honoured(clock, repeat):
    wall, _ = clock
    fn, calls = _costing(wall, [0.5] * 20)
    t = measure(fn, warmup=1, repeat=repeat)
    assert t.n == repeat and len(calls) == repeat + 1


def test_default_is_one_warmup_and_five_timed_calls(clock):
    wall, _ = clock
    fn, calls = _costing(wall, [1.0] * 10)
    t = measure(fn)
    assert (t.warmup, t.n, len(calls)) == (1, 5, 6)


def test_statistics_are_exact_on_a_fake_clock(clock):
    wall, cpu = clock
    fn, _ = _costing(wall, [9.0, 4.0, 1.0, 10.0, 2.0, 3.0], cpu=cpu, cpu_share=0.5)
    t = measure(fn, warmup=1, repeat=5)
    assert t.times == (4.0, 1.0, 10.0, 2.0, 3.0)
    assert t.cpu_times == (2.0, 0.5, 5.0, 1.0, 1.5)
    assert (t.median_s, t.min_s, t.max_s, t.total_s) == (3.0, 1.0, 10.0, 20.0)
    assert (t.q1_s, t.q3_s, t.iqr_s) == (2.0, 4.0, 2.0)
    assert t.cpu_median_s == 1.5
    assert t.seconds("mean") == 4.0
    assert t.per_s(12) == 4.0 and t.per_s(12, stat="min") == 12.0
    assert t.summary() == {"n": 5, "warmup": 1, "median_s": 3.0, "iqr_s": 2.0, "min_s": 1.0, "max_s": 10.0,
                           "cpu_median_s": 1.5}


def test_quartiles_interpolate_between_calls():
    t = Timing((1.0, 2.0, 3.0, 4.0))
    assert (t.median_s, t.q1_s, t.q3_s) == (2.5, 1.75, 3.25)
    assert Timing((7.0,)).iqr_s == 0.0


def test_min_time_times_until_the_calls_add_up(clock):
    wall, _ = clock
    fn, calls = _costing(wall, [0.25] * 50)
    assert measure(fn, warmup=0, min_time=1.0).n == len(calls) == 4
    fn, calls = _costing(wall, [0.25] * 50)
    assert measure(fn, warmup=0, min_time=1.0, repeat=6).n == 6  # repeat is then the least number of calls
    fn, calls = _costing(wall, [0.25] * 50)
    assert measure(fn, warmup=0, min_time=100.0, max_repeat=3).n == len(calls) == 3


def test_setup_runs_outside_the_timed_span_and_feeds_each_call(clock):
    wall, _ = clock
    made = []

    def setup():
        wall.advance(50.0)  # building the inputs is slow, and must not count
        made.append(len(made))
        return made[-1]

    fn, calls = _costing(wall, [1.0, 2.0, 3.0])
    t = measure(fn, setup=setup, warmup=1, repeat=2)
    assert t.times == (2.0, 3.0)
    assert calls == [(0,), (1,), (2,)]


def test_sync_brackets_each_timed_call(clock):
    wall, _ = clock
    log = []

    def fn():
        log.append("fn")
        wall.advance(1.0)

    def sync():
        log.append("sync")
        wall.advance(0.125)  # waiting for the device inside the bracket counts

    t = measure(fn, warmup=1, repeat=2, sync=sync)
    assert log == ["fn", "sync", "fn", "sync", "sync", "fn", "sync"]
    assert t.times == (1.125, 1.125)


def test_results_are_kept_only_when_asked(clock):
    wall, _ = clock
    fn, _ = _costing(wall, [1.0] * 4)
    assert measure(fn, warmup=1, repeat=3, keep_results=True).results == (2, 3, 4)
    fn, _ = _costing(wall, [1.0] * 4)
    assert measure(fn, warmup=1, repeat=3).results == ()


@pytest.mark.parametrize("kwargs", [{"repeat": 0}, {"warmup": -1}, {"min_time": -1.0}])
def test_bad_arguments_are_refused(clock, kwargs):
    with pytest.raises(ValueError):
        measure(lambda: None, **kwargs)


def test_an_empty_timing_is_refused():
    with pytest.raises(ValueError):
        Timing(())


def test_stopwatch_times_one_block_even_when_it_raises(clock):
    wall, cpu = clock
    with stopwatch() as sw:
        wall.advance(2.5)
        cpu.advance(1.0)
    assert (sw.s, sw.cpu_s) == (2.5, 1.0)
    with pytest.raises(RuntimeError), stopwatch() as sw:
        wall.advance(4.0)
        raise RuntimeError
    assert sw.s == 4.0
    children = FakeClock()
    with stopwatch(cpu_clock=children) as sw:
        children.advance(3.0)
    assert sw.cpu_s == 3.0


def test_beside_peak_gives_the_historical_figure_names_and_exact_shares():
    t = Timing((0.5, 0.5, 2.0))
    figures = beside_peak("channels_last", t, units=64, flops=2e9, peak=8e9)
    assert figures == {"channels_last_images_per_s": 128.0, "channels_last_gflops": 4.0,
                       "channels_last_share_of_matmul_peak": 0.5}
    history = json.loads((BENCH / "results.json").read_text())["topics"]["models"]
    assert set(figures) <= set(history)
    assert beside_peak("x", t, units=1, unit="frames") == {"x_frames_per_s": 2.0}
    assert beside_peak("x", t, units=1, flops=1e9, stat="max") == {"x_images_per_s": 0.5, "x_gflops": 0.5}


def test_matmul_peak_is_best_of_repeats_after_warmup(clock, monkeypatch):
    wall, _ = clock
    wall.tick = 0.25  # every clock read moves a quarter second: each timed call lasts exactly 0.25 s
    assert reference.matmul_peak_flops(n=8, repeats=3) == 2 * 8 ** 3 / 0.25
    assert wall.reads == 2 * 3  # warm-up multiplies read no clock


def test_the_run_peak_is_measured_once_per_run(monkeypatch):
    calls = []
    monkeypatch.setattr(reference, "_RUN_PEAK", {})
    monkeypatch.setattr(reference, "matmul_peak_flops", lambda device="cpu": calls.append(device) or 1e11)
    assert reference.run_peak_flops() == reference.run_peak_flops() == 1e11
    assert calls == ["cpu"]


def test_scan_throughput_is_the_best_step_after_warmup(clock):
    from benchmarks.bench_temporal_scan import _images_per_s

    wall, _ = clock
    fn, calls = _costing(wall, [9.0, 4.0, 2.0, 8.0, 4.0, 4.0])
    assert _images_per_s(fn, batch=64, reps=5) == 32.0
    assert len(calls) == 6


TIMED_BY_HELPER = ("bench_data.py", "bench_facernet.py", "bench_models.py", "bench_temporal_scan.py",
                   "reference.py", "run.py")


@pytest.mark.parametrize("name", TIMED_BY_HELPER)
def test_benchmarks_time_only_through_the_helper(name):
    src = (BENCH / name).read_text()
    assert not re.search(r"perf_counter|time\.time\(|process_time", src), f"{name} times by hand"


def test_benchmark_docstrings_cite_only_documents_the_repository_has():
    repo = BENCH.parent
    for path in BENCH.glob("*.py"):
        src = path.read_text()
        assert "DESIGN" not in src or (repo / "DESIGN.md").is_file(), f"{path.name} cites a missing DESIGN doc"
        for doc in re.findall(r"[\w./-]+\.md\b", src):
            assert (repo / doc).is_file() or (BENCH / Path(doc).name).is_file() or (repo / "docs" / doc).is_file(), \
                f"{path.name} cites {doc}, which the repository does not contain"
