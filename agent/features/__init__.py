"""THE feature spec and the model's inputs (pure): the spec (spec.py), its checks, the window
layout and scaling, same-time lags, and the folding of fine samples into model steps.

Training builds its windows with this package and the agent builds its inference inputs with it.
May import: state, config, units.
"""
