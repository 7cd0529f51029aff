"""Replication policies: MM2's DefaultReplicationPolicy / IdentityReplicationPolicy naming and cycle rule."""

from __future__ import annotations

import pytest

from shared.mm2.policy import (
    HEARTBEATS_TOPIC,
    POLICY_CLASSES,
    DefaultReplicationPolicy,
    IdentityReplicationPolicy,
)

DEFAULT = DefaultReplicationPolicy()
UNDERSCORE = DefaultReplicationPolicy("_")
IDENTITY = IdentityReplicationPolicy()

# --- DefaultReplicationPolicy -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "source", "topic", "remote"),
    [
        (DEFAULT, "A", "t", "A.t"),
        (DEFAULT, "A", "B.t", "A.B.t"),
        (DEFAULT, "us-west", "orders", "us-west.orders"),
        (DEFAULT, "A", "heartbeats", "A.heartbeats"),
        (UNDERSCORE, "A", "t", "A_t"),
        (UNDERSCORE, "A", "heartbeats", "A_heartbeats"),
        (UNDERSCORE, "A", "B_heartbeats", "A_B_heartbeats"),
        (DefaultReplicationPolicy("--"), "A", "t", "A--t"),
    ],
)
def test_format_remote_topic(policy: DefaultReplicationPolicy, source: str, topic: str, remote: str) -> None:
    assert policy.format_remote_topic(source, topic) == remote


@pytest.mark.parametrize(
    ("policy", "topic", "source", "upstream", "original"),
    [
        (DEFAULT, "t", None, None, "t"),
        (DEFAULT, "A.t", "A", "t", "t"),
        (DEFAULT, "B.A.t", "B", "A.t", "t"),
        (DEFAULT, "C.B.A.t", "C", "B.A.t", "t"),
        (DEFAULT, "heartbeats", None, None, "heartbeats"),
        (DEFAULT, "B.A.heartbeats", "B", "A.heartbeats", "heartbeats"),
        (DEFAULT, "A_t", None, None, "A_t"),
        (UNDERSCORE, "A_t", "A", "t", "t"),
        (UNDERSCORE, "B_A_t", "B", "A_t", "t"),
        (UNDERSCORE, "A.t", None, None, "A.t"),
        (DefaultReplicationPolicy("--"), "B--A--t", "B", "A--t", "t"),
    ],
)
def test_topic_source_upstream_original(
    policy: DefaultReplicationPolicy, topic: str, source: str | None, upstream: str | None, original: str
) -> None:
    assert policy.topic_source(topic) == source
    assert policy.upstream_topic(topic) == upstream
    assert policy.original_topic(topic) == original


@pytest.mark.parametrize("policy", [DEFAULT, UNDERSCORE, DefaultReplicationPolicy("--")])
@pytest.mark.parametrize("topic", ["t", "orders", "heartbeats", "my-topic"])
def test_round_trip_through_the_policy(policy: DefaultReplicationPolicy, topic: str) -> None:
    remote = policy.format_remote_topic("A", topic)
    assert policy.topic_source(remote) == "A"
    assert policy.upstream_topic(remote) == topic
    twice = policy.format_remote_topic("B", remote)
    assert policy.source_chain(twice) == ["B", "A"]
    assert policy.original_topic(twice) == topic


def test_source_chain_nearest_first() -> None:
    assert DEFAULT.source_chain("C.B.A.t") == ["C", "B", "A"]
    assert DEFAULT.source_chain("t") == []
    assert IDENTITY.source_chain("t") == []


