"""A conversion run: the variant registry above the writers and validators, and the steps
that use it.

Offers: the registry (`variants`: one entry per artifact kind, each carrying its writer and
its validator's `Check`), which variants a spec selects for a source (`selection`), writing a
run into a folder with its manifest (`convert`), writing and validating in one overlapped run
(`pipeline`), and validating a folder from its manifest (`validate`). The bot calls the engine
through this package.
"""
