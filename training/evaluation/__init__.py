"""Evaluation: forecast accuracy, the baselines, the replay simulator that runs the agent's own
forecaster, policy and arbitration, right-sizing metrics, and `pspe-train evaluate`.

May import: training.data, training.forecaster, the agent's pure packages and config.
"""
