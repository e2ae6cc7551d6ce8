"""Replica processes: the one launcher, free ports, process figures.

    launcher.py   Launcher: start, crash, restart and stop replicas as child
                  processes (the shell's --launch, the benchmark, the tests);
                  wait_until_answering()
    processes.py  cpu_seconds(), stop_process(): figures of and for children
    ports.py      PortReservation: loopback ports held for a cluster's replicas, race-free

May import: ledgerpaxos (client, config, runtime.network), trio, the standard library.
"""
