"""Every limit of ledgerpaxos in one place, units last in the names.

Timer defaults here are used when a config file does not set them; the config
keys of the same name override them (see configs/cluster.toml).
"""

# Logical time: the runtime calls Core.tick() once every tick_ms of real (or
# virtual) time; the core counts ticks and never reads a clock.
tick_ms = 10

heartbeat_ms_default = 50
election_timeout_ms_min_default = 400
election_timeout_ms_max_default = 800
client_timeout_ms_default = 1000

# Wire.
message_size_max = 64 * 1024 * 1024  # bytes of one frame body
wire_magic = 0x4C504158  # "LPAX"
# 2: votes name their value, commits the chain digest, catch-up a nonce;
# 3: an outcome says where its command was executed (slot, index);
# 4: commands name accounts (reads, openings), outcomes say evicted, state digests are sums
wire_version = 5
account_name_length_max = 32  # bytes (UTF-8)
client_id_length_max = 64  # bytes (UTF-8)
node_id_length_max = 32  # bytes (UTF-8)
reason_length_max = 200  # bytes (UTF-8)
replicas_max = 15

# The ledger (core/ledger.py).
# Client sessions kept (config key client_sessions_max): a registration beyond
# this evicts the session committed longest ago.
client_sessions_max_default = 65_536
read_balances_max = 10_000  # balances one read answers with
accounts_per_request_max = 8190  # accounts one read or opening names

# Consensus.
batch_commands_max = 1024  # client commands in one slot
transfers_per_request_max = 8190  # transfers carried by one client request
# Transfers in one slot (a lone bigger request still gets its own slot). With
# ~30 bytes a transfer a slot stays near 256 KiB, so a Promise holding
# checkpoint_interval + pipeline_slots_max slots, or a catch-up reply of
# slots totalling about this many transfers, stays far below message_size_max.
batch_transfers_max = 8192
pipeline_slots_max = 64  # slots proposed but not yet committed
# A slot undecided this long goes to every follower, not only the fast ones (core/fanout.py).
accept_stall_ticks = 2
# A lazy follower's backlog goes in AcceptMany messages of at most this many
# slots, each closed once it holds a full slot's worth of transfers
# (batch_transfers_max): a message stays within about two slots' bytes.
accept_many_slots_max = 256
pending_commands_max = 65536  # client commands queued at the leader
pending_transfers_max = 262_144  # and their transfers (32 full slots): the queue's bound in size
catchup_slots_max = 256  # committed slots sent in one catch-up reply
catchup_retry_ms = 200  # a follower re-asks for missing slots this often
rejoin_retry_ms = 1000  # a rejoining replica asks its peers again this often
# A replica paused by a full disk tries this often to write disk_probe_bytes
# (as much as a large group commit), and resumes once it can.
disk_full_retry_ms = 1000
disk_probe_bytes = 1024 * 1024
views_remembered_max = 64  # (ballot, leader) pairs kept for `print view`
checkpoint_digests_remembered_max = 8
# A connection that has not finished its TLS handshake by then is closed.
tls_handshake_timeout_ms = 5_000
# A frame begun and not finished by then closes its connection (a slow sender
# holds no buffer for long).
partial_frame_timeout_ms = 10_000
# Frames from clients and operators: a request of transfers_per_request_max
# transfers is about 0.3 MB; peers may send up to message_size_max.
client_frame_bytes_max = 1024 * 1024
# Accepted connections one replica keeps open at once; more are closed at once
# (well below the usual 1,024 file descriptors, so the WAL and snapshots always
# find one).
connections_max = 512
warnings_interval_ms = 1_000  # one warning of a kind per this, the rest counted
# `print_log` answers with at most this many of the newest entries and transfers.
control_log_entries_max = 1_000
control_log_transfers_max = 20_000
# `print_db` answers with at most this many balances (a page; the argument says
# from which account position on).
control_db_accounts_max = 1_000
# Bytes of replies waiting for one client connection; a client that lets more
# pile up (it does not read) is disconnected.
client_reply_bytes_max = 16 * 1024 * 1024
# A peer's ballot may not name a round above this (core/validation.py): rounds
# grow by one per election, and one this high would leave no room below 2**64.
ballot_round_max = 2**62
# Nor a round more than this above the round this replica has promised: rounds
# grow by one per election, so an honest peer is never a million elections
# ahead, while a forged ballot at the limit would leave the cluster unable to
# outbid it (a candidate never goes further above its own promise, election.py).
# Exhausting the rounds takes 2**42 forged ballots.
ballot_round_jump_max = 2**20
# An Accept, AcceptMany, NewView or Promise naming a slot more than this above its
# receiver's commit point is ignored: a new leader fills every slot up to the
# highest one promised, its own log's included (with no-ops where nobody
# accepted a value), so one forged slot far ahead would take all its memory.
# A replica that far behind catches up first (catch-up replies start at its
# commit point), and a candidate that far behind leaves leading to another.
slots_ahead_max = 4_096
# Not every checkpoint is written as a snapshot file (an encoding, a check and
# two fsyncs, growing with the state): one is, once this many slots
# or transfers have been executed since the last snapshot file.
# The WAL holds what lies between; the log is purged only up to a snapshot file,
# so these also bound the log a replica keeps in memory.
snapshot_interval_default = 1000  # slots; the config key snapshot_interval
snapshot_transfers_min = 20_000
# And a snapshot of R rows (balances that moved, accounts opened, sessions),
# once R is above the first, waits for R times the second slots plus transfers
# since the last (execution.py): encoding, checking and writing a row costs
# about as much as executing a few transfers, so snapshots of a large state
# stay a small share of the work (a small one costs little anyway).
snapshot_rows_cheap_max = 10_000
# A snapshot of at most this many rows is built and written by the replica's
# loop itself (a few milliseconds); a larger one in a worker thread beside it.
snapshot_in_loop_rows_max = snapshot_rows_cheap_max
snapshot_work_per_row_min = 8
# A checkpoint is installed in parts of at most this many rows (a session counts
# one more for every 4 results it holds; core/install.split): about 320 KiB of
# balances, far below message_size_max, and a few milliseconds of the sender's
# loop per part.
install_part_units_max = 20_000
install_parts_max = 1 << 20  # parts of one checkpoint a replica accepts
# A snapshot file is written and read in parts of at most this many rows
# (storage/snapshot.py): a few hundred KiB each, checked on their own.
snapshot_part_rows_max = 16_384

