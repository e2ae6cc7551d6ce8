"""The cmd2 shell (`ledgerpaxos-shell`, `make cluster`).

    app.py         the cmd2 commands and main()
    parsers.py     each command's argument parser and completions
    trio_thread.py trio in a second thread, one nursery for the shell's life
    backend.py     what each command does, on the trio side
    views.py       pure rendering of the backend's answers (tested without a cluster)

May import: ledgerpaxos, tools.cluster, tools.tables, cmd2, trio.
"""
