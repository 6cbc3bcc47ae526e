"""What the agent knows of a session from its readings (pure): the raw `Reading` a collector
returns, the derived `Sample`s kept in ring buffers, and the folds of several samples.

May import: nothing else of the agent (config and units only). Everything else builds on it.
"""
