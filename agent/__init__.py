"""PSPE host agent: measures sessions, forecasts their needs, right-sizes their limits.

Packages, each owning one responsibility (the allowed imports are checked by
tests/unit/test_layers.py and drawn in docs/architecture.md):

  pure logic (no host I/O, no clock)     state, features, forecast, policy, anomaly
  host and network I/O                   collect, actuate, sessions, bus, models, observe
  the tick                               loop
  composition root and command line      main.py, cli.py (and demo/)

config.py and units.py are shared by all; nothing under agent/ imports torch,
lightning, mlflow or airflow.
"""

__version__ = "0.1.0"
