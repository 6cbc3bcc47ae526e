"""The quantile forecaster: dataset windows, plain nn.Modules, the LightningModule that trains them,
the DataModule that feeds them, loss weights, calibration, fit, ONNX export and the recipe.

May import: training.data, the agent's features and forecast.
"""
