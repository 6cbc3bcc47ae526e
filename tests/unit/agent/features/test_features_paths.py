"""Training and the agent build identical windows from the same demand (the contract of agent/features/spec.py).

Training path: a real Bitbrains trace -> arrays -> bucket_series -> build_window.
Agent path: the same demand replayed as 1 s samples (a few failed reads, nothing during
the trace's silent steps) -> SessionState + StepAggregator -> build_window.
"""

import gzip
import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from agent.features.downsample import StepAggregator, bucket_series
from agent.features.spec import FeatureSpec, unscale
from agent.features.window import build_window
from agent.forecast.base import ForecastInput, reduce_output
from agent.forecast.onnx_runner import OnnxForecaster
from agent.state.samples import Sample, SessionState
from tests.paths import FIXTURES, SHARED_DATA

DATA = SHARED_DATA / "bitbrains-rnd" / "2013-7"
FIXTURE_MODEL = FIXTURES / "models" / "last_value.onnx"
KIB = 1024.0
RAW = ("cpu_cores", "mem_bytes", "disk_read_bps", "disk_write_bps", "net_rx_bps", "net_tx_bps")


def read_bitbrains(path: Path, rows: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The first rows of one VM's file in natural units (cores, bytes, bytes/s)."""
    if not path.is_file():
        pytest.fail(f"trace file {path} is missing: these tests read ../shared/data (see its README)")
    with gzip.open(path, "rt") as f:
        f.readline()
        a = np.array([[float(v) for v in line.split(";")] for line in itertools.islice(f, rows)])
    per_core_mhz = a[:, 2] / a[:, 1]
    cols = {"cpu_cores": a[:, 3] / per_core_mhz, "mem_bytes": a[:, 6] * KIB,
            "disk_read_bps": a[:, 7] * KIB, "disk_write_bps": a[:, 8] * KIB,
            "net_rx_bps": a[:, 9] * KIB, "net_tx_bps": a[:, 10] * KIB}
    return a[:, 0], cols


@pytest.fixture(scope="module")
def trace():
    t, cols = read_bitbrains(DATA / "1.csv.gz", 90)
    keep = np.ones(t.size, bool)
    keep[[20, 21, 22, 60]] = False                                        # silent stretches in the trace
    spec = FeatureSpec()
    grid_t, grid = bucket_series(spec.step_seconds, t[keep], {k: v[keep] for k, v in cols.items()}, RAW)
    return spec, grid_t, grid


def replay(spec: FeatureSpec, grid_t: np.ndarray, grid: dict[str, np.ndarray], on_new_step=None):
    """Replay each step's demand as 1 s samples (nothing during missing steps).

    on_new_step(k, state, aggregator) runs after the first sample of grid step k, when every
    earlier step is complete.
    """
    state = SessionState("vm1", 600, started_at=float(grid_t[0]))
    agg = StepAggregator.for_spec(spec)
    step = int(spec.step_seconds)
    for k, t0 in enumerate(np.r_[grid_t, grid_t[-1] + step]):
        values = {m: float(grid[m][k]) if k < grid_t.size else 0.0 for m in RAW}
        if k < grid_t.size and math.isnan(values["cpu_cores"]):
            continue                                                      # the VM said nothing this step
        for j in range(step if k < grid_t.size else 1):
            v = values if (j * 7 + k) % 97 else {m: math.nan for m in RAW}   # now and then a failed read
            sample = Sample(t=float(t0) + j, values=dict(v))
            state.push(sample)
            agg.add(sample)
            if j == 0 and k > 0 and on_new_step:
                on_new_step(k, state, agg)
    return state, agg


def test_windows_from_trace_arrays_equal_windows_from_agent_buffers(trace):
    spec, grid_t, grid = trace
    assert np.isnan(grid["cpu_cores"]).sum() == 4                          # the gaps are on the grid
    compared = []

    def check(k, state, agg):
        x_train, s_train = build_window(spec, {m: v[:k] for m, v in grid.items()}, grid_t[:k])
        series, times = agg.series()
        x_agent, s_agent = build_window(spec, series, times)
        np.testing.assert_array_equal(x_agent, x_train, err_msg=f"step {k}")
        np.testing.assert_array_equal(s_agent, s_train, err_msg=f"step {k}")
        compared.append(k)

    replay(spec, grid_t, grid, check)
    present = int((~np.isnan(grid["cpu_cores"])).sum())
    assert len(compared) == present >= spec.window + 30                   # once per present step, one closing
    assert 23 in compared                                                 # right after the three silent steps


def test_the_forecaster_on_agent_buffers_equals_the_model_on_training_windows(trace):
    spec, grid_t, grid = trace
    f = OnnxForecaster(FIXTURE_MODEL, 0.5, 0.99, lookahead_steps=3)
    state, agg = replay(spec, grid_t, grid)
    now = float(grid_t[-1]) + spec.step_seconds
    (p,) = f.predict(now, [ForecastInput(state, agg)])
    x, scale = build_window(spec, grid, grid_t)
    (y,) = f.model.session.run(["q"], {"x": x[None]})
    central, upper = reduce_output(spec, unscale(spec, y.astype(np.float64), scale[None]), 0.5, 0.99, 3)
    assert p.source == f.source
    assert (p.cpu.central, p.cpu.upper, p.mem.central) == (central[0, 0], upper[0, 0], central[0, 1])
    assert p.mem.upper == max(upper[0, 1], state.buffers["mem_bytes"].latest())
    assert p.cpu.central == pytest.approx(grid["cpu_cores"][-1] * 1.2, rel=1e-6)   # the fixture: last x 1.2 at h=3
