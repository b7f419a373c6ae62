"""Every error rawquery-workers raises on purpose, grouped by what the caller does about it.

    RawqueryError                   root: the CLI turns any of these into a short message
    ├── SpecError                   the spec or a command argument is wrong: fix it (exit 2)
    ├── ConfigError                 settings, secret key or registry state is wrong (exit 2)
    ├── NotFoundError               a named connection / stream / table does not exist (exit 2)
    ├── ConflictError               something is already running or already exists (exit 1)
    │   └── StaleSyncError          a sync that lost its lease tried to commit (fenced)
    ├── SourceError                 reading from the API failed for one stream (exit 1)
    │   ├── RetriableError          a transient failure (5xx, 429, reset, timeout, bad body);
    │   │                           retried by the HTTP client until max_retries runs out
    │   ├── AuthError               credentials refused or a login/refresh failed: fix creds
    │   └── ResponseError           the API answered, but not with what the spec expects
    │       └── PaginationLoopError the API sent a page token/URL it already sent
    ├── TransformError              records could not be shaped into the declared tables
    └── SinkError                   the Iceberg catalog or warehouse refused a write

Messages say what went wrong, where (JSON path, stream, page, redacted URL) and how to fix it.
They never carry a secret: anything that may hold one goes through `redact` first.
"""

from __future__ import annotations


class RawqueryError(Exception):
    """Root of all deliberate errors; `exit_code` is what the CLI exits with."""

    exit_code: int = 1


class SpecError(RawqueryError):
    """The connector spec (or a command argument) is invalid. Carries one line per problem."""

    exit_code = 2

    def __init__(self, problems: list[str] | str, source: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        head = f"{source}: " if source else ""
        super().__init__(head + "\n".join(self.problems))


class ConfigError(RawqueryError):
    exit_code = 2


class NotFoundError(RawqueryError):
    exit_code = 2


class ConflictError(RawqueryError):
    exit_code = 1


class StaleSyncError(ConflictError):
    """A sync whose lease ran out tried to commit after a newer sync had (fenced)."""


class SourceError(RawqueryError):
    """A stream could not be read from its API."""


class RetriableError(SourceError):
    """Transient: worth another attempt. `retry_after` is the server's hint in seconds."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class AuthError(SourceError):
    pass


class ResponseError(SourceError):
    pass


class PaginationLoopError(ResponseError):
    pass


class TransformError(RawqueryError):
    pass


class SinkError(RawqueryError):
    pass
