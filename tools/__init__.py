"""Operator tools for ledgerpaxos."""
