"""Config sync on real brokers: scenarios 8 (new topics and partitions while running), 9 (topic configs),
10 (ACLs, on a broker with an authorizer), MM2's internal topics, and a cold start that redoes nothing."""

from __future__ import annotations

import http.server
import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import boto3
import pytest
from botocore.stub import Stubber
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import (
    ACL,
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    AlterConfigOp,
    ConfigResource,
    ConfigResourceType,
    ResourcePattern,
    ResourcePatternFilter,
    ResourceType,
)

from functions.config_sync import config_sync, handler, rules
from functions.config_sync.state import StateStore
from shared.aws import clients as aws_clients
from shared.aws.esm import EsmMapping, EsmReconciler
from shared.kafka.clients import KafkaClients
from shared.local import emulator
from shared.local.broker import LocalBroker, free_port
from shared.mm2.config import MirrorConfig
from tests.kafka.support import SINGLE_BROKER, fresh_aliases, make_config, read_all

pytestmark = pytest.mark.kafka

T = TypeVar("T")
WRITES = ("create_topics", "create_partitions", "alter_configs", "create_acls", "delete_topics", "delete_acls")


# --- helpers -----------------------------------------------------------------------------------------------


@contextmanager
def admin_for(bootstrap: str) -> Iterator[KafkaAdminClient]:
    admin = KafkaAdminClient(bootstrap_servers=[bootstrap], request_timeout_ms=15000)
    try:
        yield admin
    finally:
        admin.close()


@contextmanager
def smm_run(cfg: MirrorConfig, refresh_seconds: float = 1.0) -> Iterator[None]:
    """``smm run`` in a thread for the duration of the block."""
    stop = threading.Event()
    thread = threading.Thread(
        target=emulator.run,
        kwargs={"config": cfg, "stop": stop, "progress_seconds": 3600, "refresh_seconds": refresh_seconds},
        daemon=True,
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=60)


