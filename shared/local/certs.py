"""Throw-away TLS material for local brokers, made with the ``openssl`` command line.

A local secured cluster needs a CA its clients trust, a broker certificate for the loopback names, and for
mutual TLS a client certificate. Everything is PEM, so the broker (``ssl.keystore.type=PEM``), kafka-python and
librdkafka read the same files, and the keys are P-256 EC: generating one takes milliseconds, not the second an
RSA key can take on a busy laptop. The CA lives in one directory per state dir (``<state dir>/tls``) so every
local broker of a run is trusted through one ``ssl.truststore.location``; it is made once and reused. Private
keys are written with mode 0600 and never passed on a command line or printed.

This is for local clusters only: the CA key sits unencrypted next to the brokers' data.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

CA_DAYS = 3650
LEAF_DAYS = 825
# Every name a loopback client may use for a local broker, so hostname verification stays on.
LOOPBACK_NAMES = ("IP:127.0.0.1", "IP:::1", "DNS:localhost")
_PASSWORD_ENV = "SMM_PEM_PASSWORD"  # how an encryption password reaches openssl: never in argv
_OPENSSL_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = {names}
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""
_thread_lock = threading.Lock()


class CertificateError(RuntimeError):
    """TLS material could not be made or does not fit; the message says which file and what to do."""


@dataclass(frozen=True)
class Authority:
    """The local CA: its certificate (what clients trust) and its key (what signs brokers and clients)."""

    cert: Path
    key: Path

    def pem(self) -> str:
        return self.cert.read_text(encoding="ascii")

    def issued(self, pem_file: Path) -> bool:
        """True when the first certificate in ``pem_file`` was signed by this CA."""
        result = _run(["verify", "-CAfile", str(self.cert), str(pem_file)], check=False)
        return result.returncode == 0


@dataclass(frozen=True)
class Leaf:
    """A certificate chain (leaf first, then the CA) and its private key, as PEM text."""

    chain: str
    key: str

    def __repr__(self) -> str:  # a traceback or a debug print must not show the key
        return "Leaf(<PEM chain and key>)"


def authority(directory: Path) -> Authority:
    """The CA kept in ``directory``, created on first use; safe against parallel starts."""
    ca = Authority(directory / "ca.pem", directory / "ca-key.pem")
    if ca.cert.is_file() and ca.key.is_file():
        return ca
    with _exclusive(directory):
        if not (ca.cert.is_file() and ca.key.is_file()):
            with _scratch() as tmp:
                _run(
                    [
                        *("req", "-x509", "-new", "-sha256", "-days", str(CA_DAYS), *_new_key(tmp / "key.pem")),
                        *("-subj", "/CN=smm local CA", "-config", str(_config(tmp)), "-extensions", "ca"),
                        *("-out", str(tmp / "cert.pem")),
                    ]
                )
                _install(tmp / "key.pem", ca.key, private=True)
                _install(tmp / "cert.pem", ca.cert, private=False)
    return ca


def issue(
    ca: Authority,
    common_name: str,
    *,
    server_names: Sequence[str] = LOOPBACK_NAMES,
    client_only: bool = False,
    key_password: str | None = None,
) -> Leaf:
    """A new key and a certificate for it signed by ``ca``: a broker's (server and client use) or a client's.

    ``key_password`` encrypts the key (PKCS#8, AES-256), as Java clients need for a PEM keystore file.
    """
    with _scratch() as tmp:
        csr = _run(
            ["req", "-new", *_new_key(tmp / "key.pem"), "-subj", f"/CN={common_name}", "-config", str(_config(tmp))]
        )
        _run(
            [
                *("x509", "-req", "-sha256", "-days", str(LEAF_DAYS), "-set_serial", f"0x{secrets.token_hex(16)}"),
                *("-CA", str(ca.cert), "-CAkey", str(ca.key), "-out", str(tmp / "cert.pem")),
                *("-extfile", str(_config(tmp, server_names)), "-extensions", "client" if client_only else "server"),
            ],
            stdin=csr.stdout,
        )
        key_file = tmp / "key.pem"
        if key_password:
            _run(
                ["pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", str(key_file), "-passout", f"env:{_PASSWORD_ENV}"],
                env={_PASSWORD_ENV: key_password},
                out=tmp / "key.enc.pem",
            )
            key_file = tmp / "key.enc.pem"
        return Leaf(chain=(tmp / "cert.pem").read_text("ascii") + ca.pem(), key=key_file.read_text("ascii"))


def write_private(path: Path, text: str) -> None:
    """``text`` into ``path`` with mode 0600, atomically (a reader never sees half a key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _new_key(key_file: Path) -> list[str]:
    return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key_file)]


def _config(tmp: Path, server_names: Sequence[str] = LOOPBACK_NAMES) -> Path:
    path = tmp / "openssl.cnf"
    path.write_text(_OPENSSL_CONFIG.format(names=", ".join(server_names)), encoding="ascii")
    return path


def _install(source: Path, target: Path, *, private: bool) -> None:
    text = source.read_text(encoding="ascii")
    if private:
        write_private(target, text)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="ascii")
        os.replace(tmp, target)


def _openssl() -> str:
    found = shutil.which("openssl")
    if found is None:
        raise CertificateError(
            "openssl not found: a local TLS or SASL_SSL cluster needs it on PATH to make certificates"
        )
    return found


def _run(
    args: list[str],
    *,
    check: bool = True,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    out: Path | None = None,
) -> subprocess.CompletedProcess[bytes]:
    command = [_openssl(), *args]
    if out is not None:
        command += ["-out", str(out)]
    result = subprocess.run(
        command,
        input=stdin,
        capture_output=True,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )
    if check and result.returncode != 0:
        # stderr of openssl names files and options, never key material.
        error = result.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise CertificateError(f"openssl {args[0]} failed (exit {result.returncode}): {' / '.join(error)}")
    return result


@contextlib.contextmanager
def _scratch() -> Iterator[Path]:
    """A private directory for keys in the making, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="smm-tls-") as tmp:
        os.chmod(tmp, 0o700)
        yield Path(tmp)


@contextlib.contextmanager
def _exclusive(directory: Path) -> Iterator[None]:
    """Held by one thread and one process at a time, so two brokers starting together share one CA."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _thread_lock, (directory / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
