"""Model artefacts from the registry (network and file I/O): registry URIs, fetching a promoted
model over MLflow's REST API, and the kept downloads a rollback uses. The bundled forecaster
(forecaster.onnx, its numpy weights and provenance) lies beside this file.

May import: config, units.
"""
