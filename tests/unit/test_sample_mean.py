import math

from agent.sample_mean import SampleMean
from agent.state import Sample


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