def wait_for(what: str, check: Callable[[], T], timeout: float = 90.0) -> T:
    """``check()``'s first truthy result; the timeout is a ceiling for a loaded machine, not a measure."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s (last: {result!r})")
        time.sleep(0.25)


def partitions(admin: KafkaAdminClient, topic: str) -> int:
    described = admin.describe_topics([topic])
    return len(described[0]["partitions"]) if described and described[0]["error_code"] == 0 else 0


def configs(admin: KafkaAdminClient, topic: str) -> dict[str, tuple[str, str]]:
    """name -> (value, source) of every config of ``topic``."""
    answer = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all")
    return {k: (str(v["value"]), v["config_source"]) for k, v in answer["topic"][topic].items()}


def topic_set(admin: KafkaAdminClient, topic: str) -> dict[str, str]:
    """The configs set on the topic itself."""
    return {k: v for k, (v, source) in configs(admin, topic).items() if source == "DYNAMIC_TOPIC_CONFIG"}


def alter(admin: KafkaAdminClient, topic: str, changes: dict[str, Any]) -> None:
    resource = ConfigResource(ConfigResourceType.TOPIC, topic, changes)
    assert admin.alter_configs([resource], raise_on_unknown=False, incremental=True) == {"topic": {topic: "OK"}}


def produce(bootstrap: str, topic: str, count: int, partitions: list[int], prefix: str = "v") -> None:
    """``count`` records, round robin over ``partitions``, valued ``<prefix><i>``."""
    producer = KafkaProducer(bootstrap_servers=[bootstrap])
    for i in range(count):
        value = f"{prefix}{i}".encode()
        producer.send(topic, key=f"k{i}".encode(), value=value, partition=partitions[i % len(partitions)])
    producer.flush()
    producer.close()


def end_offset(bootstrap: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=[bootstrap])
    try:
        tp = TopicPartition(topic, 0)
        end: int = consumer.end_offsets([tp])[tp]
        return end
    finally:
        consumer.close()


def spy_writes(
    clients: KafkaClients, aliases: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> list[tuple[str, Any]]:
    """Record every write call the task's admin clients make (the calls still go to the broker)."""
    calls: list[tuple[str, Any]] = []
    for alias in aliases:
        admin = clients.admin(alias)
        for name in WRITES:
            real = getattr(admin, name)

            def recorder(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
                calls.append((_name, args))
                return _real(*args, **kwargs)

            monkeypatch.setattr(admin, name, recorder)
    return calls


class MemoryReconciler(EsmReconciler):
    """The Lambda side of ESMs, which outlives any config-sync container; records each call."""

    def __init__(self) -> None:
        self.store: dict[str, EsmMapping] = {}
        self.calls: list[tuple[str, str]] = []

    def mappings(self) -> dict[str, EsmMapping]:
        return dict(self.store)

    def create(self, topic: str) -> None:
        self.calls.append(("create", topic))
        self.store[topic] = EsmMapping(topic, enabled=True)

    def set_enabled(self, mapping: EsmMapping, enabled: bool) -> None:
        self.calls.append(("enable" if enabled else "disable", mapping.topic))
        self.store[mapping.topic] = EsmMapping(mapping.topic, enabled)

    def delete(self, mapping: EsmMapping) -> None:
        self.calls.append(("delete", mapping.topic))
        del self.store[mapping.topic]


def run_task(cfg: MirrorConfig, source: str, target: str, **kwargs: Any) -> dict[str, Any]:
    clients = KafkaClients(cfg)
    task = config_sync.task_for(cfg.flow(source, target), clients, **kwargs)
    try:
        return task.run_once()
    finally:
        task.close()
        clients.close()


@pytest.fixture(scope="module")
def private_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """This module's own broker, with KRaft's StandardAuthorizer; anonymous clients are super users."""
    broker = LocalBroker(
        "ACL",
        free_port(),
        tmp_path_factory.mktemp("acl"),
        extra_properties={
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": "User:ANONYMOUS",
            "allow.everyone.if.no.acl.found": "true",
        },
    )
    broker.start(timeout=120)
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


# --- scenarios 8 and 9 under smm run -----------------------------------------------------------------------


def test_new_topic_partitions_and_config_changes_reach_the_remote_while_running(
    kafka_clusters: dict[str, str], unique_prefix: str
) -> None:
    # Fresh aliases: the flow's state topic is new to B, so its appearance shows the runtime's config sync runs.
    source, target = fresh_aliases(unique_prefix)
    topic, remote = f"{unique_prefix}.orders", f"{source}.{unique_prefix}.orders"
    cfg = make_config(
        {source: kafka_clusters["A"], target: kafka_clusters["B"]},
        {f"{source}->{target}": f"{unique_prefix}.*"},
        **{
            "sync.topic.configs.interval.seconds": "1",
            "emit.heartbeats.enabled": "false",  # not the subject; and no heartbeats under these aliases on A, B
            "heartbeats.replication.enabled": "false",
        },
    )
    state_topic = rules.state_topic(cfg.flow(source, target)).name
    source_configs = {
        "retention.ms": "3600000",
        "segment.ms": "7200000",
        "cleanup.policy": "compact,delete",
        "min.insync.replicas": "1",  # excluded by config.properties.exclude
    }
    with admin_for(kafka_clusters["A"]) as a, admin_for(kafka_clusters["B"]) as b, smm_run(cfg):
        wait_for("config sync's first pass (its state topic on B)", lambda: partitions(b, state_topic) == 1)
        a.create_topics({topic: {"num_partitions": 3, "replication_factor": 1, "configs": source_configs}})
        produce(kafka_clusters["A"], topic, 30, [0, 1, 2])

        # created while the runtime runs: found by a topic refresh (every second); the wait is only a ceiling
        wait_for(f"{remote} on B", lambda: partitions(b, remote) == 3)
        assert topic_set(b, remote) == {
            "retention.ms": "3600000",
            "segment.ms": "7200000",
            "cleanup.policy": "compact,delete",
        }
        assert len(read_all(kafka_clusters["B"], remote, 30)) == 30

        # partitions added on A appear on B, and records in them are mirrored to the same partition
        a.create_partitions({topic: 5})
        produce(kafka_clusters["A"], topic, 6, [3, 4], prefix="new")
        wait_for(f"{remote} grown to 5 partitions", lambda: partitions(b, remote) == 5)
        mirrored = read_all(kafka_clusters["B"], remote, 36)
        assert {(r.value, r.partition) for r in mirrored if r.partition > 2} == {
            (f"new{i}".encode(), 3 + i % 2) for i in range(6)
        }

        # a later config change arrives; a removed one is reset; an excluded one never arrives
        alter(
            a,
            topic,
            {
                "retention.ms": "7200000",
                "segment.ms": (AlterConfigOp.DELETE, None),
                "unclean.leader.election.enable": "true",
            },
        )
        wait_for("changed configs on B", lambda: topic_set(b, remote).get("retention.ms") == "7200000")
        assert topic_set(b, remote) == {"retention.ms": "7200000", "cleanup.policy": "compact,delete"}

        # a change made by hand on the remote topic is undone (MM2 re-sends the configs every interval)
        alter(b, remote, {"retention.ms": "60000"})
        assert topic_set(b, remote).get("retention.ms") == "60000"
        wait_for("the hand-made change undone", lambda: topic_set(b, remote).get("retention.ms") == "7200000")


def test_internal_topics_have_mm2_names_and_policies(
    kafka_clusters: dict[str, str], private_cluster: str, unique_prefix: str
) -> None:
    # Fresh aliases, so that every name below is new where it is checked: the topics are this run's. The target is
    # this module's broker, where "heartbeats" (whose name no alias changes) is dropped first.
    source, target = fresh_aliases(unique_prefix)
    cfg = make_config(
        {source: kafka_clusters["A"], target: private_cluster}, {f"{source}->{target}": f"{unique_prefix}.*"}
    )
    expected = {
        kafka_clusters["A"]: [f"mm2-offset-syncs.{target}.internal"],
        private_cluster: [f"mm2-config-sync.{source}.internal", f"{source}.checkpoints.internal", "heartbeats"],
    }
    assert_absent(private_cluster, "heartbeats", drop=True)
    for bootstrap, names in expected.items():
        for name in names:
            assert_absent(bootstrap, name)

    run_task(cfg, source, target)

    for bootstrap, names in expected.items():
        with admin_for(bootstrap) as admin:
            for name in names:
                assert_internal(admin, name, bootstrap)


def test_internal_topic_names_follow_the_separator_and_location(private_cluster: str, unique_prefix: str) -> None:
    # On this module's own broker: Kafka refuses "A.x" next to "A_x" (they collide), so a "_" separator
    # must not leave its names on the shared clusters. Fresh aliases: the names are new to the broker.
    source, target = fresh_aliases(unique_prefix)
    cfg = make_config(
        {source: private_cluster, target: private_cluster},
        {f"{source}->{target}": f"{unique_prefix}.*"},
        **{
            "replication.policy.separator": "_",
            "offset-syncs.topic.location": "target",
            "heartbeats.replication.enabled": "false",
        },
    )
    names = [
        f"mm2-config-sync.{source}.internal",
        f"mm2-offset-syncs_{source}_internal",
        f"{source}_checkpoints_internal",
        "heartbeats",
    ]
    assert_absent(private_cluster, "heartbeats", drop=True)
    for name in names:
        assert_absent(private_cluster, name)

    run_task(cfg, source, target)

    with admin_for(private_cluster) as admin:
        for name in names:
            assert_internal(admin, name, target)


def assert_absent(bootstrap: str, name: str, drop: bool = False) -> None:
    """``name`` does not exist on ``bootstrap`` (after deleting it, with ``drop``): a later check sees a new topic."""
    with admin_for(bootstrap) as admin:
        if drop and name in admin.list_topics():
            admin.delete_topics([name])
            wait_for(f"{name} deleted", lambda: name not in admin.list_topics())
        assert name not in admin.list_topics(), f"{name} already exists on {bootstrap}"


def assert_internal(admin: KafkaAdminClient, name: str, alias: str) -> None:
    assert partitions(admin, name) == 1, f"{name} on {alias}"
    assert configs(admin, name)["cleanup.policy"][0] == "compact", f"{name} on {alias}"


# --- cold start --------------------------------------------------------------------------------------------


def test_a_cold_start_redoes_and_undoes_nothing(
    kafka_clusters: dict[str, str], unique_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fresh aliases: the flow's internal topics, its state topic among them, are new to A and B; this test's
    # first run creates them and writes the only records the state topic holds.
    source, target = fresh_aliases(unique_prefix)
    cfg = make_config(
        {source: kafka_clusters["A"], target: kafka_clusters["B"]},
        {f"{source}->{target}": f"{unique_prefix}.*"},
        **{"heartbeats.replication.enabled": "false"},
    )
    flow = cfg.flow(source, target)
    topics = [f"{unique_prefix}.a", f"{unique_prefix}.b"]
    with admin_for(kafka_clusters["A"]) as a:
        a.create_topics(
            {t: {"num_partitions": 2, "replication_factor": 1, "configs": {"retention.ms": "600000"}} for t in topics}
        )
    esms = MemoryReconciler()
    state_topic = rules.state_topic(flow).name
    assert_absent(kafka_clusters["B"], state_topic)

    first = run_task(cfg, source, target, reconciler=esms)
    assert first["created"] == [f"{source}.{t}" for t in topics]
    assert sorted(esms.calls) == [("create", t) for t in topics]
    recorded = end_offset(kafka_clusters["B"], state_topic)
    assert recorded > 0

    # A new container: fresh clients and task, nothing in memory; only the state topic and the brokers know.
    esms.calls.clear()
    clients = KafkaClients(cfg)
    writes = spy_writes(clients, (source, target), monkeypatch)
    task = config_sync.task_for(flow, clients, reconciler=esms)
    try:
        second = task.run_once()
        assert writes == [] and esms.calls == []
        assert second["stateWrites"] == 0 and not second["changed"]
        assert end_offset(kafka_clusters["B"], state_topic) == recorded

        # ... and a change made after the cold start is applied exactly once, and only it
        with admin_for(kafka_clusters["A"]) as a:
            alter(a, topics[0], {"retention.ms": "900000"})
        third = config_sync.task_for(flow, clients, reconciler=esms)
        assert third.run_once()["configsAltered"] == {f"{source}.{topics[0]}": {"retention.ms": "900000"}}
        assert [name for name, _ in writes] == ["alter_configs"]
        third.close()
    finally:
        task.close()
        clients.close()


def test_a_failed_creation_is_reported_retried_and_not_recorded(
    kafka_clusters: dict[str, str], unique_prefix: str
) -> None:
    topic = f"{unique_prefix}.big"
    with admin_for(kafka_clusters["A"]) as a:
        a.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}})
    too_many = make_config(
        kafka_clusters,
        {"A->B": f"{unique_prefix}.*"},
        **{"replication.factor": "3", "heartbeats.replication.enabled": "false"},
    )
    esms = MemoryReconciler()
    with pytest.raises(config_sync.ConfigSyncError, match=rf"A\.{unique_prefix}\.big: replication factor 3"):
        run_task(too_many, "A", "B", reconciler=esms)
    assert esms.calls == [("create", topic)]  # the ESM does not wait: the mirror creates what it needs
    clients = KafkaClients(too_many)
    store = StateStore(clients, rules.state_topic(too_many.flow("A", "B")))
    try:
        assert topic not in store.load()
    finally:
        store.close()
        clients.close()

    fixed = make_config(kafka_clusters, {"A->B": f"{unique_prefix}.*"}, **{"heartbeats.replication.enabled": "false"})
    assert run_task(fixed, "A", "B", reconciler=esms)["created"] == [f"A.{topic}"]