@pytest.mark.parametrize(
    ("policy", "alias", "offset_syncs", "checkpoints"),
    [
        (DEFAULT, "B", "mm2-offset-syncs.B.internal", "B.checkpoints.internal"),
        (DEFAULT, "A", "mm2-offset-syncs.A.internal", "A.checkpoints.internal"),
        (UNDERSCORE, "B", "mm2-offset-syncs_B_internal", "B_checkpoints_internal"),
        (UNDERSCORE, "A", "mm2-offset-syncs_A_internal", "A_checkpoints_internal"),
        (DefaultReplicationPolicy("_", False), "B", "mm2-offset-syncs.B.internal", "B.checkpoints.internal"),
        (IDENTITY, "B", "mm2-offset-syncs.B.internal", "B.checkpoints.internal"),
    ],
)
def test_internal_topic_names(
    policy: DefaultReplicationPolicy, alias: str, offset_syncs: str, checkpoints: str
) -> None:
    assert policy.offset_syncs_topic(alias) == offset_syncs
    assert policy.checkpoints_topic(alias) == checkpoints
    assert policy.is_offset_syncs_topic(offset_syncs)
    assert policy.is_checkpoints_topic(checkpoints)
    assert policy.is_mm2_internal_topic(offset_syncs)
    assert policy.is_mm2_internal_topic(checkpoints)
    assert policy.is_internal_topic(offset_syncs)
    assert policy.is_internal_topic(checkpoints)
    assert not policy.is_checkpoints_topic(offset_syncs)
    assert not policy.is_offset_syncs_topic(checkpoints)


@pytest.mark.parametrize("policy", [DEFAULT, UNDERSCORE, DefaultReplicationPolicy("_", False), IDENTITY])
def test_heartbeats_topic_never_changes(policy: DefaultReplicationPolicy) -> None:
    assert policy.heartbeats_topic() == "heartbeats" == HEARTBEATS_TOPIC


def test_remote_heartbeats_follow_the_separator() -> None:
    assert UNDERSCORE.format_remote_topic("A", UNDERSCORE.heartbeats_topic()) == "A_heartbeats"
    assert DEFAULT.format_remote_topic("A", DEFAULT.heartbeats_topic()) == "A.heartbeats"


def test_empty_separator_is_rejected() -> None:
    with pytest.raises(ValueError, match="separator"):
        DefaultReplicationPolicy("")


@pytest.mark.parametrize(
    ("topic", "internal"),
    [
        ("mm2-configs.B.internal", True),
        ("connect-offsets-internal", False),
        ("my.internal", False),  # MM2 4.x: only its own (mm2*.internal, checkpoints) and Kafka's hidden topics
        ("my-internal", False),
        ("__consumer_offsets", True),
        ("__transaction_state", True),
        (".hidden", True),
        ("mm2-offset-syncs.B.internal", True),
        ("A.checkpoints.internal", True),
        ("orders", False),
        ("internal", False),
        ("internal.orders", False),
        ("my_internal", False),
        ("_single_underscore", False),
        ("heartbeats", False),
        ("A.heartbeats", False),
        ("x.replica", False),
    ],
)
def test_is_internal_topic(topic: str, internal: bool) -> None:
    assert DEFAULT.is_internal_topic(topic) is internal
    assert IDENTITY.is_internal_topic(topic) is internal


@pytest.mark.parametrize("topic", ["mm2-offset-syncs_B_internal", "A_checkpoints_internal"])
def test_is_internal_topic_with_custom_separator(topic: str) -> None:
    assert UNDERSCORE.is_internal_topic(topic)
    assert UNDERSCORE.is_mm2_internal_topic(topic)
    # With '.' as separator these are not MM2's internal names.
    assert not DEFAULT.is_mm2_internal_topic(topic)


@pytest.mark.parametrize(
    ("policy", "topic", "expected"),
    [
        (DEFAULT, "heartbeats", True),
        (DEFAULT, "A.heartbeats", True),
        (DEFAULT, "B.A.heartbeats", True),
        (DEFAULT, "heartbeats2", False),
        (DEFAULT, "myheartbeats", False),
        (DEFAULT, "heartbeats.A", False),
        (DEFAULT, "A_heartbeats", False),
        (UNDERSCORE, "A_heartbeats", True),
        (UNDERSCORE, "B_A_heartbeats", True),
        (IDENTITY, "heartbeats", True),
        (IDENTITY, "A.heartbeats", True),
        (IDENTITY, "B.A.heartbeats", True),
        (IDENTITY, "orders", False),
    ],
)
def test_is_heartbeats_topic(policy: DefaultReplicationPolicy, topic: str, expected: bool) -> None:
    assert policy.is_heartbeats_topic(topic) is expected


