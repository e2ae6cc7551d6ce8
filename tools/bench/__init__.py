"""The benchmark (`ledgerpaxos-bench`, `make bench`).

    cli.py               the command line and the matrix
    run.py               one run: a leader, the load processes, sampling, the figures
    report.py            the table, the PySyncObj comparison, --json and --plot
    cluster.py           LaunchedCluster: fresh replicas in a temporary directory
    load.py              the load processes and their figures
    versus_pysyncobj.py  the same loads on PySyncObj, when it is installed
    codec.py             µs per command of the wire codec (python -m tools.bench.codec)
    profile.py           ranks functions of py-spy profiles (python -m tools.bench.profile)
    hops.py              one request's hops from a traced run (python -m tools.bench.hops)
    trace/               the sitecustomize that stamps a traced replica's reads, writes, fsyncs

May import: ledgerpaxos, wire, tools.cluster, tools.tables, trio, the standard library.
"""
