import math
import struct

import numpy as np

from agent.state.sample_mean import SampleMean, fold_many
from agent.state.samples import SAMPLE_METRICS, Sample


def test_mean_of_rates_max_of_memory_sum_of_ooms():
    acc = SampleMean()
    assert acc.flush(0.0) is None
    acc.add(Sample(1.0, {"cpu_cores": 1.0, "mem_bytes": 100.0, "net_rx_bps": math.nan}, oom_kills=1, app={"fps": 30}))
    acc.add(Sample(2.0, {"cpu_cores": 3.0, "mem_bytes": 50.0, "net_rx_bps": 8.0}, oom_kills=0, app={"fps": 50}))
    out = acc.flush(2.0)
    assert out.t == 2.0 and out.oom_kills == 1
    assert out.values == {"cpu_cores": 2.0, "mem_bytes": 100.0, "net_rx_bps": 8.0}
    assert out.app == {"fps": 40.0}
    assert len(acc) == 0 and acc.flush(3.0) is None


def _random_sample(rng, t):
    values = {}
    for m in SAMPLE_METRICS:
        r = rng.random()
        # NaN now and then; magnitudes far apart, so a different order of additions would show
        values[m] = math.nan if r < 0.15 else float(rng.choice([0.0, 1e16, -1e16, 1.0, 3e-9, rng.random() * 1e9]))
    return Sample(t, values, oom_kills=int(rng.integers(0, 2)), app={"fps": float(rng.random())} if r < 0.3 else {})


def test_fold_many_gives_the_bits_of_one_flush_per_fold():
    rng = np.random.default_rng(7)
    for trial in range(30):
        folds, expected_input = [], []
        for k in range(int(rng.integers(1, 12))):
            size = int(rng.integers(0, 7))
            samples = [_random_sample(rng, float(j)) for j in range(size)]
            if size and rng.random() < 0.15:   # other metrics, or some absent: folded one by one
                if rng.random() < 0.5:
                    samples[-1].values["gpu_util"] = 0.5
                else:
                    del samples[0].values["psi_io"]
            a, b = SampleMean(), SampleMean()
            for s in samples:
                a.add(s)
                b.add(s)
            folds.append(a)
            expected_input.append(b)
        got = fold_many(folds, 9.0)
        for g, b in zip(got, expected_input):
            e = b.flush(9.0)
            if e is None:
                assert g is None
                continue
            assert (g.t, g.oom_kills, g.app) == (e.t, e.oom_kills, e.app)
            # the same floats; a metric without any valid value may be absent instead of NaN
            keys = {k for k, v in e.values.items() if v == v}
            assert {k for k, v in g.values.items() if v == v} == keys
            assert all(struct.pack("d", g.values[k]) == struct.pack("d", e.values[k]) for k in keys)
        assert all(len(f) == 0 for f in folds)
