"""`rq secrets rotate|new-key`: manage the keys that encrypt stored credentials.

Rotating a key: put a new key first in RAWQUERY_SECRET_KEY, keep the old one after it
(`NEW,OLD`), run `rq secrets rotate`, then drop OLD.
"""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True)


@app.command()
def rotate() -> None:
    """Re-encrypt every stored credential with the first key in RAWQUERY_SECRET_KEY."""
    from rawquery_workers.registry import open_registry
    from rawquery_workers.registry.vault import ENV_VAR

    registry = open_registry()
    count = registry.rotate_all()
    noun = "credential" if count == 1 else "credentials"
    typer.echo(f"re-encrypted {count} stored {noun} with the first key of {registry.vault.source}")
    if registry.vault.source == ENV_VAR and registry.vault.key_count > 1:
        typer.echo(f"the other keys in {ENV_VAR} are no longer needed and can be removed")


@app.command("new-key")
def new_key() -> None:
    """Print a freshly generated key, to put first in RAWQUERY_SECRET_KEY."""
    from cryptography.fernet import Fernet

    typer.echo(Fernet.generate_key().decode("ascii"))
