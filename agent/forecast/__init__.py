"""Forecasters (pure apart from reading the model file they run): the interface and the holder
that swaps models, the moving-window heuristic, the ONNX model run by onnxruntime or by numpy,
the model file's checks, the per-session median choice and the online conformal margins.

May import: features, state, config, units.
"""
