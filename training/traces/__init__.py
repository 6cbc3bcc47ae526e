"""Readers of public workload traces, shared by the demo, the training pipeline and replay."""

from training.traces.bitbrains import BitbrainsTrace, TraceFormatError, fill_gaps, list_traces, read_trace

__all__ = ["BitbrainsTrace", "TraceFormatError", "fill_gaps", "list_traces", "read_trace"]
