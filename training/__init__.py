"""Training, evaluation and the retraining pipeline; importable without Airflow.

  data/         trace readers and the PostgreSQL history, as `Series`
  forecaster/   the quantile forecaster: windows, nets, Lightning module, fit, calibrate, export, recipe
  evaluation/   replay through the agent's own policy, baselines, accuracy metrics, reports
  anomaly/      the NAB harness for the agent's anomaly scorer
  pipeline/     the retraining pipeline's steps, promotion rules, registry and publishing

Each may import the agent's pure packages (features, forecast, policy, state) and config.
"""
