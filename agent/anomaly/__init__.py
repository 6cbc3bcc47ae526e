"""Anomaly detection (pure): streaming per-metric scores, the joint score, typed alert rules,
dedup and rate limits, and the hook for a learned model's residuals.

May import: forecast (its prediction type), state, config, units.
"""