def test_local_esms_follow_the_topics(kafka_clusters: dict[str, str], unique_prefix: str) -> None:
    """The emulator's reconciler: a poller per mirrored topic, stopped (and forgotten) when its topic is deleted."""
    topics = [f"{unique_prefix}.keep", f"{unique_prefix}.drop"]
    with admin_for(kafka_clusters["A"]) as a:
        a.create_topics({t: {"num_partitions": 1, "replication_factor": 1} for t in topics})
    cfg = make_config(kafka_clusters, {"A->B": f"{unique_prefix}.*"}, **{"heartbeats.replication.enabled": "false"})
    flow = cfg.flow("A", "B")
    runner = emulator.FlowRunner(flow, cfg, io.StringIO())
    clients = KafkaClients(cfg)
    task = config_sync.task_for(flow, clients, reconciler=runner, refresh_seconds=0)  # discover on every run
    try:
        assert task.run_once()["esm"] == {"created": sorted(topics)}
        assert sorted(runner.pollers) == sorted(topics)
        with admin_for(kafka_clusters["A"]) as a:
            a.delete_topics([topics[1]])
            wait_for("the deleted topic gone from A", lambda: topics[1] not in a.list_topics())
        assert task.run_once()["esm"] == {"deleted": [topics[1]]}
        assert list(runner.pollers) == [topics[0]]
        assert topics[1] not in task.state.current() and topics[0] in task.state.current()
    finally:
        task.close()
        clients.close()
        runner.stop()