@pytest.mark.parametrize(
    ("topic", "target", "cycle"),
    [
        ("B.t", "B", True),
        ("A.t", "B", False),
        ("A.B.t", "B", True),
        ("C.A.B.t", "B", True),
        ("C.A.t", "B", False),
        ("t", "B", False),
        ("B.heartbeats", "B", True),
        ("A.heartbeats", "A", True),
        ("A.heartbeats", "B", False),
        ("heartbeats", "B", False),
        ("BB.t", "B", False),
        ("t.B", "B", False),
    ],
)
def test_cycle_rule(topic: str, target: str, cycle: bool) -> None:
    assert DEFAULT.is_cycle(topic, target) is cycle


def test_cycle_rule_with_custom_separator() -> None:
    assert UNDERSCORE.is_cycle("B_t", "B")
    assert UNDERSCORE.is_cycle("A_B_t", "B")
    assert not UNDERSCORE.is_cycle("A_t", "B")
    assert not UNDERSCORE.is_cycle("B.t", "B")


# --- IdentityReplicationPolicy ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "topic", "remote"),
    [
        ("A", "t", "t"),
        ("A", "orders", "orders"),
        ("A", "B.t", "B.t"),
        ("A", "heartbeats", "A.heartbeats"),
        ("A", "B.heartbeats", "A.B.heartbeats"),
    ],
)
def test_identity_format_remote_topic(source: str, topic: str, remote: str) -> None:
    assert IDENTITY.format_remote_topic(source, topic) == remote


def test_identity_heartbeats_use_the_separator() -> None:
    identity_underscore = IdentityReplicationPolicy("_")
    assert identity_underscore.format_remote_topic("A", "heartbeats") == "A_heartbeats"
    assert identity_underscore.format_remote_topic("A", "t") == "t"
    assert identity_underscore.topic_source("A_heartbeats") == "A"


@pytest.mark.parametrize(
    ("topic", "source", "original"),
    [
        ("t", None, "t"),
        ("A.t", None, "A.t"),
        ("B.A.t", None, "B.A.t"),
        ("heartbeats", None, "heartbeats"),
        ("A.heartbeats", "A", "heartbeats"),
        ("B.A.heartbeats", "B", "heartbeats"),
    ],
)
def test_identity_topic_source_only_for_heartbeats(topic: str, source: str | None, original: str) -> None:
    assert IDENTITY.topic_source(topic) == source
    assert IDENTITY.original_topic(topic) == original


@pytest.mark.parametrize("topic", ["t", "A.t", "B.t", "A.B.t", "B.A.t"])
@pytest.mark.parametrize("target", ["A", "B"])
def test_identity_has_no_cycle_detection_by_name(topic: str, target: str) -> None:
    assert IDENTITY.is_cycle(topic, target) is False
    assert IDENTITY.source_chain(topic) == []


def test_identity_heartbeats_still_detect_cycles() -> None:
    assert IDENTITY.is_cycle("B.heartbeats", "B")
    assert IDENTITY.is_cycle("A.B.heartbeats", "B")
    assert not IDENTITY.is_cycle("A.heartbeats", "B")


# --- the class table used by the config -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("org.apache.kafka.connect.mirror.DefaultReplicationPolicy", DefaultReplicationPolicy),
        ("org.apache.kafka.connect.mirror.IdentityReplicationPolicy", IdentityReplicationPolicy),
    ],
)
def test_policy_classes(name: str, cls: type) -> None:
    assert POLICY_CLASSES[name] is cls
