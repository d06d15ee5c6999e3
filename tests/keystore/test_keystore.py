"""Keystore: encryption round trip, wrong passphrase, tampering, file mode, unencrypted devnet mode."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import pytest
from pocl.ledger.keys import PrivateKey
from pocl.ledger.storage.keystore import (
    DEFAULT_SCRYPT,
    WRONG_PASSPHRASE,
    KeystoreError,
    ScryptParams,
    decrypt_key,
    encrypt_key,
    load_key,
    read_key_info,
    save_key,
    write_private_file,
)

FAST = ScryptParams(n=2**10, r=8, p=1)  # cheap KDF for tests; the default is exercised once below
KEY = PrivateKey.from_seed_text("keystore-test")


def _save(tmp_path: Path, name: str = "k.json", **kw) -> Path:
    path = tmp_path / name
    save_key(path, KEY, kw.pop("passphrase", "correct horse"), kdf=FAST, **kw)
    return path


def _tamper(path: Path, mutate) -> None:
    doc = json.loads(path.read_text())
    mutate(doc)
    os.chmod(path, 0o600)
    path.write_text(json.dumps(doc))


def test_round_trip_with_default_kdf(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    info = save_key(path, KEY, "pw")
    assert info.encrypted and info.address == KEY.address
    assert load_key(path, "pw") == KEY
    doc = json.loads(path.read_text())
    assert doc["crypto"]["kdfparams"]["n"] == DEFAULT_SCRYPT.n
    assert doc["address"] == "0x" + KEY.address.hex() and doc["pubkey"] == KEY.pubkey.hex()
    assert KEY.seed.hex() not in path.read_text()


def test_info_readable_without_passphrase(tmp_path: Path) -> None:
    info = read_key_info(_save(tmp_path))
    assert (info.address, info.pubkey, info.encrypted) == (KEY.address, KEY.pubkey, True)


def test_wrong_passphrase(tmp_path: Path) -> None:
    path = _save(tmp_path)
    with pytest.raises(KeystoreError, match=WRONG_PASSPHRASE):
        load_key(path, "wrong")


def test_missing_passphrase_for_encrypted_file(tmp_path: Path) -> None:
    with pytest.raises(KeystoreError, match="passphrase is required"):
        load_key(_save(tmp_path), None)


def test_file_mode_is_0600_even_with_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = _save(tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temp file left behind"


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    path = _save(tmp_path)
    before = path.read_bytes()
    with pytest.raises(KeystoreError, match="already exists"):
        save_key(path, PrivateKey.generate(), "pw", kdf=FAST)
    assert path.read_bytes() == before
    save_key(path, PrivateKey.generate(), "pw", kdf=FAST, overwrite=True)
    assert path.read_bytes() != before


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d["crypto"].__setitem__("ciphertext", "00" * 48),
        lambda d: d["crypto"].__setitem__("nonce", "11" * 12),
        lambda d: d["crypto"]["kdfparams"].__setitem__("salt", "22" * 16),
        lambda d: d["crypto"]["kdfparams"].__setitem__("r", 4),
    ],
    ids=["ciphertext", "nonce", "salt", "kdf-r"],
)
def test_tampered_secret_part_fails_authentication(tmp_path: Path, mutate) -> None:
    path = _save(tmp_path)
    _tamper(path, mutate)
    with pytest.raises(KeystoreError, match=WRONG_PASSPHRASE):
        load_key(path, "correct horse")


def test_swapped_public_part_is_detected(tmp_path: Path) -> None:
    other = PrivateKey.from_seed_text("other")
    path = _save(tmp_path)

    def swap(d: dict) -> None:
        d["pubkey"] = other.pubkey.hex()
        d["address"] = "0x" + other.address.hex()

    _tamper(path, swap)
    with pytest.raises(KeystoreError, match=WRONG_PASSPHRASE):
        load_key(path, "correct horse")


def test_address_pubkey_mismatch_is_corruption(tmp_path: Path) -> None:
    path = _save(tmp_path)
    _tamper(path, lambda d: d.__setitem__("address", "0x" + "ab" * 20))
    with pytest.raises(KeystoreError, match="address does not match pubkey"):
        read_key_info(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "invalid JSON"),
        (b'{"version": 1, "type": "pocl-ed25519-k', "invalid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"type": "something-else"}', "not a pocl key file"),
        (b'{"type": "pocl-ed25519-key", "version": 99}', "unsupported key file version 99"),
        (b"\xff\xfe\x00", "cannot read key file"),
    ],
)
def test_corrupt_files_give_clear_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.json"
    write_private_file(path, content)
    with pytest.raises(KeystoreError, match=message):
        load_key(path, "pw")


def test_truncated_file(tmp_path: Path) -> None:
    path = _save(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(KeystoreError, match=r"corrupted key file .*invalid JSON"):
        load_key(path, "correct horse")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KeystoreError, match="not found"):
        load_key(tmp_path / "nope.json", "pw")


def test_hostile_kdf_params_are_rejected_before_deriving(tmp_path: Path) -> None:
    path = _save(tmp_path)
    _tamper(path, lambda d: d["crypto"]["kdfparams"].__setitem__("n", 2**30))
    with pytest.raises(KeystoreError, match="invalid scrypt n"):
        load_key(path, "correct horse")


def test_unencrypted_mode_is_explicit_and_loud(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "dev.json"
    with pytest.raises(KeystoreError, match="passphrase is required"):
        save_key(path, KEY, None)
    info = save_key(path, KEY, None, insecure_unencrypted=True)
    assert not info.encrypted
    doc = json.loads(path.read_text())
    assert doc["encrypted"] is False and "INSECURE" in doc["warning"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with caplog.at_level(logging.WARNING, logger="pocl.keystore"):
        assert load_key(path, None) == KEY
    assert any("UNENCRYPTED" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_unencrypted_seed_pubkey_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "dev.json"
    save_key(path, KEY, None, insecure_unencrypted=True)
    _tamper(path, lambda d: d.__setitem__("seed", "00" * 32))
    with pytest.raises(KeystoreError, match="seed does not match pubkey"):
        load_key(path, None)


def test_group_readable_file_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _save(tmp_path)
    os.chmod(path, 0o644)
    with caplog.at_level(logging.WARNING, logger="pocl.keystore"):
        read_key_info(path)
    assert any("chmod 600" in r.getMessage() for r in caplog.records)


def test_in_memory_documents_round_trip() -> None:
    doc = encrypt_key(KEY, "pw", kdf=FAST)
    assert decrypt_key(json.loads(json.dumps(doc)), "pw") == KEY
    with pytest.raises(KeystoreError, match="empty passphrase"):
        encrypt_key(KEY, "", kdf=FAST)
