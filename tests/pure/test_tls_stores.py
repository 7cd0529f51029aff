"""Java trust and key stores (JKS, PKCS12) as MM2 users name them, read into what each client library takes.

The stores are made by the JDK's own ``keytool`` from a throw-away CA and client certificate, so they are the
files a Java user really has. Each form must give the same PEM; a wrong password is an error naming the file
and the key that points to it, never the password.
"""

from __future__ import annotations

import datetime
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from shared.kafka import settings as client_settings
from shared.kafka import tls
from shared.mm2 import config
from shared.mm2.client_settings import Store

STORE_PASSWORD = "st0re-pa55"
KEY_PASSWORD = "k3y-pa55"


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name | None,
    signer: ec.EllipticCurvePrivateKey,
    ca: bool,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(signer, hashes.SHA256())
    )


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | str]:
    keytool = shutil.which("keytool")
    assert keytool, "keytool (the JDK's) is needed: the project's JDK provides it"
    d = tmp_path_factory.mktemp("stores")
    ca_key, client_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _cert("smm-test-ca", ca_key, None, ca_key, ca=True)
    client = _cert("smm-client", client_key, ca.subject, ca_key, ca=False)
    pem = lambda c: c.public_bytes(serialization.Encoding.PEM).decode()  # noqa: E731
    (d / "ca.pem").write_text(pem(ca))
    (d / "client.pem").write_text(
        client_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(KEY_PASSWORD.encode()),
        ).decode()
        + pem(client)
        + pem(ca)
    )
    (d / "client.p12").write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"client", client_key, client, [ca], serialization.BestAvailableEncryption(STORE_PASSWORD.encode())
        )
    )

    def run(*args: str) -> None:
        subprocess.run([keytool, *args], check=True, capture_output=True, timeout=120)

    run(
        "-importcert",
        "-noprompt",
        "-alias",
        "ca",
        "-file",
        str(d / "ca.pem"),
        "-keystore",
        str(d / "trust.jks"),
        "-storetype",
        "JKS",
        "-storepass",
        STORE_PASSWORD,
    )
    run(
        "-importcert",
        "-noprompt",
        "-alias",
        "ca",
        "-file",
        str(d / "ca.pem"),
        "-keystore",
        str(d / "trust.p12"),
        "-storetype",
        "PKCS12",
        "-storepass",
        STORE_PASSWORD,
    )
    run(
        "-importkeystore",
        "-srckeystore",
        str(d / "client.p12"),
        "-srcstoretype",
        "PKCS12",
        "-srcstorepass",
        STORE_PASSWORD,
        "-destkeystore",
        str(d / "client.jks"),
        "-deststoretype",
        "JKS",
        "-deststorepass",
        STORE_PASSWORD,
        "-destkeypass",
        KEY_PASSWORD,
        "-noprompt",
    )
    return {"dir": d, "ca": pem(ca), "client": pem(client)}


@pytest.mark.parametrize(
    ("file", "kind"),
    [
        ("ca.pem", "PEM"),
        ("trust.jks", "JKS"),
        ("trust.p12", "PKCS12"),
        ("trust.jks", None),
        ("trust.p12", None),
        ("ca.pem", None),
    ],
)
def test_every_trust_store_form_gives_the_ca(stores: dict[str, Path | str], file: str, kind: str | None) -> None:
    d = Path(stores["dir"])
    pem = tls.read_store(Store(str(d / file), kind, STORE_PASSWORD), "A.ssl.truststore.location")
    assert pem.certificates == stores["ca"] and pem.key is None


@pytest.mark.parametrize(
    ("file", "kind", "key_password"),
    [
        ("client.pem", "PEM", KEY_PASSWORD),
        ("client.p12", "PKCS12", None),
        ("client.jks", "JKS", KEY_PASSWORD),
        ("client.jks", None, KEY_PASSWORD),
    ],
)
def test_every_key_store_form_gives_the_key_and_chain(
    stores: dict[str, Path | str], file: str, kind: str | None, key_password: str | None
) -> None:
    d = Path(stores["dir"])
    pem = tls.read_store(Store(str(d / file), kind, STORE_PASSWORD), "A.ssl.keystore.location", key_password)
    assert pem.key is not None and "BEGIN PRIVATE KEY" in pem.key  # decrypted, PKCS#8
    assert pem.certificates.startswith(str(stores["client"])) and str(stores["ca"]) in pem.certificates


@pytest.mark.parametrize("file", ["trust.jks", "trust.p12", "client.jks", "client.p12"])
def test_a_wrong_store_password_names_the_file_not_the_password(stores: dict[str, Path | str], file: str) -> None:
    path = Path(stores["dir"]) / file
    with pytest.raises(tls.StoreError) as caught:
        tls.read_store(Store(str(path), None, "not-the-password"), "A.ssl.truststore.location")
    message = str(caught.value)
    assert f"A.ssl.truststore.location = {path}" in message and "password" in message
    assert "not-the-password" not in message and STORE_PASSWORD not in message


def test_a_wrong_key_password_is_an_error(stores: dict[str, Path | str]) -> None:
    with pytest.raises(tls.StoreError, match=r"ssl\.key\.password"):
        tls.read_store(Store(str(Path(stores["dir"]) / "client.pem"), "PEM"), "A.ssl.keystore.location", "wrong")


def test_a_cluster_with_java_stores_gets_them_in_both_libraries(stores: dict[str, Path | str]) -> None:
    d = Path(stores["dir"])
    mirror_config = config.parse(
        {
            "clusters": "A, B",
            "A.bootstrap.servers": "a:9093",
            "B.bootstrap.servers": "b:9092",
            "A.security.protocol": "SSL",
            "A.ssl.truststore.location": str(d / "trust.jks"),
            "A.ssl.truststore.type": "JKS",
            "A.ssl.truststore.password": STORE_PASSWORD,
            "A.ssl.keystore.location": str(d / "client.p12"),
            "A.ssl.keystore.type": "PKCS12",
            "A.ssl.keystore.password": STORE_PASSWORD,
            "A->B.enabled": "true",
        }
    )
    cluster = mirror_config.cluster("A")
    context = client_settings.kafka_python(cluster, "consumer")["ssl_context"]
    assert isinstance(context, ssl.SSLContext) and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "smm-test-ca"),),)]
    librdkafka = client_settings.librdkafka(cluster, "producer", {})
    assert librdkafka["ssl.ca.pem"] == stores["ca"]
    assert "BEGIN PRIVATE KEY" in librdkafka["ssl.key.pem"] and "ssl.keystore.location" not in librdkafka