# --- the Lambda handler: ESMs through the Lambda API, topics on real Kafka -----------------------------------


class CloudFormation:
    """Where the function answers a custom-resource request: a local HTTP server standing in for the pre-signed
    S3 URL, keeping every answer it received."""

    def __init__(self) -> None:
        answers: list[dict[str, Any]] = []

        class Answer(http.server.BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                answers.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.answers = answers
        self.server = http.server.HTTPServer(("127.0.0.1", 0), Answer)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def request(self, kind: str, properties: dict[str, Any], old: dict[str, Any] | None = None) -> dict[str, Any]:
        event = {
            "RequestType": kind,
            "ResponseURL": f"http://127.0.0.1:{self.server.server_port}/answer",
            "StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/smm-test/1",
            "RequestId": f"request-{len(self.answers)}",
            "LogicalResourceId": "ConfigSyncOnDeploy",
            "ResourceType": "Custom::SmmConfigSync",
            "ResourceProperties": {"ServiceToken": "arn:aws:lambda:eu-west-1:123456789012:function:cs", **properties},
        }
        if old is not None:
            event["OldResourceProperties"] = old
        return event

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Context(emulator.LambdaContext):
    def __init__(self, seconds_left: float) -> None:
        super().__init__(function_name="smm-config-sync")
        self.deadline = time.monotonic() + seconds_left

    def get_remaining_time_in_millis(self) -> int:
        return int((self.deadline - time.monotonic()) * 1000)


def _deployment_env(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    clusters: dict[str, str],
    lines: list[str],
    template: dict[str, Any],
) -> Any:
    properties = tmp_path / "mm2.properties"
    lines = [f"{alias}.bootstrap.servers = {servers}" for alias, servers in clusters.items()] + lines
    lines += [f"{key} = {value}" for key, value in SINGLE_BROKER.items()]
    lines += [f"clusters = {', '.join(clusters)}", "heartbeats.replication.enabled = false", "A->B.enabled = true"]
    properties.write_text("\n".join(lines) + "\n", encoding="utf-8")
    monkeypatch.setenv("SMM_CONFIG_FILE", str(properties))
    monkeypatch.setenv("SMM_EVENT_SOURCES", json.dumps({"A->B": template}))
    monkeypatch.delenv("SMM_FLOW", raising=False)
    client = boto3.client("lambda", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    monkeypatch.setattr(aws_clients, "lambda_client", lambda: client)
    return client


def test_cdk_deploy_creates_every_mapping_tagged_and_cdk_destroy_removes_them(
    kafka_clusters: dict[str, str], unique_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stack declares no mapping: its custom resource runs config sync once at deploy (remote topics, the
    failure topic on the source, one tagged mapping per topic) and deletes the deployment's mappings at destroy."""
    topic, failures = f"{unique_prefix}.payments", f"{unique_prefix}-esm-failures"
    with admin_for(kafka_clusters["A"]) as a:
        a.create_topics({topic: {"num_partitions": 2, "replication_factor": 1}})
    access = [{"Type": "BASIC_AUTH", "URI": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:kafka"}]
    template = {
        "FunctionName": "smm-mirror-A-B",
        "SourceAccessConfigurations": access,
        "ProvisionedPollerConfig": {"MinimumPollers": 1, "MaximumPollers": 2},
        "DestinationConfig": {"OnFailure": {"Destination": f"kafka://{failures}"}},
        "MaximumRetryAttempts": 10,
        "Tags": {"smm:deployment": "smm-test"},
    }
    client = _deployment_env(
        monkeypatch, tmp_path, kafka_clusters, [f"A->B.topics = {unique_prefix}\\.payments"], template
    )
    properties = {"Deployment": "smm-test", "MirrorFunctions": ["smm-mirror-A-B"], "ConfigDigest": "1"}
    cloudformation = CloudFormation()
    uuid = "0f8fad5b-d9cb-469f-a165-70867728950e"
    arn = f"arn:aws:lambda:eu-west-1:123456789012:event-source-mapping:{uuid}"
    try:
        with Stubber(client) as stub:
            stub.add_response(
                "list_event_source_mappings", {"EventSourceMappings": []}, {"FunctionName": "smm-mirror-A-B"}
            )
            stub.add_response(
                "create_event_source_mapping",
                {"UUID": uuid, "State": "Creating"},
                {
                    **{k: v for k, v in template.items() if k != "Tags"},
                    "Topics": [topic],
                    "StartingPosition": "TRIM_HORIZON",
                    "BatchSize": 100,
                    "MaximumBatchingWindowInSeconds": 0,  # smm.batching.window.ms = 100, in whole seconds
                    "Enabled": True,
                    "SelfManagedEventSource": {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": [kafka_clusters["A"]]}},
                    "SelfManagedKafkaEventSourceConfig": {"ConsumerGroupId": f"smm:A:B:{topic}"},
                    "Tags": {"smm:deployment": "smm-test", "smm:flow": "A->B"},
                },
            )
            result = handler.lambda_handler(cloudformation.request("Create", properties), Context(300))
            stub.assert_no_pending_responses()
        assert result["Status"] == "SUCCESS"
        (answer,) = cloudformation.answers
        assert answer["Status"] == "SUCCESS" and answer["PhysicalResourceId"] == "smm-test-config-sync"
        assert "1 event-source mapping(s) created" in answer["Reason"]
        with admin_for(kafka_clusters["B"]) as b:
            assert partitions(b, f"A.{topic}") == 2
        with admin_for(kafka_clusters["A"]) as a:
            assert partitions(a, failures) == 1  # Lambda requires the failure topic to exist: the deployment makes it

        with Stubber(client) as stub:
            mapping = {"UUID": uuid, "EventSourceMappingArn": arn, "Topics": [topic], "State": "Enabled"}
            stub.add_response(
                "list_event_source_mappings", {"EventSourceMappings": [mapping]}, {"FunctionName": "smm-mirror-A-B"}
            )
            stub.add_response(
                "list_tags", {"Tags": {"smm:deployment": "smm-test", "smm:flow": "A->B"}}, {"Resource": arn}
            )
            stub.add_response("delete_event_source_mapping", {"UUID": uuid, "State": "Deleting"}, {"UUID": uuid})
            handler.lambda_handler(cloudformation.request("Delete", properties), Context(300))
            stub.assert_no_pending_responses()
        assert cloudformation.answers[1]["Status"] == "SUCCESS"
        assert cloudformation.answers[1]["Reason"] == "deleted 1 event-source mapping(s) of deployment smm-test"
    finally:
        cloudformation.close()
        handler._cache.close()


def test_a_cluster_unreachable_at_deploy_does_not_fail_the_deployment(
    kafka_clusters: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clusters = {"A": f"127.0.0.1:{free_port()}", "B": kafka_clusters["B"]}  # nothing listens on A's port
    lines = ["A->B.topics = orders", "A.request.timeout.ms = 3000", "A.default.api.timeout.ms = 3000"]
    _deployment_env(monkeypatch, tmp_path, clusters, lines, {"FunctionName": "smm-mirror-A-B"})
    cloudformation = CloudFormation()
    started = time.monotonic()
    try:
        # 60 s left: 30 s kept for the answer, so config sync is retried for about 30 s, then the deploy goes on
        handler.lambda_handler(cloudformation.request("Create", {"Deployment": "smm-test"}), Context(60))
    finally:
        cloudformation.close()
        handler._cache.close()
    (answer,) = cloudformation.answers
    assert answer["Status"] == "SUCCESS", answer
    assert "not finished, retried by the schedule: A->B:" in answer["Reason"]
    assert time.monotonic() - started < 60 + 45  # one attempt may outlast the budget by its own timeouts


def test_an_invalid_configuration_at_deploy_rolls_the_deployment_back(
    kafka_clusters: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _deployment_env(monkeypatch, tmp_path, kafka_clusters, ["A->B.topics = (unclosed"], {"FunctionName": "f"})
    cloudformation = CloudFormation()
    try:
        handler.lambda_handler(cloudformation.request("Update", {"Deployment": "smm-test"}, {}), Context(300))
    finally:
        cloudformation.close()
        handler._cache.close()
    (answer,) = cloudformation.answers
    assert answer["Status"] == "FAILED" and "A->B.topics" in answer["Reason"], answer


# --- scenario 10: ACL sync, on a broker with an authorizer ----------------------------------------------------


def _acl(topic: str, principal: str, operation: ACLOperation, permission: ACLPermissionType, **kw: Any) -> ACL:
    pattern = ResourcePattern(ResourceType.TOPIC, topic, kw.get("pattern", ACLResourcePatternType.LITERAL))
    return ACL(principal, kw.get("host", "*"), operation, permission, pattern)


def _acls_on(admin: KafkaAdminClient, topic: str) -> set[tuple[str, str, str, str]]:
    pattern = ResourcePatternFilter(ResourceType.TOPIC, topic, ACLResourcePatternType.LITERAL)
    acls, _ = admin.describe_acls(ACLFilter(None, None, ACLOperation.ANY, ACLPermissionType.ANY, pattern))
    return {(a.principal, a.host, a.operation.name, a.permission_type.name) for a in acls}


def test_topic_acls_are_copied_read_only(
    private_cluster: str, unique_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two aliases for the one broker: X.<topic> is the remote copy of <topic>.
    no_loop = {"heartbeats.replication.enabled": "false"}  # X.heartbeats would be a source topic again
    cfg = make_config({"X": private_cluster, "Y": private_cluster}, {"X->Y": f"{unique_prefix}.*"}, **no_loop)
    topic, remote = f"{unique_prefix}.secret", f"X.{unique_prefix}.secret"
    allow, deny = ACLPermissionType.ALLOW, ACLPermissionType.DENY
    with admin_for(private_cluster) as admin:
        admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}})
        result = admin.create_acls(
            [
                _acl(topic, "User:alice", ACLOperation.ALL, allow),
                _acl(topic, "User:bob", ACLOperation.WRITE, allow),
                _acl(topic, "User:carol", ACLOperation.READ, allow, host="10.0.0.1"),
                _acl(topic, "User:dave", ACLOperation.WRITE, deny),
                _acl(topic, "User:erin", ACLOperation.DESCRIBE, allow),
                _acl(unique_prefix, "User:frank", ACLOperation.READ, allow, pattern=ACLResourcePatternType.PREFIXED),
            ]
        )
        assert not result["failed"]

        assert run_task(cfg, "X", "Y")["aclsCreated"] == 4
        copied = _acls_on(admin, remote)
        assert copied == {
            ("User:alice", "*", "READ", "ALLOW"),
            ("User:carol", "10.0.0.1", "READ", "ALLOW"),
            ("User:dave", "*", "WRITE", "DENY"),
            ("User:erin", "*", "DESCRIBE", "ALLOW"),
        }
        assert not {acl for acl in copied if acl[3] == "ALLOW" and acl[2] in ("WRITE", "ALL")}

        # nothing new: no ACL call at all; a new source ACL: copied on the next run; one deleted on the target by
        # hand: re-created (MM2 re-sends them every interval). A new task each time: its ACL job is due at once.
        clients = KafkaClients(cfg)
        writes = spy_writes(clients, ("X", "Y"), monkeypatch)

        def next_run() -> dict[str, Any]:
            task = config_sync.task_for(cfg.flow("X", "Y"), clients)
            try:
                return task.run_once()
            finally:
                task.close()

        try:
            assert "aclsCreated" not in next_run() and writes == []
            admin.create_acls([_acl(topic, "User:gina", ACLOperation.READ, allow)])
            assert next_run()["aclsCreated"] == 1
            assert ("User:gina", "*", "READ", "ALLOW") in _acls_on(admin, remote)
            pattern = ResourcePatternFilter(ResourceType.TOPIC, remote, ACLResourcePatternType.LITERAL)
            admin.delete_acls([ACLFilter("User:alice", None, ACLOperation.ANY, ACLPermissionType.ANY, pattern)])
            assert ("User:alice", "*", "READ", "ALLOW") not in _acls_on(admin, remote)
            assert next_run()["aclsCreated"] == 1
        finally:
            clients.close()
        assert _acls_on(admin, remote) == copied | {("User:gina", "*", "READ", "ALLOW")}
