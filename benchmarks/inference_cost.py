"""The forecaster's cost per session per tick, batched at 1,000 sessions on one thread.

For each runner of the model (numpy from the .npz, onnxruntime from the .onnx):
the net alone, a tick at a step boundary (windows from the StepAggregators + run
+ reduce), a tick between step boundaries (cached answers), and the window
building alone: the one-pass path the forecaster takes (`gather_windows` +
`build_batch_arrays`) against the per-session path it replaced (`series()` per
session into `build_batch`), measured in the same run; each runner with and
without the per-session choice of the median (`*_net_median`). CPU time, best of
`--repeats`, in microseconds per session. Each runner is measured in a fresh child
process with malloc tuned as the agent tunes it (agent/malloc_tune.py), then again
with glibc's defaults (`default_malloc`), unless `--no-reference`. `--step-ticks-only`
times nothing but step-boundary ticks in each child (BENCHMARKS.md quotes it with
`--repeats 30`).

    .venv/bin/python benchmarks/inference_cost.py --json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def best_us(fn, batch: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return round(min(times) / batch * 1e6, 2)


def measure(forecaster, batch: int, repeats: int) -> dict:
    from agent.features.window import build_batch
    from agent.forecast.bench import benchmark_inference_us, synthetic_inputs

    out = {k: round(v, 2) for k, v in benchmark_inference_us(forecaster, batch, repeats).items()}
    steps = [inp.steps for inp in synthetic_inputs(forecaster.spec, batch)]
    out["windows_us_per_session"] = best_us(lambda: forecaster._windows(steps), batch, repeats)
    if forecaster.selector is not None:   # the median choice alone (agent/forecast/point_select.py), as at a step boundary
        import numpy as np

        from agent.features.spec import calibrate, unscale
        from agent.forecast.point_select import NEVER
        x, scale, times, values = forecaster._windows(steps)
        y = unscale(forecaster.spec, calibrate(forecaster.spec, forecaster.model.session.run(["q"], {"x": x})[0])
                    .astype(np.float64), scale)
        ids = [f"s{i}" for i in range(len(steps))]

        def choose() -> None:
            forecaster.selector.newest[:] = NEVER
            forecaster._point(ids, y, times, values)
        out["point_select_us_per_session"] = best_us(choose, batch, repeats)
    if not forecaster.spec.lags:   # the per-session path never served lags
        out["windows_per_session_path_us"] = best_us(
            lambda: build_batch(forecaster.spec, [s.series() for s in steps]), batch, repeats)
    return out


RUNNERS = ("numpy", "numpy_net_median", "onnxruntime", "onnxruntime_net_median")


def child_run(args: argparse.Namespace, runner: str, default_malloc: bool) -> dict:
    """One runner measured in a fresh process: what ran before in the same process (its heap,
    glibc's adaptive malloc thresholds) moved these figures by several microseconds."""
    import subprocess
    cmd = ([sys.executable, __file__, "--json", "--runner", runner, "--batch", str(args.batch),
            "--repeats", str(args.repeats)] + (["--model", args.model] if args.model else [])
           + (["--default-malloc"] if default_malloc else []) + (["--step-ticks-only"] if args.step_ticks_only else []))
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def measure_runner(model: str, runner: str, batch: int, repeats: int, step_ticks_only: bool = False) -> dict:
    from agent.forecast.numpy_runner import NumpyForecaster
    from agent.forecast.onnx_runner import OnnxForecaster
    cls = NumpyForecaster if runner.startswith("numpy") else OnnxForecaster
    forecaster = cls(model, threads=1, point_select=not runner.endswith("_net_median"))
    return step_ticks(forecaster, batch, repeats) if step_ticks_only else measure(forecaster, batch, repeats)


def step_ticks(forecaster, batch: int, repeats: int) -> dict:
    """Step-boundary ticks and nothing else in this process (after one warm-up tick): what the
    malloc tuning is for, since nothing before them has freed large blocks."""
    from agent.forecast.bench import synthetic_inputs
    from agent.forecast.point_select import NEVER

    inputs = synthetic_inputs(forecaster.spec, batch)
    now = forecaster.spec.window * forecaster.spec.step_seconds
    forecaster.predict(now, inputs)

    def tick() -> None:
        forecaster._cache.clear()
        if forecaster.selector is not None:
            forecaster.selector.newest[:] = NEVER
        forecaster.predict(now, inputs)
    return {"batch": batch, "step_tick_us_per_session": best_us(tick, batch, repeats)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="", help="ONNX model (default: the bundled one)")
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.add_argument("--default-malloc", action="store_true", help="leave glibc's malloc thresholds as they are")
    p.add_argument("--no-reference", action="store_true", help="skip the default-malloc runs")
    p.add_argument("--runner", choices=RUNNERS, help="measure this runner only, in this process")
    p.add_argument("--step-ticks-only", action="store_true",
                   help="time only step-boundary ticks, each runner in a fresh process per malloc setting")
    args = p.parse_args(argv)

    from agent.forecast.holder import BUNDLED_MODEL
    from agent.forecast.numpy_runner import weights_path_for

    model = args.model or str(BUNDLED_MODEL)
    if args.runner:
        from agent.malloc_tune import keep_freed_memory
        if not args.default_malloc:
            keep_freed_memory()
        print(json.dumps(measure_runner(model, args.runner, args.batch, args.repeats, args.step_ticks_only)))
        return 0
    result: dict = {"model": model, "batch": args.batch, "load_average_before": os.getloadavg()[0]}
    # each runner as the agent runs it (each session's median chosen, agent/forecast/point_select.py, malloc
    # tuned), and without that choice; then each with glibc's default malloc: in the same run
    runners = [r for r in RUNNERS if weights_path_for(model).is_file() or not r.startswith("numpy")]
    modes = [False] if args.no_reference else [False, True]
    for default_malloc in modes:
        into = result.setdefault("default_malloc", {}) if default_malloc else result
        for name in runners:
            into[name] = child_run(args, name, default_malloc)
            if not args.json:
                print("default malloc" if default_malloc else "agent", name, into[name])
    result["load_average_after"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
