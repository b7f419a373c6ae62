"""The stream-sync pipeline and the embedded runner: the four steps (`pipeline`), segments
written a chunk at a time (`segment`), staging, progress, the per-connection context, the
stream-run lifecycle both runners share (`runs`), and the embedded loop (`sync`).

May import: errors, settings, spec, http, paginate, auth, transform, sink, registry, observe;
and, from `context` only, the Redis services of distributed/ when RAWQUERY_REDIS_URL is set.
Never cli.
"""
