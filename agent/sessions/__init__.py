"""Sessions from birth to end (host I/O): the on-disk session store, start/stop/reap, adoption and
recovery after a restart, container sessions on Docker's side, and a session's profile.

May import: actuate, collect, policy (limits), state, config, units.
"""
