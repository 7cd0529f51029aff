"""Configuration changes and failures are safe, on real brokers (issue 11, item 4).

- ``smm run`` started while its source cluster is down begins mirroring soon after the cluster is back: config sync
  retries with a short backoff, not one ``refresh.topics.interval.seconds`` (600 s here) later.
- The deployed mirror handler keeps mirroring through a bad edit of its configuration and publishes
  ``ConfigRejected``; the fixed text is used from the next invocation.
- A cluster that refuses the login makes the next invocation read the secret again (moto Secrets Manager), so a
  rotated password is picked up by the retry, long before the secrets' cache would expire.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from kafka import KafkaProducer
from moto import mock_aws

from functions.mirror import handler as mirror_handler
from shared.aws import config_source, secrets
from shared.aws.esm_event import SourceRecord, build_event
from shared.kafka.clients import ClusterAuthenticationError, KafkaClients
from shared.local import broker
from shared.local.broker import LocalBroker, free_port
from shared.local.emulator import LambdaContext
from tests.aws.test_secrets import reset_parameters
from tests.kafka.faults import properties, write_properties
from tests.kafka.support import end_offsets, fresh_aliases, make_config, running, wait_until

pytestmark = pytest.mark.kafka

INTERVAL = "600"  # every config-sync job's interval: a retry at the interval would take ten minutes
RECORDS = 20


# --- smm run with a source cluster that is down as it starts ----------------------------------------------


@pytest.fixture
def source_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """A source cluster of this test's own, to stop and start (the session clusters are never stopped)."""
    own = LocalBroker("down", free_port(), tmp_path / "brokers")
    try:
        own.start(timeout=120)
        yield own
    finally:
        own.stop()


