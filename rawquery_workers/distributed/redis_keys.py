"""Every Redis key rawquery-workers uses, built in this module and nowhere else.

    after rq:{CONNECTION}:                 what it holds (who uses it)
    rate                                   GCRA state of the shared rate limit (ratelimit_redis)
    oauth-lock                             one OAuth2 token refresh at a time (locks)
    sync:ID:STREAM:SEGMENT[.EPOCH]:enqueued  the segment was handed on, once (coordination)
    sync:ID:STREAM:SEGMENT:STEP:attempts   deliveries of the step so far (coordination)

A connection's sync lease is not here: it is a registry row (registry/leases.py), so
Redis restarting or going away never frees or forges it.

Every key of one connection carries the `{CONNECTION}` hash tag, so on Redis Cluster they
all live in one slot and a Lua script may touch several of them. Beat keeps no keys: the
slot a schedule last fired is in the registry. Celery's own keys (queues, results) are
Celery's business and are not listed here. `redis_client` is the process's one client per
URL; `redis_address` names the server in error messages without its password.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis import Redis

    from rawquery_workers.settings import Settings

PREFIX = "rq:"


def _tag(name: str, what: str) -> str:
    # A brace inside the name would move the hash tag; connection names never hold one
    # (see connections.check_connection_name), so this only guards against misuse.
    if not name or "{" in name or "}" in name:
        raise ValueError(f"{what} {name!r} cannot be used in a Redis key (empty or has braces)")
    return "{" + name + "}"


def connection_prefix(connection: str) -> str:
    """`rq:{CONNECTION}:`: every key of the connection starts with it (handy for SCAN)."""
    return f"{PREFIX}{_tag(connection, 'connection')}:"


def rate_key(connection: str) -> str:
    return connection_prefix(connection) + "rate"


def oauth_lock_key(connection: str) -> str:
    return connection_prefix(connection) + "oauth-lock"


def _sync_key(connection: str, sync_id: str, *parts: str | int) -> str:
    return connection_prefix(connection) + ":".join(["sync", sync_id, *map(str, parts)])


def segment_enqueued_key(
    connection: str, sync_id: str, stream: str, segment: int, epoch: int = 0
) -> str:
    """Set (NX) by whichever worker first hands segment `segment` of `stream` on (in the
    stream's `epoch`: a takeover hands its segments on afresh, registry/takeover.py)."""
    parts: list[str | int] = [stream, segment] if not epoch else [stream, f"{segment}.{epoch}"]
    return _sync_key(connection, sync_id, *parts, "enqueued")


def step_attempts_key(connection: str, sync_id: str, stream: str, segment: int, step: str) -> str:
    """How many times a step of a segment was delivered (a counter)."""
    return _sync_key(connection, sync_id, stream, segment, step, "attempts")


INCARNATION_KEY = PREFIX + "incarnation"


def incarnation(client: Redis) -> str:
    """This Redis' incarnation: a random token set once (no expiry) by whoever asks first.
    A Redis that comes back without its data has none, so a new one: every message
    recorded as published under the old token is known lost (distributed/reaper.py)."""
    token = client.get(INCARNATION_KEY)
    if token is None:
        import uuid

        client.set(INCARNATION_KEY, uuid.uuid4().hex, nx=True)
        token = client.get(INCARNATION_KEY)
    return token.decode() if isinstance(token, bytes) else str(token)


_clients: dict[str, Redis] = {}


def redis_client(settings: Settings) -> Redis:
    """One redis-py client per URL per process (redis-py is imported on first use)."""
    import redis

    url = settings.redis_url or ""
    if url not in _clients:
        _clients[url] = redis.Redis.from_url(url, health_check_interval=30)
    return _clients[url]


def redis_address(client: Redis) -> str:
    """Where `client` points, without any password: for error messages and logs."""
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    return f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
