"""PSPE host agent: measures sessions, forecasts their needs, right-sizes their limits."""

__version__ = "0.1.0"
