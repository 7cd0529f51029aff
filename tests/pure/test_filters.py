"""Topic and group filters: MM2's DefaultTopicFilter / DefaultGroupFilter and shouldReplicateTopic."""

from __future__ import annotations

import pytest

from shared.mm2.filters import (
    DEFAULT_GROUPS,
    DEFAULT_GROUPS_EXCLUDE,
    DEFAULT_TOPICS,
    DEFAULT_TOPICS_EXCLUDE,
    NameFilter,
    TopicSelector,
)
from shared.mm2.policy import DefaultReplicationPolicy, IdentityReplicationPolicy

DEFAULT_TOPIC_FILTER = NameFilter.of(DEFAULT_TOPICS, DEFAULT_TOPICS_EXCLUDE)
DEFAULT_GROUP_FILTER = NameFilter.of(DEFAULT_GROUPS, DEFAULT_GROUPS_EXCLUDE)


def test_defaults_are_mm2s() -> None:
    assert DEFAULT_TOPICS == (".*",)
    assert DEFAULT_TOPICS_EXCLUDE == (r"mm2.*\.internal", r".*\.replica", r"__.*")
    assert DEFAULT_GROUPS == (".*",)
    assert DEFAULT_GROUPS_EXCLUDE == (r"console-consumer-.*", r"connect-.*", r"__.*")


@pytest.mark.parametrize(
    ("include", "exclude", "name", "expected"),
    [
        (["orders"], [], "orders", True),
        (["orders"], [], "orders2", False),
        (["orders"], [], "my-orders", False),
        (["orders"], [], "ORDERS", False),
        (["ord.*"], [], "orders2", True),
        (["orders", "payments"], [], "payments", True),
        (["orders", "payments"], [], "refunds", False),
        (["orders|payments"], [], "payments", True),
        (["orders|payments"], [], "orderspayments", False),
        ([".*"], ["orders"], "orders", False),
        ([".*"], ["orders"], "orders2", True),
        ([".*"], ["test-.*"], "test-1", False),
        ([".*"], ["test-.*"], "my-test-1", True),
        (["a.c"], [], "abc", True),
        ([r"a\.c"], [], "abc", False),
        ([r"a\.c"], [], "a.c", True),
        ([], [], "anything", False),
        ([".*"], [".*"], "anything", False),
    ],
)
def test_name_filter_full_match(include: list[str], exclude: list[str], name: str, expected: bool) -> None:
    assert NameFilter.of(include, exclude).matches(name) is expected


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("mm2-offset-syncs.B.internal", False),
        ("mm2-configs.B.internal", False),
        ("mm2-status.A.internal", False),
        ("x.replica", False),
        ("A.orders.replica", False),
        ("__consumer_offsets", False),
        ("__transaction_state", False),
        ("orders", True),
        ("A.orders", True),
        ("heartbeats", True),
        ("x.replica2", True),
        ("mm2-something", True),
        ("_single", True),
    ],
)
def test_default_topic_excludes(topic: str, expected: bool) -> None:
    assert DEFAULT_TOPIC_FILTER.matches(topic) is expected


@pytest.mark.parametrize(
    ("group", "expected"),
    [
        ("console-consumer-1", False),
        ("console-consumer-12345", False),
        ("connect-x", False),
        ("connect-mirror-source", False),
        ("__y", False),
        ("my-group", True),
        ("connect", True),
        ("console-consumer", True),
        ("my-connect-group", True),
        ("_g", True),
    ],
)
def test_default_group_excludes(group: str, expected: bool) -> None:
    assert DEFAULT_GROUP_FILTER.matches(group) is expected


def selector(
    include: tuple[str, ...] = DEFAULT_TOPICS,
    exclude: tuple[str, ...] = DEFAULT_TOPICS_EXCLUDE,
    target: str = "B",
    policy: DefaultReplicationPolicy | None = None,
) -> TopicSelector:
    return TopicSelector(NameFilter.of(include, exclude), policy or DefaultReplicationPolicy(), target)


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("orders", None),
        ("C.orders", None),
        ("__consumer_offsets", "internal"),
        (".hidden", "internal"),
        ("mm2-offset-syncs.B.internal", "internal"),
        ("mm2-offset-syncs.A.internal", "internal"),
        ("A.checkpoints.internal", "internal"),
        ("mm2-configs.B.internal", "internal"),
        ("connect-status-internal", None),  # MM2 4.x: Connect's topics are not internal to it, nor excluded
        ("x.replica", "filtered"),
        ("B.orders", "cycle"),
        ("C.B.orders", "cycle"),
        ("heartbeats", None),
        ("C.heartbeats", None),
        ("B.heartbeats", "cycle"),
        ("C.B.heartbeats", "cycle"),
    ],
)
def test_skip_reason_with_defaults(topic: str, reason: str | None) -> None:
    sel = selector()
    assert sel.skip_reason(topic) == reason
    assert sel.should_replicate(topic) is (reason is None)


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("orders", None),
        ("orders2", "filtered"),
        ("payments", "filtered"),
        ("heartbeats", None),
        ("A.heartbeats", None),
        ("C.A.heartbeats", None),
        ("B.heartbeats", "cycle"),
        ("__orders", "internal"),
    ],
)
def test_skip_reason_with_include_list(topic: str, reason: str | None) -> None:
    assert selector(include=("orders",)).skip_reason(topic) == reason


def test_heartbeats_replicated_even_when_excluded() -> None:
    sel = selector(include=("orders",), exclude=("heartbeats", ".*heartbeats"))
    assert sel.skip_reason("heartbeats") is None
    assert sel.skip_reason("C.heartbeats") is None
    assert sel.skip_reason("orders") is None


def test_remote_heartbeats_into_their_own_cluster_is_a_cycle() -> None:
    into_a = selector(target="A")
    assert into_a.skip_reason("A.heartbeats") == "cycle"
    assert into_a.skip_reason("B.A.heartbeats") == "cycle"
    assert into_a.skip_reason("B.heartbeats") is None
    assert into_a.skip_reason("heartbeats") is None


def test_custom_separator_selector() -> None:
    sel = selector(policy=DefaultReplicationPolicy("_"))
    assert sel.skip_reason("B_orders") == "cycle"
    assert sel.skip_reason("A_orders") is None
    assert sel.skip_reason("mm2-offset-syncs_B_internal") == "internal"
    assert sel.skip_reason("A_checkpoints_internal") == "internal"
    assert sel.skip_reason("A_heartbeats") is None
    assert sel.skip_reason("B_heartbeats") == "cycle"


def test_identity_selector_has_no_name_cycles_but_keeps_heartbeat_cycles() -> None:
    sel = selector(policy=IdentityReplicationPolicy())
    assert sel.skip_reason("orders") is None
    assert sel.skip_reason("B.orders") is None
    assert sel.skip_reason("B.heartbeats") == "cycle"
    assert sel.skip_reason("A.heartbeats") is None
    assert sel.skip_reason("__consumer_offsets") == "internal"
