"""The credential vault: Fernet encryption with key rotation (MultiFernet).

Keys come from RAWQUERY_SECRET_KEY (comma-separated: the first encrypts, every one
decrypts) or, when it is unset, from `$RAWQUERY_HOME/secret.key`, generated on first use
with mode 0600. A key is never echoed: not in a message, a log line or a repr.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from rawquery_workers.errors import ConfigError
from rawquery_workers.settings import Settings

ENV_VAR = "RAWQUERY_SECRET_KEY"
_KEY_HINT = "a Fernet key is 32 url-safe base64-encoded bytes; make one with `rq secrets new-key`"


class Vault:
    """Encrypts and decrypts credential blobs; `source` names where the keys came from."""

    __slots__ = ("_fernet", "key_count", "source")

    def __init__(self, keys: list[bytes], source: str) -> None:
        if not keys:
            raise ConfigError(f"{source} holds no key; {_KEY_HINT}")
        self._fernet = MultiFernet([_fernet(key, source, i) for i, key in enumerate(keys)])
        self.key_count = len(keys)
        self.source = source

    def __repr__(self) -> str:
        return f"Vault(source={self.source!r}, keys={self.key_count})"

    def encrypt(self, plaintext: bytes) -> str:
        """A Fernet token (ASCII) for `plaintext`, made with the first key."""
        return self._fernet.encrypt(plaintext).decode("ascii")

    def decrypt(self, token: str) -> bytes:
        try:
            return self._fernet.decrypt(token.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError):
            raise self._undecryptable() from None

    def rotate(self, token: str) -> str:
        """`token` re-encrypted with the first key (it may have been made with any key)."""
        try:
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeEncodeError):
            raise self._undecryptable() from None

    def _undecryptable(self) -> ConfigError:
        if self.source == ENV_VAR:
            return ConfigError(
                f"stored credentials cannot be decrypted with {ENV_VAR}: the key is wrong or "
                "was rotated away; set the key that encrypted them (several comma-separated "
                "keys are accepted)"
            )
        return ConfigError(
            f"stored credentials cannot be decrypted with the key in {self.source}: the key "
            f"is wrong or was replaced; set {ENV_VAR} to the key that encrypted them "
            "(several comma-separated keys are accepted)"
        )


def _fernet(key: bytes, source: str, index: int) -> Fernet:
    try:
        return Fernet(key)
    except (ValueError, TypeError):
        # `from None`: the underlying error must not drag the key into a traceback.
        where = f"key #{index + 1} of {source}" if index or source == ENV_VAR else source
        raise ConfigError(f"{where} is not a valid Fernet key; {_KEY_HINT}") from None


def _split_keys(text: str) -> list[bytes]:
    parts = text.replace("\n", ",").split(",")
    return [p.strip().encode("ascii", "replace") for p in parts if p.strip()]


def load_vault(settings: Settings) -> Vault:
    """The vault for these settings: RAWQUERY_SECRET_KEY if set, else the key file."""
    if settings.secret_key and settings.secret_key.strip():
        return Vault(_split_keys(settings.secret_key), ENV_VAR)
    path = settings.key_file
    return Vault(_split_keys(read_or_create_key_file(path)), str(path))


def read_or_create_key_file(path: Path) -> str:
    """The key file's text, generating a new key into it (mode 0600) if it does not exist."""
    try:
        _check_mode(path)
        return path.read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        pass
    _create_key_file(path)
    return path.read_text(encoding="ascii", errors="replace")


def _check_mode(path: Path) -> None:
    """Refuse anything but a regular file; tighten a group/world-readable one to 0600."""
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{path} is not a regular file; remove it or set {ENV_VAR}")
    if info.st_mode & 0o077:
        try:
            os.chmod(path, 0o600)
        except OSError as exc:
            raise ConfigError(
                f"{path} is readable by other users (mode {stat.S_IMODE(info.st_mode):o}) and "
                f"cannot be restricted ({exc.strerror}); run `chmod 600 {path}`"
            ) from None


def _create_key_file(path: Path) -> None:
    """Write a fresh key to a private temp file, then link it into place.

    `os.link` fails if `path` exists, so concurrent first runs agree on one key, and no
    reader ever sees a half-written file.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {path.parent} for the key file: {exc.strerror}") from None
    temp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot create the key file {path}: {exc.strerror}") from None
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, Fernet.generate_key() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(temp, path)
    except FileExistsError:
        pass  # another process won the race: use its key
    except OSError:
        _create_in_place(path)  # a file system without hard links
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temp)


def _create_in_place(path: Path) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise ConfigError(f"cannot create the key file {path}: {exc.strerror}") from None
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, Fernet.generate_key() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
