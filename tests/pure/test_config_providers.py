"""Kafka's config providers in ``mm2.properties``: ``env``, ``file``, ``directory``, with MM2's syntax.

A reference that cannot be resolved is an error naming the reference (MM2 would send the literal text); a
resolved value never appears in a message, even when it is the invalid part.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.mm2 import config
from shared.mm2.config import ConfigError

PROVIDERS = {
    "config.providers": "env, file,directory",
    "config.providers.env.class": "org.apache.kafka.common.config.provider.EnvVarConfigProvider",
    "config.providers.file.class": "org.apache.kafka.common.config.provider.FileConfigProvider",
    "config.providers.directory.class": "org.apache.kafka.common.config.provider.DirectoryConfigProvider",
}
SECRET = "s3cr3t-from-a-provider"


def parse(**entries: str) -> config.MirrorConfig:
    return config.parse(
        {
            "clusters": "A, B",
            "A.bootstrap.servers": "a:9092",
            "B.bootstrap.servers": "b:9092",
            "A->B.enabled": "true",
            **PROVIDERS,
            **entries,
        }
    )


def test_env_file_and_directory_references_resolve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMM_TEST_BOOTSTRAP", "kafka-1.example:9092,kafka-2.example:9092")
    (tmp_path / "creds.properties").write_text("username = mirror\npassword = " + SECRET + "\n", encoding="utf-8")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "client-id").write_text("from-a-file\n", encoding="utf-8")
    creds = tmp_path / "creds.properties"
    jaas = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="${{file:{creds}:username}}" password="${{file:{creds}:password}}";'
    )
    mirror_config = parse(
        **{
            "A.bootstrap.servers": "${env:SMM_TEST_BOOTSTRAP}",
            "A.security.protocol": "SASL_SSL",
            "A.sasl.mechanism": "SCRAM-SHA-512",
            "A.sasl.jaas.config": jaas,
            "A.producer.client.id": f"${{directory:{tmp_path / 'dir'}:client-id}}",
        }
    )
    a = mirror_config.cluster("A")
    assert a.bootstrap_servers == ("kafka-1.example:9092", "kafka-2.example:9092")
    assert (a.settings("admin").username, a.settings("admin").password) == ("mirror", SECRET)
    assert a.role_settings("producer")["client.id"] == "from-a-file\n"  # the whole file, as Kafka's provider reads it


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("${env:SMM_TEST_UNSET}", "${env:SMM_TEST_UNSET}: no 'SMM_TEST_UNSET' for provider 'env'"),
        ("${env:x:SMM_TEST_UNSET}", "path 'x' is not supported by the env provider"),
        ("${file:/nonexistent/creds.properties:password}", "cannot read properties from file /nonexistent"),
        ("${directory:/nonexistent:file}", "/nonexistent is not a directory"),
    ],
)
def test_an_unresolvable_reference_is_an_error_naming_it(
    value: str, fragment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SMM_TEST_UNSET", raising=False)
    with pytest.raises(ConfigError) as caught:
        parse(**{"A.producer.client.id": value})
    assert any(p.startswith("A.producer.client.id: ") and fragment in p for p in caught.value.problems), caught.value


def test_a_resolved_value_never_appears_in_a_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMM_TEST_PROTOCOL", SECRET)
    with pytest.raises(ConfigError) as caught:
        parse(**{"A.security.protocol": "${env:SMM_TEST_PROTOCOL}"})
    assert "A.security.protocol = ${env:SMM_TEST_PROTOCOL}: must be one of" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_an_undeclared_provider_stays_text_with_a_warning() -> None:
    mirror_config = parse(**{"A.producer.client.id": "${vault:secret/x:id}"})
    assert mirror_config.cluster("A").role_settings("producer")["client.id"] == "${vault:secret/x:id}"
    assert any("'vault' is not a declared config provider" in w.message for w in mirror_config.warnings)


def test_allowlist_and_allowed_paths_are_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMM_TEST_ID", "x")
    with pytest.raises(ConfigError, match="no 'SMM_TEST_ID' for provider 'env'"):
        parse(
            **{"config.providers.env.param.allowlist.pattern": "KAFKA_.*", "A.producer.client.id": "${env:SMM_TEST_ID}"}
        )
    (tmp_path / "p.properties").write_text("k = v\n")
    with pytest.raises(ConfigError, match=r"outside allowed\.paths"):
        parse(
            **{
                "config.providers.file.param.allowed.paths": "/etc/kafka",
                "A.producer.client.id": f"${{file:{tmp_path / 'p.properties'}:k}}",
            }
        )


def test_an_unknown_provider_class_lists_the_ones_there_are() -> None:
    with pytest.raises(ConfigError) as caught:
        parse(**{"config.providers": "vault", "config.providers.vault.class": "com.example.VaultConfigProvider"})
    assert "config.providers.vault.class = 'com.example.VaultConfigProvider': not a provider here; allowed:" in str(
        caught.value
    )
