"""What each variant costs its consumer: load time, peak memory, seconds per step.

Offers: the cost vocabulary (`model`), one measurement in a child process (`probe`), a run of
them (`run`), and the reference table shipped with unetbot (`table`, `cost_table.json`) that the
cards and `bot bench` read.
"""
