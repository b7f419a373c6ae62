"""Every Redis key rawquery-workers uses, named in one place.

    rq:{CONNECTION}:rate            GCRA state of the connection's shared rate limit
    rq:{CONNECTION}:sync-lock       lease: one sync of the connection at a time (locks)
    rq:{CONNECTION}:oauth-lock      single flight: one OAuth2 token refresh at a time (locks)
    rq:{CONNECTION}:beat:SLOT       one scheduled sync fired per schedule slot (beat)

Every key of one connection carries the `{CONNECTION}` hash tag, so on Redis Cluster they
all live in one slot and a Lua script may touch several of them. Celery's own keys (queues,
results) are Celery's business and are not listed here. `redis_client` is the process's one
client per URL; `redis_address` names the server in error messages without its password.
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


def sync_lock_key(connection: str) -> str:
    return connection_prefix(connection) + "sync-lock"


def oauth_lock_key(connection: str) -> str:
    return connection_prefix(connection) + "oauth-lock"


def beat_lock_key(connection: str, slot: str | int) -> str:
    """One key per schedule slot (e.g. the due time as epoch seconds or ISO text)."""
    return connection_prefix(connection) + f"beat:{slot}"


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
