"""Data for training and evaluation: readers of public workload traces (shared by the demo,
training and replay) and the loaders that turn them, or the PostgreSQL history, into `Series`.

May import: the agent's features and state.
"""
