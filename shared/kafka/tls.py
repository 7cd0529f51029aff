"""TLS material for the clients: trust and key stores (PEM, JKS or PKCS12) read as PEM, in each library's terms.

MM2 users name Java stores (``ssl.truststore.location = truststore.jks``, ``ssl.keystore.type = PKCS12``); the
Python clients take PEM. Stores are read in memory: kafka-python gets an ``ssl.SSLContext`` (CA certificates
loaded from memory; a client key through a private temporary file, the only way ``load_cert_chain`` reads one),
librdkafka gets ``ssl.ca.pem``/``ssl.certificate.pem``/``ssl.key.pem``. A store whose type is not named is read
by its first bytes, as PEM text, JKS, or else PKCS12 (Java would assume JKS). A wrong password or an unreadable
file is a ``StoreError`` naming the file and the key that points to it, never a password.
"""

from __future__ import annotations

import functools
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from shared.mm2.client_settings import ClientSettings, Store
from shared.mm2.config import ConfigError

_JKS_MAGIC = b"\xfe\xed\xfe\xed"
_JCEKS_MAGIC = b"\xce\xce\xce\xce"
_PRIVATE_DIR_ENV = "SMM_TLS_DIR"


class StoreError(ConfigError):
    """A trust or key store that cannot be read; the message names the file and the setting."""

    def __init__(self, problem: str) -> None:
        super().__init__([problem])


@dataclass(frozen=True)
class Pem:
    """A store's content as PEM: certificates (a chain, or CA certificates) and, for a key store, the key."""

    certificates: str
    key: str | None = None


def read_store(store: Store, setting: str, key_password: str | None = None) -> Pem:
    """The PEM content of ``store``; ``setting`` (``A.ssl.truststore.location``) names it in errors."""
    if store.pem is not None:
        return _split_pem(store.pem, key_password)
    assert store.location is not None
    try:
        data = Path(store.location).read_bytes()
    except OSError as exc:
        raise StoreError(f"{setting} = {store.location}: cannot read it ({exc.strerror})") from None
    return _read(data, store, setting, key_password)


@functools.lru_cache(maxsize=32)
def _read_cached(data: bytes, kind: str, password: str | None, key_password: str | None, where: str) -> Pem:
    if kind == "PEM":
        return _split_pem(data.decode("ascii", errors="replace"), key_password)
    if kind == "JKS":
        return _read_jks(data, password, key_password, where)
    return _read_pkcs12(data, password, where)


def _read(data: bytes, store: Store, setting: str, key_password: str | None) -> Pem:
    kind = store.type or _sniff(data)
    where = f"{setting} = {store.location}"
    return _read_cached(data, kind, store.password, key_password, where)


def _sniff(data: bytes) -> str:
    if data[:4] in (_JKS_MAGIC, _JCEKS_MAGIC):
        return "JKS"
    if b"-----BEGIN" in data[:4096]:
        return "PEM"
    return "PKCS12"


def _split_pem(text: str, key_password: str | None) -> Pem:
    """Certificates and the (decrypted, PKCS#8) private key of PEM text."""
    certificates: list[str] = []
    key: str | None = None
    for block in _pem_blocks(text):
        if "PRIVATE KEY" in block.splitlines()[0]:
            encrypted = "ENCRYPTED" in block or "Proc-Type: 4,ENCRYPTED" in block
            password = key_password.encode() if key_password and encrypted else None
            try:
                loaded = serialization.load_pem_private_key(block.encode(), password=password)
            except (ValueError, TypeError):
                raise StoreError("the private key cannot be read: wrong or missing ssl.key.password") from None
            key = _key_pem(loaded)
        else:
            certificates.append(block)
    return Pem("".join(certificates), key)


def _pem_blocks(text: str) -> list[str]:
    blocks: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        if line.startswith("-----BEGIN"):
            current = [line]
        elif current:
            current.append(line)
            if line.startswith("-----END"):
                blocks.append("\n".join(current) + "\n")
                current = []
    return blocks


def _key_pem(key: Any) -> str:
    return str(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode("ascii")
    )


def _cert_pem(der: bytes) -> str:
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM).decode("ascii")


