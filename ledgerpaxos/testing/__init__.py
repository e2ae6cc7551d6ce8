"""Test doubles of the runtime's and the executor's I/O, never used in production.

    network.py  MemoryNetwork: in-memory streams for whole clusters in one trio run
    storage.py  MemoryStorage: the executor's Storage kept as WAL records in memory

May import: ledgerpaxos (any part), trio and trio.testing. Nothing outside
the tests and the simulator's helpers imports this package.
"""
