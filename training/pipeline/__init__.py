"""The retraining pipeline: one function per DAG task, its settings and promotion verdict, MLflow
registry helpers (aliases, never stages), and publishing a promoted model to the fleet.

May import: every training package, the agent's pure packages, and its bus (to publish).
"""
