"""The CSV test sets: their parser and the driver that runs them on a cluster.

    parser.py  load_test_sets(): the CSV format, errors with file and line
    driver.py  Driver: live nodes, transfers, LF leader kills, through the client

The shell (tools/shell) and the conformance tests use both. May import:
ledgerpaxos (client, config, core.messages), trio, the standard library.
"""
