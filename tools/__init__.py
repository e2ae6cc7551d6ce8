"""Command-line programs around ledgerpaxos: shell/, bench/, cluster/, sim.py, certs.py, tables.py.

May import: ledgerpaxos, wire and their dependencies; nothing in ledgerpaxos or
wire imports tools.
"""
