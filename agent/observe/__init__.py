"""The agent about itself: JSON logs, its Prometheus metrics (never one label per session) and the
/metrics, /healthz, /status endpoint.

May import: config, units.
"""
