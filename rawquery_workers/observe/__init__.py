"""Observing a running process: Prometheus metrics fed from the sync's progress events and
stream outcomes (`metrics`), their exposition (`exposition`: a worker's pool aggregated, the
registry's time since each stream's last success, a text file for a one-off sync), health
checks (`health`), the /metrics and /healthz server (`server`) and the log lines (`logs`:
level, JSON, the connection, stream and sync id of the work in hand).

May import: errors, settings, registry. Never runner, distributed, cli (they feed it).
"""
