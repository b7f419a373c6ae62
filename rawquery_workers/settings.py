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
    # Records fetched and committed as one unit of work (one Iceberg commit per segment).
    segment_records: int = 200_000

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
