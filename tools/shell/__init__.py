"""The cmd2 shell (`ledgerpaxos-shell`, `make cluster`).

    app.py      the cmd2 commands, the trio thread, main()
    backend.py  what each command does, on the trio side
    views.py    pure rendering of the backend's answers (tested without a cluster)

May import: ledgerpaxos, tools.cluster, tools.tables, cmd2, trio.
"""
