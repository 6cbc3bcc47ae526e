"""What one collector pass reads for one session: raw cumulative counters and gauges.

Every field is optional because sources differ (no per-cgroup network counters
without a network namespace, no PSI in cgroup v1). Rates are derived later, in
`agent.state.samples`, from two consecutive readings.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Reading:
    # CPU (cumulative)
    cpu_usage_ns: int | None = None
    cpu_nr_periods: int | None = None
    cpu_nr_throttled: int | None = None
    cpu_throttled_ns: int | None = None
    # Memory (gauges, except the OOM kill counter which is cumulative)
    mem_usage_bytes: int | None = None
    mem_peak_bytes: int | None = None
    mem_oom_kills: int | None = None
    # Block I/O (cumulative)
    io_read_bytes: int | None = None
    io_write_bytes: int | None = None
    io_read_ops: int | None = None
    io_write_ops: int | None = None
    # Network (cumulative; only with a private network namespace)
    net_rx_bytes: int | None = None
    net_tx_bytes: int | None = None
    # Pressure stall information: cumulative stall time in microseconds ("total=")
    psi_cpu_some_us: int | None = None
    psi_mem_some_us: int | None = None
    psi_mem_full_us: int | None = None
    psi_io_some_us: int | None = None
    # Process count (gauge); 0 means the session has no live process left
    nr_procs: int | None = None

    def merge(self, other: "Reading") -> "Reading":
        """Fill this reading's missing fields from another source's reading."""
        for name in self.__slots__:
            if getattr(self, name) is None:
                setattr(self, name, getattr(other, name))
        return self


@dataclass(slots=True)
class CollectResult:
    """One session's reading plus the names of the collectors that failed."""

    reading: Reading
    errors: list[str] = field(default_factory=list)
    vanished: bool = False
