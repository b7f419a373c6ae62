"""The RAWQUERY_* configuration, from the environment and a `.env` file in the working folder."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from rawquery_workers.errors import ConfigError

CATALOG_NAME = "rawquery"


class Settings(BaseSettings):
    """Read once per process (see `get_settings`); every path default hangs off `home`."""

    model_config = SettingsConfigDict(
        env_prefix="RAWQUERY_", env_file=".env", extra="ignore", frozen=True
    )

    home: Path = Field(default_factory=lambda: Path("~/.rawquery").expanduser())
    catalog_uri: str | None = None
    warehouse: str | None = None
    redis_url: str | None = None
    # repr=False: the key must never show up in a printed or logged Settings.
    secret_key: str | None = Field(default=None, repr=False)
    # Target size of one Parquet data file, in uncompressed Arrow bytes.
    target_file_size: int = 128 * 1024 * 1024
    # The same for a table with a primary key (or a child table), at most target_file_size:
    # a merge rewrites every file holding a changed key, so this bounds what one changed
    # key costs (bench/merge_cost.py, docs/decisions/012).
    merge_file_size: int = 16 * 1024 * 1024
    # Records fetched and committed as one unit of work (one Iceberg commit per segment;
    # a failed sync resumes after its last committed segment). Rows reach the files a chunk
    # at a time, so memory is not held per record of a segment, but the commit reads the
    # segment's keys (docs/decisions/005: why 500k).
    # Data files per table per segment: about the table's rows / target_file_size, at least 1.
    segment_records: int = 500_000
    # A segment also ends after this many seconds of fetching: a slow or rate-limited API
    # still commits (and so can resume) at least this often, and a distributed fetch task
    # stays far below Redis' one-hour visibility timeout (past it, Redis hands the task to
    # a second worker while the first still runs).
    segment_seconds: float = 600.0
    # One HTTP request, from sending it to the last byte of its body, takes at most this
    # long (the read timeout only bounds each wait for bytes: a server dripping a byte at a
    # time would hold a sync forever). Past it the attempt fails like a timeout and is
    # retried by the spec's rate_limit policy. A request after a segment's first page also
    # ends when the segment's time is up (the next segment sends it again).
    request_deadline_seconds: float = Field(default=300.0, gt=0)
    # A connection's sync lease (registry/leases.py) runs out this long after its last
    # renewal. Distributed steps renew it while they run; between steps a segment may wait
    # in the queue for a free worker, so it must outlast that wait. An embedded sync renews
    # it from a thread all along and uses at most EMBEDDED_LEASE_SECONDS of it.
    lease_seconds: float = Field(default=600.0, gt=0)
    # The most one response body may hold, as received and once decompressed: bodies are
    # held in memory whole, and parsed JSON takes several times its text. 256 MiB is far
    # above any real API page (a 50 MB single record still lands) and keeps a worker's peak
    # near 1-2 GB even for a body that reaches it. Over it, the stream fails (not retried).
    max_response_bytes: int = Field(default=256 * 1024 * 1024, gt=0)
    # An s3:// warehouse: the endpoint of an S3-compatible store (MinIO: http://minio:9000),
    # its keys and region. Unset keys fall back to pyarrow's AWS chain (AWS_* variables,
    # ~/.aws, instance roles). They reach pyiceberg as the catalog's s3.* properties.
    s3_endpoint: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = Field(default=None, repr=False)
    s3_region: str | None = None
    # Follow next-page URLs, Link headers and redirects to private, loopback and link-local
    # addresses too (rawquery_workers/http/targets.py: the rule this turns off).
    allow_private_targets: bool = False
    # Workers and beat serve Prometheus metrics at /metrics and their health at /healthz
    # on this port (unset: no server). Every process on one host needs its own port. All
    # interfaces by default: Prometheus scrapes a container from another one.
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    metrics_host: str = "0.0.0.0"
    # Table maintenance (sink/maintenance.py, `rq maintain`): snapshots beyond the newest
    # SNAPSHOTS_KEEP, or older than SNAPSHOTS_MAX_AGE_HOURS, are expired (time travel
    # reaches that far back); unreferenced files younger than ORPHAN_GRACE_SECONDS are
    # left (another engine may be writing them). A sync runs maintenance on its tables
    # once one holds more than MAINTAIN_AFTER_FILES live data files (0: never).
    snapshots_keep: int = Field(default=5, ge=1)
    snapshots_max_age_hours: float = Field(default=168.0, gt=0)
    orphan_grace_seconds: float = Field(default=3600.0, ge=0)
    maintain_after_files: int = Field(default=16, ge=0)

    @cached_property
    def home_dir(self) -> Path:
        """RAWQUERY_HOME, created on first use."""
        home = self.home.expanduser()
        try:
            home.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"RAWQUERY_HOME={home} cannot be created: {exc.strerror}") from exc
        return home

    @property
    def effective_catalog_uri(self) -> str:
        return self.catalog_uri or f"sqlite:///{self.home_dir / 'catalog.db'}"

    @property
    def effective_warehouse(self) -> str:
        if self.warehouse:
            return self.warehouse
        path = self.home_dir / "warehouse"
        path.mkdir(parents=True, exist_ok=True)
        return path.resolve().as_uri()

    @property
    def fileio_properties(self) -> dict[str, str]:
        """The `s3.*` FileIO properties of the warehouse (pyiceberg's names), set ones only.

        With an endpoint but no region, the region is `us-east-1`: pyiceberg would otherwise
        ask AWS where the bucket lives, which a MinIO or other S3 stand-in cannot answer.
        """
        region = self.s3_region or ("us-east-1" if self.s3_endpoint else None)
        values = {
            "s3.endpoint": self.s3_endpoint,
            "s3.access-key-id": self.s3_access_key_id,
            "s3.secret-access-key": self.s3_secret_access_key,
            "s3.region": region,
        }
        return {key: value for key, value in values.items() if value}

    @property
    def distributed(self) -> bool:
        return bool(self.redis_url)

    @property
    def key_file(self) -> Path:
        return self.home_dir / "secret.key"


_cached: Settings | None = None


def get_settings() -> Settings:
    """The process-wide settings; `reset_settings` drops them (tests change the environment)."""
    global _cached
    if _cached is None:
        _cached = Settings()
    return _cached


def reset_settings() -> None:
    global _cached
    _cached = None
