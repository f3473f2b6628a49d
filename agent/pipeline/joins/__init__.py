"""Join steps, one module per kind: the table join and the window (interval) join.

Both read a second stream as a side input (the runner feeds it to `absorb`) and
keep what they have seen of it in state that the runner commits with both cursors,
so after a crash the state matches exactly the events read from either stream.
"""
