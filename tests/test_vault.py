"""The credential vault: key file, RAWQUERY_SECRET_KEY, rotation and clear errors."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from typer.testing import CliRunner

from rawquery_workers.cli import secrets_cmd
from rawquery_workers.errors import ConfigError
from rawquery_workers.registry import Vault, dispose_engines, load_vault, open_registry
from rawquery_workers.settings import get_settings, reset_settings
from rawquery_workers.spec.credentials import Credentials

WRONG_KEY_MESSAGE = (
    "stored credentials cannot be decrypted with RAWQUERY_SECRET_KEY: the key is wrong or "
    "was rotated away; set the key that encrypted them (several comma-separated keys are "
    "accepted)"
)


@pytest.fixture
def use_keys(rq_home: Path, monkeypatch: pytest.MonkeyPatch):
    """Set RAWQUERY_SECRET_KEY to these keys (first encrypts) and re-read the settings."""

    def use(*keys: bytes) -> None:
        monkeypatch.setenv("RAWQUERY_SECRET_KEY", ",".join(k.decode() for k in keys))
        reset_settings()

    yield use
    dispose_engines()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- the key file ---------------------------------------------------------------------


def test_key_file_is_generated_once_with_mode_0600(rq_home: Path) -> None:
    settings = get_settings()
    first = load_vault(settings)
    key_file = settings.key_file
    assert key_file.parent == rq_home
    assert _mode(key_file) == 0o600
    Fernet(key_file.read_text().strip())  # a valid key
    token = first.encrypt(b"hello")
    second = load_vault(settings)
    assert second.decrypt(token) == b"hello"
    assert sorted(p.name for p in rq_home.iterdir()) == ["secret.key"]  # no temp file left


def test_key_file_with_loose_mode_is_tightened(rq_home: Path) -> None:
    key_file = get_settings().key_file
    key_file.write_bytes(Fernet.generate_key())
    key_file.chmod(0o644)
    load_vault(get_settings())
    assert _mode(key_file) == 0o600


def test_key_file_that_is_a_folder_is_refused(rq_home: Path) -> None:
    get_settings().key_file.mkdir(parents=True)
    with pytest.raises(ConfigError, match="not a regular file"):
        load_vault(get_settings())


def test_empty_or_malformed_key_file_names_the_file(rq_home: Path) -> None:
    key_file = get_settings().key_file
    key_file.write_text("")
    with pytest.raises(ConfigError, match="holds no key") as info:
        load_vault(get_settings())
    assert str(key_file) in str(info.value)
    key_file.write_text("not-a-key-at-all")
    with pytest.raises(ConfigError, match="is not a valid Fernet key") as info:
        load_vault(get_settings())
    assert str(key_file) in str(info.value)
    assert "not-a-key-at-all" not in str(info.value)


def test_concurrent_first_use_agrees_on_one_key(rq_home: Path) -> None:
    settings = get_settings()
    barrier = threading.Barrier(8)
    vaults: list[Vault] = []
    errors: list[BaseException] = []

    def load() -> None:
        try:
            barrier.wait()
            vaults.append(load_vault(settings))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    token = vaults[0].encrypt(b"x")
    assert all(v.decrypt(token) == b"x" for v in vaults)
    assert sorted(p.name for p in rq_home.iterdir()) == ["secret.key"]


# --- RAWQUERY_SECRET_KEY ----------------------------------------------------------------


def test_env_key_wins_and_no_key_file_is_written(rq_home: Path, use_keys) -> None:
    key = Fernet.generate_key()
    use_keys(key)
    vault = load_vault(get_settings())
    assert vault.source == "RAWQUERY_SECRET_KEY"
    assert Fernet(key).decrypt(vault.encrypt(b"v").encode()) == b"v"
    assert not get_settings().key_file.exists()


def test_malformed_env_key_names_the_variable_never_the_key(
    rq_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAWQUERY_SECRET_KEY", "hunter2-is-my-key")
    reset_settings()
    with pytest.raises(ConfigError) as info:
        load_vault(get_settings())
    message = str(info.value)
    assert "RAWQUERY_SECRET_KEY" in message and "not a valid Fernet key" in message
    assert "hunter2" not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__

    good = Fernet.generate_key().decode()
    monkeypatch.setenv("RAWQUERY_SECRET_KEY", f"{good}, hunter2-is-my-key")
    reset_settings()
    with pytest.raises(ConfigError, match="key #2 of RAWQUERY_SECRET_KEY") as info:
        load_vault(get_settings())
    assert "hunter2" not in str(info.value) and good not in str(info.value)


def test_repr_never_shows_a_key(rq_home: Path, use_keys) -> None:
    key = Fernet.generate_key()
    use_keys(key)
    vault = load_vault(get_settings())
    assert key.decode() not in repr(vault)
    assert key.decode() not in repr(get_settings())


# --- rotation -------------------------------------------------------------------------


def test_two_keys_old_decrypts_new_encrypts(rq_home: Path, use_keys) -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    use_keys(old)
    old_token = load_vault(get_settings()).encrypt(b"secret")
    use_keys(new, old)
    both = load_vault(get_settings())
    assert both.key_count == 2
    assert both.decrypt(old_token) == b"secret"
    new_token = both.encrypt(b"fresh")
    assert Fernet(new).decrypt(new_token.encode()) == b"fresh"
    rotated = both.rotate(old_token)
    assert Fernet(new).decrypt(rotated.encode()) == b"secret"
    use_keys(old)
    with pytest.raises(ConfigError):
        load_vault(get_settings()).decrypt(new_token)


def test_wrong_key_gives_the_clear_message(rq_home: Path, use_keys) -> None:
    use_keys(Fernet.generate_key())
    token = load_vault(get_settings()).encrypt(b"secret")
    use_keys(Fernet.generate_key())
    vault = load_vault(get_settings())
    for attempt in (vault.decrypt, vault.rotate):
        with pytest.raises(ConfigError) as info:
            attempt(token)
        assert str(info.value) == WRONG_KEY_MESSAGE
    with pytest.raises(ConfigError, match="cannot be decrypted"):
        vault.decrypt("not a token \u00e9")


def test_wrong_key_file_points_at_the_file_and_the_variable(rq_home: Path, use_keys) -> None:
    use_keys(Fernet.generate_key())
    token = load_vault(get_settings()).encrypt(b"secret")
    key_file = get_settings().key_file
    key_file.write_bytes(Fernet.generate_key())
    key_file.chmod(0o600)
    use_keys()  # empty: fall back to the key file
    with pytest.raises(ConfigError) as info:
        load_vault(get_settings()).decrypt(token)
    assert str(key_file) in str(info.value) and "RAWQUERY_SECRET_KEY" in str(info.value)


def test_rotate_all_then_only_the_new_key_decrypts(rq_home: Path, use_keys) -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    use_keys(old)
    registry = open_registry()
    registry.create_connection("a", {"v": 1}, Credentials(token="tok-a"))
    registry.create_connection("b", {"v": 1}, Credentials(username="u", password="pw-b"))

    use_keys(new, old)
    registry = open_registry()
    assert registry.get_credentials("a").token == "tok-a"  # old key still decrypts
    assert registry.rotate_all() == 2

    use_keys(new)
    registry = open_registry()
    assert registry.get_credentials("a").token == "tok-a"
    assert registry.get_credentials("b").password == "pw-b"

    use_keys(old)
    with pytest.raises(ConfigError) as info:
        open_registry().get_credentials("a")
    assert str(info.value) == WRONG_KEY_MESSAGE


def test_rq_secrets_rotate_reports_the_count(rq_home: Path, use_keys) -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    use_keys(old)
    open_registry().create_connection("a", {"v": 1}, Credentials(token="tok-a"))
    use_keys(new, old)
    result = CliRunner().invoke(secrets_cmd.app, ["rotate"])
    assert result.exit_code == 0, result.output
    assert "re-encrypted 1 stored credential with the first key of RAWQUERY_SECRET_KEY" in (
        result.output
    )
    assert new.decode() not in result.output and old.decode() not in result.output
    use_keys(new)
    assert open_registry().get_credentials("a").token == "tok-a"


def test_rq_secrets_new_key_prints_a_valid_key() -> None:
    result = CliRunner().invoke(secrets_cmd.app, ["new-key"])
    assert result.exit_code == 0
    Fernet(result.output.strip())
