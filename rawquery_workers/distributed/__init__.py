"""Distributed mode: the Celery app and its thin tasks, the coordination between steps,
the connection lease and heartbeat, Redis keys, beat and schedules, the Redis limiter.

May import: everything below cli (runner, registry, and the layers they use). Never cli.
"""
