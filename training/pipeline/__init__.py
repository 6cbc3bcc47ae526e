"""The retraining pipeline: one function per DAG task, its settings and promotion verdict, and
publishing a promoted model to the fleet (the MLflow registry helpers are
training/forecaster/registry.py, which fit uses too).

May import: every training package, the agent's pure packages, and its bus (to publish).
"""
