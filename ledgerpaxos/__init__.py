"""ledgerpaxos: a replicated banking ledger agreed on with stable-leader Multi-Paxos."""
