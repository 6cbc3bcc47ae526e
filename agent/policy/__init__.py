"""Forecast quantiles -> two levels per resource (pure): the limits value types, the chain of
small steps (decide.py, steps.py), what the policy remembers per session (memo, recall),
host-capacity arbitration across sessions, and operator overrides made safe.

May import: forecast (its prediction and conformal types), state, config, units.
"""