def test_smm_run_mirrors_soon_after_a_source_that_was_down_at_start_is_back(
    source_broker: LocalBroker,
    kafka_clusters: dict[str, str],
    unique_prefix: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source, target = fresh_aliases(unique_prefix)
    topic = f"{unique_prefix}.orders"
    cfg = make_config(
        {source: source_broker.bootstrap, target: kafka_clusters["B"]},
        {f"{source}->{target}": f"{unique_prefix}\\..*"},
        **{
            "refresh.topics.interval.seconds": INTERVAL,
            "sync.topic.configs.interval.seconds": INTERVAL,
            "sync.topic.acls.interval.seconds": INTERVAL,
        },
    )
    clients = KafkaClients(cfg)
    try:
        clients.ensure_topic(source, topic, 1, 1)
        producer = KafkaProducer(bootstrap_servers=source_broker.bootstrap)
        for i in range(RECORDS):
            producer.send(topic, key=b"k%d" % i, value=b"v%d" % i)
        producer.flush()
        producer.close()
    finally:
        clients.close()
    source_broker.stop()

    errors: list[str] = []

    def printed_failure() -> str | None:
        errors.extend(capsys.readouterr().err.splitlines())
        return next((line for line in errors if "config-sync: failed, will retry in" in line), None)

    remote = f"{source}.{topic}"
    with running(cfg, refresh_seconds=float(INTERVAL)) as live:
        failure = wait_until("config sync failing while the source is down", printed_failure, timeout=90)
        assert failure is not None
        assert failure.startswith(f"{source}->{target} config-sync: failed, will retry in 1s: ")
        assert "unreachable" in failure
        source_broker.start(timeout=120)
        # Retried within seconds of the source's return; at the interval it would take up to ten minutes.
        wait_until(
            "the records mirrored after the source came back",
            lambda: live.alive() and sum(end_offsets(kafka_clusters["B"], remote).values()) >= RECORDS,
            timeout=180,
        )


# --- the deployed mirror handler through a bad edit --------------------------------------------------------


def _records(topic: str, first: int, count: int) -> list[SourceRecord]:
    now = int(time.time() * 1000)
    return [SourceRecord(topic, 0, o, now, "CREATE_TIME", b"k", b"v%d" % o, []) for o in range(first, first + count)]


def _rejections(out: str) -> list[dict[str, Any]]:
    documents = [json.loads(line) for line in out.splitlines() if '"_aws"' in line]
    return [d for d in documents if "ConfigRejected" in d]


def test_the_mirror_handler_keeps_mirroring_through_a_bad_edit(
    kafka_clusters: dict[str, str],
    unique_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    topic = f"{unique_prefix}.edited"
    path = tmp_path / "mm2.properties"
    props = properties({"A": kafka_clusters["A"], "B": kafka_clusters["B"]}, {"A->B": f"{unique_prefix}\\..*"})
    write_properties(path, props)
    monkeypatch.setenv(config_source.CONFIG_FILE_ENV, str(path))
    monkeypatch.setenv(config_source.FLOW_ENV, "A->B")
    monkeypatch.delenv(secrets.CLUSTER_SECRETS_ENV, raising=False)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    clients = KafkaClients(make_config(kafka_clusters, {}))
    clients.ensure_topic("A", topic, 1, 1)

    def invoke(first: int) -> dict[str, Any]:
        event = build_event(_records(topic, first, 3), [kafka_clusters["A"]])
        result: dict[str, Any] = mirror_handler.lambda_handler(event, LambdaContext("smm-mirror-A-B"))
        return result

    mirror_handler._container.close()
    try:
        assert invoke(0)["mirrored"] == 3
        good = mirror_handler._container.mirror()
        capsys.readouterr()

        path.write_text(path.read_text().replace(kafka_clusters["A"], "127.0.0.1"))  # a port lost in an edit
        assert invoke(3)["mirrored"] == 3  # the last good configuration mirrors on
        assert invoke(6)["mirrored"] == 3
        published = _rejections(capsys.readouterr().out)
        assert [(d["ConfigRejected"], d["service"]) for d in published] == [([1.0], "smm-mirror")] * 2

        write_properties(path, {**props, "A->B.topics": f"{unique_prefix}\\.edited"})
        assert invoke(9)["mirrored"] == 3
        fixed = mirror_handler._container.mirror()
        assert fixed is not good and fixed.flow.settings.topics == (f"{unique_prefix}\\.edited",)
        assert _rejections(capsys.readouterr().out) == []
    finally:
        mirror_handler._container.close()
        clients.close()
    assert sum(end_offsets(kafka_clusters["B"], f"A.{topic}").values()) == 12


# --- a rotated password, picked up after the cluster refused the old one ----------------------------------

ROTATED = "rotated-Scram-Pa55-3f9d"
SCRAM = "org.apache.kafka.common.security.scram.ScramLoginModule"


@pytest.fixture(scope="module")
def scram_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A SASL_PLAINTEXT SCRAM-SHA-512 cluster whose user ``mirror`` has the rotated password already."""
    state_dir = tmp_path_factory.mktemp("scram")
    cfg = make_config(
        {"S": f"127.0.0.1:{free_port()}"},
        {},
        **{
            "S.security.protocol": "SASL_PLAINTEXT",
            "S.sasl.mechanism": "SCRAM-SHA-512",
            "S.sasl.jaas.config": f'{SCRAM} required username="mirror" password="{ROTATED}";',
        },
    )
    try:
        broker.up(cfg, state_dir)
        yield cfg.cluster("S").bootstrap_servers[0]
    finally:
        broker.down(cfg, state_dir)


def test_a_refused_login_makes_the_retry_read_the_rotated_password(
    kafka_clusters: dict[str, str],
    scram_cluster: str,
    unique_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    topic = f"{unique_prefix}.rotated"
    path = tmp_path / "mm2.properties"
    props = properties({"A": kafka_clusters["A"], "S": scram_cluster}, {"A->S": f"{unique_prefix}\\..*"})
    props.update({"S.security.protocol": "SASL_PLAINTEXT", "S.sasl.mechanism": "SCRAM-SHA-512"})
    write_properties(path, props)  # no credentials in the text: they come from the secret
    for name, value in {
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        config_source.CONFIG_FILE_ENV: str(path),
        config_source.FLOW_ENV: "A->S",
        secrets.SECRETS_DIR_ENV: str(tmp_path / "secrets"),
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv(secrets.SECRETS_MAX_AGE_ENV, raising=False)  # 300 s: far longer than this test
    clients = KafkaClients(make_config(kafka_clusters, {}))
    clients.ensure_topic("A", topic, 1, 1)
    event = build_event(_records(topic, 0, 5), [kafka_clusters["A"]])
    with mock_aws():
        reset_parameters()
        manager = boto3.client("secretsmanager")
        arn = manager.create_secret(
            Name="AmazonMSK_S", SecretString=json.dumps({"username": "mirror", "password": "before-rotation"})
        )["ARN"]
        monkeypatch.setenv(secrets.CLUSTER_SECRETS_ENV, json.dumps({"S": arn}))
        mirror_handler._container.close()
        try:
            with pytest.raises(ClusterAuthenticationError, match="cannot log in to cluster 'S'"):
                mirror_handler.lambda_handler(event, LambdaContext("smm-mirror-A-S"))
            manager.put_secret_value(SecretId=arn, SecretString=json.dumps({"username": "mirror", "password": ROTATED}))
            retried = mirror_handler.lambda_handler(event, LambdaContext("smm-mirror-A-S"))
        finally:
            mirror_handler._container.close()
            clients.close()
            reset_parameters()
    assert retried["mirrored"] == 5
