"""Anomaly benchmarks: a NAB-layout corpus, NAB's scoring rules and threshold sweep, and a run of
the agent's streaming scorer over a corpus.

May import: the agent's anomaly package.
"""
