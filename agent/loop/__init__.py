"""The control loop: `AgentLoop.run_once(now)`, a flat list of timed steps, each a collaborator
(sync, steps, commands) the loop calls; what it keeps per live session; the tick's report; and
fleet commands applied through the loop's safety checks.

May import: every agent package except main, cli and demo.
"""
