"""Private keys at rest (DESIGN §3): passphrase-encrypted JSON key files.

A key file holds the Ed25519 seed encrypted with ChaCha20-Poly1305 under a key derived from the
passphrase by scrypt. The public key and address stay in clear so `keys list/show` need no passphrase;
they (and the KDF parameters) are bound into the AEAD associated data, so editing any clear field makes
decryption fail instead of silently pairing a seed with the wrong address.

An UNENCRYPTED mode exists only for throwaway devnets: the file says so (`"encrypted": false`) and
loading it logs a loud warning. Files are created atomically with mode 0600 and never overwritten
unless asked.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
import stat
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from pocl.ledger.keys import (
    PUBKEY_LEN,
    SEED_LEN,
    KeyFormatError,
    PrivateKey,
    address_of,
    format_address,
    parse_address,
)
from pocl.ledger.storage.durable_file import fsync_dir, write_temp

KEYSTORE_VERSION = 1
KEYSTORE_TYPE = "pocl-ed25519-key"
CIPHER = "chacha20-poly1305"
KDF = "scrypt"
SALT_LEN = 16
NONCE_LEN = 12
KEY_FILE_MODE = 0o600
MAX_KEY_FILE_BYTES = 64 * 1024  # a key file is < 1 KiB; refuse to parse anything huge
AAD_TAG = b"pocl/keystore/v1"

# KDF cost bounds accepted when LOADING a file, so a crafted file cannot make us allocate gigabytes.
MAX_SCRYPT_N = 2**20
MAX_SCRYPT_R = 32
MAX_SCRYPT_P = 16

WRONG_PASSPHRASE = "wrong passphrase or corrupted key file"

log = logging.getLogger("pocl.keystore")


class KeystoreError(Exception):
    """A key file cannot be created, read or decrypted; the message is meant for the operator."""


@dataclasses.dataclass(frozen=True)
class ScryptParams:
    """scrypt cost: n=2**15, r=8 takes ~0.1 s and 32 MiB, the usual interactive setting."""

    n: int = 2**15
    r: int = 8
    p: int = 1

    def check(self) -> None:
        if self.n < 2 or self.n & (self.n - 1) or self.n > MAX_SCRYPT_N:
            raise KeystoreError(f"invalid scrypt n={self.n}: must be a power of two <= {MAX_SCRYPT_N}")
        if not 1 <= self.r <= MAX_SCRYPT_R or not 1 <= self.p <= MAX_SCRYPT_P:
            raise KeystoreError(f"invalid scrypt r={self.r}/p={self.p}")


DEFAULT_SCRYPT = ScryptParams()


@dataclasses.dataclass(frozen=True)
class KeyInfo:
    """What a key file says in clear: readable without the passphrase."""

    path: Path
    address: bytes
    pubkey: bytes
    encrypted: bool

    @property
    def address_hex(self) -> str:
        return format_address(self.address)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.path.stem,
            "path": str(self.path),
            "address": self.address_hex,
            "pubkey": self.pubkey.hex(),
            "encrypted": self.encrypted,
        }


def _derive_key(passphrase: str, salt: bytes, params: ScryptParams) -> bytes:
    params.check()
    kdf = Scrypt(salt=salt, length=32, n=params.n, r=params.r, p=params.p)
    return kdf.derive(passphrase.encode("utf-8"))


def _aad(pubkey: bytes, address: bytes, params: ScryptParams, salt: bytes) -> bytes:
    fields = [
        AAD_TAG,
        pubkey,
        address,
        str(params.n).encode(),
        str(params.r).encode(),
        str(params.p).encode(),
        salt,
    ]
    return b"".join(len(f).to_bytes(2, "big") + f for f in fields)


def encrypt_key(key: PrivateKey, passphrase: str, *, kdf: ScryptParams = DEFAULT_SCRYPT) -> dict[str, Any]:
    """The JSON document of an encrypted key file."""
    if not passphrase:
        raise KeystoreError("empty passphrase: choose a passphrase or use the insecure unencrypted mode")
    salt = secrets.token_bytes(SALT_LEN)
    nonce = secrets.token_bytes(NONCE_LEN)
    pubkey, address = key.pubkey, key.address
    ciphertext = ChaCha20Poly1305(_derive_key(passphrase, salt, kdf)).encrypt(
        nonce, key.seed, _aad(pubkey, address, kdf, salt)
    )
    return {
        "version": KEYSTORE_VERSION,
        "type": KEYSTORE_TYPE,
        "address": format_address(address),
        "pubkey": pubkey.hex(),
        "encrypted": True,
        "crypto": {
            "cipher": CIPHER,
            "kdf": KDF,
            "kdfparams": {"n": kdf.n, "r": kdf.r, "p": kdf.p, "salt": salt.hex()},
            "nonce": nonce.hex(),
            "ciphertext": ciphertext.hex(),
        },
    }


def unencrypted_key_document(key: PrivateKey) -> dict[str, Any]:
    """The JSON document of an UNENCRYPTED key file (devnets only)."""
    return {
        "version": KEYSTORE_VERSION,
        "type": KEYSTORE_TYPE,
        "address": format_address(key.address),
        "pubkey": key.pubkey.hex(),
        "encrypted": False,
        "warning": "INSECURE: this private key is stored unencrypted; use only on throwaway devnets",
        "seed": key.seed.hex(),
    }


def _field(doc: dict[str, Any], name: str, kind: type) -> Any:
    value = doc.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise KeystoreError(f"corrupted key file: field {name!r} missing or not a {kind.__name__}")
    return value


def _hex_field(doc: dict[str, Any], name: str, length: int | None = None) -> bytes:
    text = _field(doc, name, str)
    try:
        raw = bytes.fromhex(text)
    except ValueError as exc:
        raise KeystoreError(f"corrupted key file: field {name!r} is not hex") from exc
    if length is not None and len(raw) != length:
        raise KeystoreError(f"corrupted key file: field {name!r} must be {length} bytes")
    return raw


def parse_key_document(doc: Any, path: Path | str = "<memory>") -> KeyInfo:
    """Check the clear part of a key document; does not decrypt."""
    if not isinstance(doc, dict):
        raise KeystoreError("corrupted key file: not a JSON object")
    if doc.get("type") != KEYSTORE_TYPE:
        raise KeystoreError(f"not a pocl key file (type must be {KEYSTORE_TYPE!r})")
    version = _field(doc, "version", int)
    if version != KEYSTORE_VERSION:
        raise KeystoreError(f"unsupported key file version {version} (this node reads {KEYSTORE_VERSION})")
    pubkey = _hex_field(doc, "pubkey", PUBKEY_LEN)
    try:
        address = parse_address(_field(doc, "address", str))
    except KeyFormatError as exc:
        raise KeystoreError(f"corrupted key file: {exc}") from exc
    if address != address_of(pubkey):
        raise KeystoreError("corrupted key file: address does not match pubkey")
    encrypted = _field(doc, "encrypted", bool)
    return KeyInfo(path=Path(path), address=address, pubkey=pubkey, encrypted=encrypted)


def decrypt_key(doc: Any, passphrase: str | None, path: Path | str = "<memory>") -> PrivateKey:
    """The private key in a key document; `passphrase` is ignored for unencrypted files."""
    info = parse_key_document(doc, path)
    if info.encrypted:
        if passphrase is None:
            raise KeystoreError(f"key file {path} is encrypted: a passphrase is required")
        crypto = doc.get("crypto")
        if not isinstance(crypto, dict) or crypto.get("cipher") != CIPHER or crypto.get("kdf") != KDF:
            raise KeystoreError(f"corrupted key file: unsupported crypto section (need {CIPHER} + {KDF})")
        kdfparams = crypto.get("kdfparams")
        if not isinstance(kdfparams, dict):
            raise KeystoreError("corrupted key file: field 'kdfparams' missing")
        params = ScryptParams(
            n=_field(kdfparams, "n", int), r=_field(kdfparams, "r", int), p=_field(kdfparams, "p", int)
        )
        params.check()
        salt = _hex_field(kdfparams, "salt")
        nonce = _hex_field(crypto, "nonce", NONCE_LEN)
        ciphertext = _hex_field(crypto, "ciphertext", SEED_LEN + 16)
        try:
            seed = ChaCha20Poly1305(_derive_key(passphrase, salt, params)).decrypt(
                nonce, ciphertext, _aad(info.pubkey, info.address, params, salt)
            )
        except InvalidTag as exc:
            raise KeystoreError(WRONG_PASSPHRASE) from exc
    else:
        seed = _hex_field(doc, "seed", SEED_LEN)
        log.warning(
            "INSECURE: loading UNENCRYPTED private key %s (address %s); use encrypted keys outside devnets",
            path,
            info.address_hex,
        )
    key = PrivateKey(seed)
    if key.pubkey != info.pubkey:
        raise KeystoreError(
            WRONG_PASSPHRASE if info.encrypted else "corrupted key file: seed does not match pubkey"
        )
    return key


def write_private_file(path: Path, data: bytes, *, overwrite: bool = False) -> None:
    """Create `path` with mode 0600 atomically: a temp file in the same directory, then link/rename.

    The temp file is created with 0600 from the first byte, so the secret is never readable by others,
    and readers never see a half-written file. Without `overwrite`, an existing file is an error.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not overwrite and path.exists():
        raise KeystoreError(f"key file {path} already exists (refusing to overwrite)")
    tmp = write_temp(path, data, KEY_FILE_MODE)  # 0600 from the first byte: never readable by others
    try:
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if `path` appeared meanwhile: never clobber a key
            except FileExistsError as exc:
                raise KeystoreError(f"key file {path} already exists (refusing to overwrite)") from exc
            except OSError:  # filesystem without hard links: re-check, then rename
                if path.exists():
                    raise KeystoreError(f"key file {path} already exists (refusing to overwrite)") from None
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def save_key(
    path: Path | str,
    key: PrivateKey,
    passphrase: str | None,
    *,
    insecure_unencrypted: bool = False,
    overwrite: bool = False,
    kdf: ScryptParams = DEFAULT_SCRYPT,
) -> KeyInfo:
    """Write `key` to `path`. Unencrypted storage needs `insecure_unencrypted=True` explicitly."""
    if insecure_unencrypted:
        if passphrase:
            raise KeystoreError("a passphrase was given together with the insecure unencrypted mode")
        doc = unencrypted_key_document(key)
        log.warning("INSECURE: writing UNENCRYPTED private key %s; use only on throwaway devnets", path)
    else:
        if passphrase is None:
            raise KeystoreError(
                "a passphrase is required to encrypt the key (or use the insecure unencrypted mode)"
            )
        doc = encrypt_key(key, passphrase, kdf=kdf)
    path = Path(path)
    write_private_file(path, (json.dumps(doc, indent=2) + "\n").encode(), overwrite=overwrite)
    return KeyInfo(path=path, address=key.address, pubkey=key.pubkey, encrypted=not insecure_unencrypted)


