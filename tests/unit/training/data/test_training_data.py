"""Loaders: every source becomes Series in the agent's sample-metric names."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.data.series import (
    load_bitbrains_dir, parse_alibaba_meta, parse_alibaba_rows, parse_nab, series_from_alibaba,
    series_from_rows,
)
from tests.unit.training.training_cut import DATA, cut_bitbrains


def test_bitbrains_dir_gives_series_in_sample_metric_names(tmp_path):
    series = list(load_bitbrains_dir(cut_bitbrains(tmp_path / "cut")))
    assert [s.name for s in series] == ["1", "2", "3"]
    s = series[0]
    assert set(s.values) == {"cpu_cores", "mem_bytes", "disk_read_bps", "disk_write_bps", "net_rx_bps", "net_tx_bps"}
    assert np.all(np.diff(s.times) == 300.0)
    assert s.cpu_capacity > 0 and s.mem_capacity > 2**20
    cpu = s.get("cpu_cores")
    assert np.nanmax(cpu) <= s.cpu_capacity * 1.01 and np.nanmin(cpu) >= 0
    assert np.isnan(s.get("psi_cpu")).all()   # never measured: all missing, never zero


def test_alibaba_rows_become_cores_and_bytes():
    rows = [["m_1", "0", "50", "25", "", "", "1", "1", "5"], ["m_1", "60", "30", "25", "", "", "1", "1", "5"],
            ["m_1", "320", "10", "50", "", "", "1", "1", "5"], ["m_2", "x", "1", "1"], ["bad"]]
    per = parse_alibaba_rows(rows)
    assert list(per) == ["m_1"]
    cores = parse_alibaba_meta([["m_1", "0", "1", "2", "96", "100", "USING"]])
    s = series_from_alibaba("m_1", per["m_1"], cores["m_1"], host_mem_bytes=100.0, epoch=0.0)
    assert s.get("cpu_cores").tolist() == [pytest.approx(0.4 * 96), pytest.approx(0.1 * 96)]
    assert s.get("mem_bytes").tolist() == [25.0, 50.0]
    assert s.cpu_capacity == 96


def test_alibaba_real_file_parses():
    import csv, gzip
    with gzip.open(DATA / "alibaba-2018-machines" / "machine_usage_head100k.csv.gz", "rt") as f:
        per = parse_alibaba_rows(row for _, row in zip(range(5000), csv.reader(f)))
    assert per and all(v.shape[1] == 4 for v in per.values())


def test_nab_file_maps_name_to_metric():
    path = DATA / "nab" / "data" / "realAWSCloudwatch" / "ec2_cpu_utilization_24ae8d.csv"
    with open(path) as f:
        s = parse_nab(f, "realAWSCloudwatch/ec2_cpu_utilization_24ae8d.csv")
    cpu = s.get("cpu_cores")
    assert len(s) > 3000 and np.nanmax(cpu) <= 1.0 + 1e-9   # percent of one machine -> cores
    with pytest.raises(ValueError):
        parse_nab(["timestamp,value\n"], "empty.csv")


def test_store_rows_become_one_series_per_session():
    rows = [("a", 0.0, 1.0, 100.0), ("a", 150.0, 3.0, 300.0), ("a", 600.0, None, 50.0), ("b", 0.0, 0.5, 10.0)]
    out = {s.name: s for s in series_from_rows(rows, ["cpu_cores", "mem_bytes"])}
    a = out["a"]
    assert a.times.tolist() == [0.0, 300.0, 600.0]        # the silent step 300 is on the grid, missing
    assert a.get("cpu_cores")[0] == 2.0 and math.isnan(a.get("cpu_cores")[1]) and math.isnan(a.get("cpu_cores")[2])
    assert a.get("mem_bytes")[0] == 300.0                 # memory: the step's peak, as the agent folds it
    assert a.get("mem_bytes")[2] == 50.0
    assert out["b"].get("cpu_cores").tolist() == [0.5]