# Runtime.
inbox_messages_max = 4096  # bounded channel between network tasks and the core
inbox_drain_max = 512  # messages stepped before one group-commit flush
# Bytes of frames (bodies) in the inbox; one item always gets in, whatever its size.
inbox_bytes_max = 64 * 1024 * 1024
# Control requests that only read (ping, print_*) waiting for the control task;
# more are refused at once with a reason.
control_requests_queued_max = 64
# At most this share of a replica's time goes into answering control requests.
control_time_share_max = 0.2
peer_outbox_frames_max = 8192  # frames queued for one peer link
peer_reconnect_backoff_ms_min = 20
peer_reconnect_backoff_ms_max = 1000
control_timeout_ms = 5000
receive_size_max = 64 * 1024  # bytes asked of one receive_some
client_replies_queued_max = 256  # replies waiting to be written to one client connection
client_waits_per_connection_max = 64  # requests one client connection may wait on at once
status_slots_max = 100_000  # slots listed by `print status all` (the newest)
wal_segment_size_max = 64 * 1024 * 1024  # bytes before the WAL rolls to a new segment
# A purge rewrites the WAL (compaction: a new segment, fsyncs of it and of the
# directory, the old segments deleted) only once the WAL has grown past this;
# until then recovery skips the records a newer snapshot covers. Compacting at
# every checkpoint cost five fsyncs every 10 slots (docs/performance.md).
wal_compact_size_min = 4 * 1024 * 1024  # bytes
snapshots_kept = 2
# Allocations (net of frees) before CPython's young-generation collection in a
# replica process; CPython's default is 700 (runtime/main.py says why).
gc_young_objects_max = 50_000

assert tick_ms > 0
assert heartbeat_ms_default >= tick_ms
assert heartbeat_ms_default * 2 < election_timeout_ms_min_default
assert election_timeout_ms_min_default < election_timeout_ms_max_default
assert batch_commands_max >= 1 and pipeline_slots_max >= 1
assert catchup_slots_max >= 1
assert batch_transfers_max >= transfers_per_request_max
# A Promise carries the slots above a checkpoint: with the default interval of 10,
# at most 10 + pipeline_slots_max full slots of worst-case transfers must fit a frame.
transfer_wire_bytes_max = 2 * (1 + account_name_length_max) + 8
assert batch_transfers_max * transfer_wire_bytes_max * (10 + pipeline_slots_max) < message_size_max
assert peer_reconnect_backoff_ms_min < peer_reconnect_backoff_ms_max
assert replicas_max < 256  # node index travels as one byte
