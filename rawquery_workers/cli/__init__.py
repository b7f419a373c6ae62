"""The `rq` command line.

May import: anything; nothing imports it.
"""