def read_key_document(path: Path | str) -> dict[str, Any]:
    """Read and JSON-parse a key file, with operator-readable errors."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError as exc:
        raise KeystoreError(f"key file {path} not found") from exc
    except OSError as exc:
        raise KeystoreError(f"cannot read key file {path}: {exc.strerror}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise KeystoreError(f"key file {path} is not a regular file")
    if st.st_size > MAX_KEY_FILE_BYTES:
        raise KeystoreError(f"corrupted key file {path}: too large ({st.st_size} bytes)")
    if st.st_mode & 0o077:
        log.warning(
            "key file %s is accessible by other users (mode %o); run: chmod 600 %s",
            path,
            stat.S_IMODE(st.st_mode),
            path,
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeystoreError(f"cannot read key file {path}: {exc}") from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise KeystoreError(
            f"corrupted key file {path}: invalid JSON ({exc.msg}: line {exc.lineno} column {exc.colno})"
        ) from exc
    if not isinstance(doc, dict):
        raise KeystoreError(f"corrupted key file {path}: not a JSON object")
    return doc


def read_key_info(path: Path | str) -> KeyInfo:
    """Address/pubkey/encryption flag of a key file, without the passphrase."""
    try:
        return parse_key_document(read_key_document(path), path)
    except KeystoreError as exc:
        _reraise_with_path(exc, path)
        raise


def load_key(path: Path | str, passphrase: str | None) -> PrivateKey:
    """Decrypt the key file at `path`. Raises KeystoreError with an operator-readable message."""
    try:
        return decrypt_key(read_key_document(path), passphrase, path)
    except KeystoreError as exc:
        _reraise_with_path(exc, path)
        raise


def _reraise_with_path(exc: KeystoreError, path: Path | str) -> None:
    """Name the file in the message when it does not already, so the operator knows which key failed."""
    if str(path) not in str(exc):
        raise KeystoreError(f"{exc}: {path}") from exc
