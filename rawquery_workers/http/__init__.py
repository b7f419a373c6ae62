"""HTTP: the API client (retries, backoff, Retry-After, rate limit), the wire transport and
its response limits, redaction of secrets, next-hop target rules, the in-process limiter.

May import: errors, settings, spec. Never runner, distributed, cli.
"""
