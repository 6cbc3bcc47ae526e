"""`make demo`: real sessions in real cgroups driven by recorded demand, and its report.

May import: every agent package, and training.data's trace readers (pure, no torch).
"""