def _read_jks(data: bytes, password: str | None, key_password: str | None, where: str) -> Pem:
    import jks  # pyjks: only needed for JKS stores

    try:
        store = jks.KeyStore.loads(data, password or "", try_decrypt_keys=True)
    except jks.util.KeystoreSignatureException:
        raise StoreError(f"{where}: wrong password for this JKS store (its ssl.*.password)") from None
    except (jks.util.BadKeystoreFormatException, jks.util.UnsupportedKeystoreVersionException) as exc:
        raise StoreError(f"{where}: not a JKS store ({exc})") from None
    certificates = [_cert_pem(entry.cert) for entry in store.certs.values()]
    key = None
    for entry in store.private_keys.values():
        if not entry.is_decrypted():
            try:
                entry.decrypt(key_password or password or "")
            except jks.util.DecryptionFailureException:
                raise StoreError(f"{where}: the key cannot be decrypted: wrong ssl.key.password?") from None
        key = _key_pem(serialization.load_der_private_key(entry.pkey_pkcs8, password=None))
        certificates = [_cert_pem(der) for _, der in entry.cert_chain] + certificates
        break
    return Pem("".join(certificates), key)


def _read_pkcs12(data: bytes, password: str | None, where: str) -> Pem:
    try:
        key, certificate, extra = pkcs12.load_key_and_certificates(data, password.encode() if password else None)
    except ValueError:
        raise StoreError(f"{where}: wrong password for this PKCS12 store, or not a PKCS12 file") from None
    chain = ([certificate] if certificate is not None else []) + list(extra)
    certificates = "".join(c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in chain)
    return Pem(certificates, _key_pem(key) if key is not None else None)


def _stores(settings: ClientSettings, alias: str) -> tuple[Pem | None, Pem | None]:
    trust = None
    if settings.truststore is not None:
        trust = read_store(settings.truststore, f"{alias}.ssl.truststore.location")
    identity = None
    if settings.keystore is not None:
        key_password = settings.key_password or settings.keystore.password
        identity = read_store(settings.keystore, f"{alias}.ssl.keystore.location", key_password)
        if identity.key is None:
            raise StoreError(f"{alias}.ssl.keystore.location = {settings.keystore.location}: holds no private key")
    return trust, identity


def ssl_context(settings: ClientSettings, alias: str) -> ssl.SSLContext:
    """kafka-python's context, as it builds one (TLS 1.2 or newer), plus the stores, versions and ciphers named."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3 if settings.tls_versions == ("TLSv1.3",) else ssl.TLSVersion.TLSv1_2
    if "TLSv1.3" not in settings.tls_versions and settings.tls_versions:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = settings.check_hostname
    trust, identity = _stores(settings, alias)
    if trust is not None:
        if not trust.certificates:
            raise StoreError(f"{alias}.ssl.truststore.location: holds no certificate")
        ctx.load_verify_locations(cadata=trust.certificates)
    else:
        ctx.load_default_certs()
    if identity is not None and identity.key is not None:
        path = _private_file(identity.key + identity.certificates)
        ctx.load_cert_chain(certfile=str(path))
    ciphers = settings.java.get("ssl.cipher.suites")
    if ciphers:
        try:
            ctx.set_ciphers(":".join(c.strip() for c in ciphers.split(",") if c.strip()))
        except ssl.SSLError:
            raise StoreError(f"{alias}.ssl.cipher.suites = {ciphers}: no cipher suite OpenSSL knows") from None
    return ctx


def librdkafka_tls(settings: ClientSettings, alias: str) -> dict[str, Any]:
    """librdkafka's TLS properties: the stores inline as PEM, hostname checking as named."""
    if settings.tls_versions == ("TLSv1.3",):
        raise StoreError(
            f"{alias}.ssl.enabled.protocols = TLSv1.3: librdkafka cannot be limited to TLS 1.3 here; "
            "use smm.producer.backend = kafka-python for this cluster"
        )
    config: dict[str, Any] = {}
    trust, identity = _stores(settings, alias)
    if trust is not None:
        config["ssl.ca.pem"] = trust.certificates
    if identity is not None and identity.key is not None:
        config["ssl.key.pem"] = identity.key
        config["ssl.certificate.pem"] = identity.certificates
    if not settings.check_hostname:
        config["ssl.endpoint.identification.algorithm"] = "none"
    return config


def _private_file(content: str) -> Path:
    """``content`` in a file only this user can read, named by its digest (a rotated key gets a new file)."""
    import hashlib

    directory = Path(os.environ.get(_PRIVATE_DIR_ENV) or Path(tempfile.gettempdir(), "smm-tls"))
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / f"client-{hashlib.sha256(content.encode()).hexdigest()[:16]}.pem"
    if path.exists():
        return path
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".client-")  # mode 0600
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(content)
    os.replace(tmp, path)
    return path
