"""The quantile forecaster: dataset windows, plain nn.Modules, the LightningModule that trains them,
the DataModule that feeds them, loss weights, calibration, fit, ONNX export, the recipe, and the
MLflow logging and model registry (aliases, never stages) that fit and the pipeline share.

May import: training.data, the agent's features and forecast.
"""
