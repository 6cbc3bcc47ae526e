"""Synthetic sessions and the inference-cost measurement of a forecaster (for benchmarks and tests)."""

from __future__ import annotations

import time

import numpy as np

from agent.features.downsample import StepAggregator
from agent.features.spec import FeatureSpec
from agent.forecast.base import ForecastInput, Forecaster
from agent.forecast.point_select import NEVER
from agent.state.samples import Sample, SessionState


def synthetic_inputs(spec: FeatureSpec, sessions: int, seed: int = 0) -> list[ForecastInput]:
    """Sessions with a full window of random steps (for benchmarks and tests)."""
    rng = np.random.default_rng(seed)
    names = ("cpu_cores", "mem_bytes", "disk_read_bps", "disk_write_bps", "net_rx_bps", "net_tx_bps")
    magnitude = np.array([2.0, 4e9, 1e7, 1e7, 1e6, 1e6])
    inputs = []
    for s in range(sessions):
        state, steps = SessionState(f"s{s}", 4, 0.0), StepAggregator.for_spec(spec)
        for k in range(spec.window + 1):   # the last sample opens a step: `window` steps complete
            sample = Sample(t=k * spec.step_seconds, values=dict(zip(names, (rng.random(6) * magnitude).tolist())))
            steps.add(sample)
            state.push(sample)
        inputs.append(ForecastInput(state, steps))
    return inputs


def benchmark_inference_us(forecaster: Forecaster, batch: int = 1000, repeats: int = 10) -> dict[str, float]:
    """CPU microseconds per session at `batch` sessions, best of `repeats`: the model run alone
    (every horizon), the run as the agent makes it (the look-ahead's horizons only), a tick at a
    step boundary (windows from StepAggregators, one run, reduce), and a tick between step
    boundaries (cached answers)."""
    spec = forecaster.spec
    inputs = synthetic_inputs(spec, batch)
    x = forecaster._windows([inp.steps for inp in inputs])[0]
    now = spec.window * spec.step_seconds

    def best(fn) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.process_time()
            fn()
            times.append(time.process_time() - t0)
        return min(times) / batch * 1e6

    def step_tick() -> None:
        forecaster._cache.clear()   # every session has a new step, as at a step boundary
        if forecaster.selector is not None:
            forecaster.selector.newest[:] = NEVER   # and its median choice scores that step again
        forecaster.predict(now, inputs)

    forecaster.predict(now, inputs)
    return {"batch": batch,
            "run_us_per_session": best(lambda: forecaster.model.session.run(["q"], {"x": x})),
            "served_run_us_per_session": best(lambda: forecaster._net_leading(x, forecaster._served_horizons)),
            "step_tick_us_per_session": best(step_tick),
            "cached_tick_us_per_session": best(lambda: forecaster.predict(now, inputs))}
