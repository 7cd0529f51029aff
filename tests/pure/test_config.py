"""mm2.properties: Java properties syntax, MM2 defaults, per-flow overrides, validation and client settings."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from shared.kafka import settings as client_settings
from shared.mm2.config import (
    ConfigError,
    FlowConfig,
    FlowSettings,
    MirrorConfig,
    load,
    parse,
    parse_properties,
)
from shared.mm2.filters import DEFAULT_GROUPS_EXCLUDE, DEFAULT_TOPICS_EXCLUDE
from shared.mm2.policy import DefaultReplicationPolicy, IdentityReplicationPolicy

SECRET = "s3cr3t-Pa55w0rd"
JAAS = f'org.apache.kafka.common.security.scram.ScramLoginModule required username="alice" password="{SECRET}";'
LAMBDA_GROUP_ID = re.compile(r"[a-zA-Z0-9\-/*:_+=.@]{1,200}")


def base() -> dict[str, str]:
    """Two valid clusters, A and B, and nothing else."""
    return {"clusters": "A, B", "A.bootstrap.servers": "a1:9092,a2:9092", "B.bootstrap.servers": "b1:9092"}


def with_keys(entries: dict[str, str], drop: tuple[str, ...] = ()) -> dict[str, str]:
    p = base()
    for key in drop:
        p.pop(key)
    p.update(entries)
    return p


def problems_of(entries: dict[str, str], drop: tuple[str, ...] = ()) -> list[str]:
    """The problems of a file with flow A->B enabled (a flow that does not run cannot fail a file)."""
    with pytest.raises(ConfigError) as info:
        parse(with_keys({"A->B.enabled": "true", **entries}, drop))
    return info.value.problems


def warnings_of(entries: dict[str, str]) -> list[str]:
    return [str(w) for w in parse(with_keys({"A->B.enabled": "true", **entries})).warnings]


# --- parse_properties: Java .properties syntax ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a=1", {"a": "1"}),
        ("a:1", {"a": "1"}),
        ("a 1", {"a": "1"}),
        ("a\t1", {"a": "1"}),
        ("a = 1", {"a": "1"}),
        ("a : 1", {"a": "1"}),
        ("a\t=\t1", {"a": "1"}),
        ("   a = 1", {"a": "1"}),
        ("a = 1  ", {"a": "1  "}),
        ("a=", {"a": ""}),
        ("a = ", {"a": ""}),
        ("a", {"a": ""}),
        ("a==b", {"a": "=b"}),
        ("a = = b", {"a": "= b"}),
        ("a=b=c", {"a": "b=c"}),
        ("a:b:c", {"a": "b:c"}),
        ("a b c", {"a": "b c"}),
        ("a.b->c = x", {"a.b->c": "x"}),
        ("A->B.enabled=true", {"A->B.enabled": "true"}),
        ("a=1\nb=2", {"a": "1", "b": "2"}),
        ("a=1\r\nb=2\r\n", {"a": "1", "b": "2"}),
        ("a=1\rb=2", {"a": "1", "b": "2"}),
        ("a=1\na=2", {"a": "2"}),
        ("", {}),
        ("\n\n   \n", {}),
    ],
)
def test_parse_properties_separators(text: str, expected: dict[str, str]) -> None:
    assert parse_properties(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("# comment\na=1", {"a": "1"}),
        ("! comment\na=1", {"a": "1"}),
        ("   # indented comment\na=1", {"a": "1"}),
        ("\t! indented comment\na=1", {"a": "1"}),
        ("#a=1\n!b=2", {}),
        ("a=1 # not a comment", {"a": "1 # not a comment"}),
        ("a=x!y", {"a": "x!y"}),
        ("# comment ending in a backslash \\\na=1", {"a": "1"}),
    ],
)
def test_parse_properties_comments(text: str, expected: dict[str, str]) -> None:
    assert parse_properties(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a = x, \\\n    y", {"a": "x, y"}),
        ("a = x,\\\n\ty,\\\n  z", {"a": "x,y,z"}),
        ("a = x\\\n# not a comment", {"a": "x# not a comment"}),
        ("a = x\\\n! not a comment", {"a": "x! not a comment"}),
        ("a \\\n = 1", {"a": "1"}),
        ("a = x\\\\\nb = y", {"a": "x\\", "b": "y"}),
        ("a = x\\\\\\\n  y", {"a": "x\\y"}),
        ("a = x\\", {"a": "x"}),
        ("a = x\\\n\nb = y", {"a": "x", "b": "y"}),
        ("topics = orders, \\\n         payments\nb=1", {"topics": "orders, payments", "b": "1"}),
    ],
)
def test_parse_properties_continuation_lines(text: str, expected: dict[str, str]) -> None:
    assert parse_properties(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a = c\\\\d", {"a": "c\\d"}),
        ("a = \\u0041", {"a": "A"}),
        ("a = \\u00e9t\\u00E9", {"a": "\u00e9t\u00e9"}),
        ("a = x\\ty", {"a": "x\ty"}),
        ("a = x\\ny", {"a": "x\ny"}),
        ("a = x\\ry", {"a": "x\ry"}),
        ("a = x\\fy", {"a": "x\fy"}),
        ("a = \\q", {"a": "q"}),
        ("a = \\ lead", {"a": " lead"}),
        ("a = \\#x", {"a": "#x"}),
        ("a\\=b = c", {"a=b": "c"}),
        ("a\\:b = c", {"a:b": "c"}),
        ("a\\ b = c", {"a b": "c"}),
        ("\\u0041 = 1", {"A": "1"}),
        ("\\#a = 1", {"#a": "1"}),
        ("regex = .*\\\\.replica", {"regex": ".*\\.replica"}),
        ("a = caf\u00e9", {"a": "caf\u00e9"}),
    ],
)
def test_parse_properties_escapes(text: str, expected: dict[str, str]) -> None:
    assert parse_properties(text) == expected


@pytest.mark.parametrize("char", ["\x0b", "\x1c", "\x85", "\u2028", "\u2029"])
def test_parse_properties_only_cr_and_lf_end_lines(char: str) -> None:
    # Java's Properties.load ends a line only at \n, \r or \r\n; other Unicode line breaks are value text.
    assert parse_properties(f"a = x{char}y\nb = 2") == {"a": f"x{char}y", "b": "2"}


def test_parse_properties_kafka_sample_file() -> None:
    text = """
# Sample MirrorMaker 2.0 top-level configuration file
clusters = A, B
A.bootstrap.servers = A_host1:9092, A_host2:9092, A_host3:9092
B.bootstrap.servers = B_host1:9092, B_host2:9092, B_host3:9092
A->B.enabled = true
A->B.topics = .*
B->A.enabled = true
B->A.topics = .*
replication.factor=1
checkpoints.topic.replication.factor=1
heartbeats.topic.replication.factor=1
offset-syncs.topic.replication.factor=1
offset.storage.replication.factor=1
status.storage.replication.factor=1
config.storage.replication.factor=1
# replication.policy.separator = _
"""
    properties = parse_properties(text)
    assert properties["A.bootstrap.servers"] == "A_host1:9092, A_host2:9092, A_host3:9092"
    assert properties["A->B.topics"] == ".*"
    assert "replication.policy.separator" not in properties
    config = parse(properties)
    assert [f.name for f in config.enabled_flows()] == ["A->B", "B->A"]
    assert config.cluster("A").bootstrap_servers == ("A_host1:9092", "A_host2:9092", "A_host3:9092")
    flow = config.flow("A", "B")
    assert flow.settings.replication_factor == 1
    assert flow.settings.checkpoints_topic_replication_factor == 1
    assert flow.settings.topics == (".*",)
    assert len(config.warnings) == 2
    for key in ("status.storage", "config.storage"):
        assert any(w.key.startswith(key) and w.strict for w in config.warnings)
    # the worker's offsets topic is where exactly-once mode keeps MM2's source offsets: used, so no warning
    assert flow.offsets_topic().replication_factor == 1


# --- parse(): defaults, flows, overrides ------------------------------------------------------------------

MM2_DEFAULTS = {
    "topics": (".*",),
    "topics_exclude": DEFAULT_TOPICS_EXCLUDE,
    "groups": (".*",),
    "groups_exclude": DEFAULT_GROUPS_EXCLUDE,
    "config_properties_exclude": (
        r"follower\.replication\.throttled\.replicas",
        r"leader\.replication\.throttled\.replicas",
        r"message\.timestamp\.difference\.max\.ms",
        r"log\.message\.timestamp\.before\.max\.ms",
        r"log\.message\.timestamp\.after\.max\.ms",
        r"message\.timestamp\.type",
        r"unclean\.leader\.election\.enable",
        r"min\.insync\.replicas",
    ),
    "replication_policy_class": "org.apache.kafka.connect.mirror.DefaultReplicationPolicy",
    "replication_policy_separator": ".",
    "internal_topic_separator_enabled": True,
    "replication_factor": 2,
    "heartbeats_topic_replication_factor": 3,
    "checkpoints_topic_replication_factor": 3,
    "offset_syncs_topic_replication_factor": 3,
    "offset_syncs_topic_location": "source",
    "offset_lag_max": 100,
    "emit_offset_syncs_enabled": True,
    "emit_heartbeats_enabled": True,
    "emit_heartbeats_interval_seconds": 1,
    "heartbeats_replication_enabled": True,
    "emit_checkpoints_enabled": True,
    "emit_checkpoints_interval_seconds": 60,
    "sync_group_offsets_enabled": False,
    "sync_group_offsets_interval_seconds": 60,
    "refresh_topics_enabled": True,
    "refresh_topics_interval_seconds": 600,
    "refresh_groups_enabled": True,
    "refresh_groups_interval_seconds": 600,
    "sync_topic_configs_enabled": True,
    "sync_topic_configs_interval_seconds": 600,
    "sync_topic_acls_enabled": True,
    "sync_topic_acls_interval_seconds": 600,
    "use_defaults_from": "target",
}


@pytest.mark.parametrize(("name", "value"), sorted(MM2_DEFAULTS.items()))
def test_defaults_equal_mm2s(name: str, value: object) -> None:
    config = parse(base())
    for flow in config.flows:
        assert getattr(flow.settings, name) == value
    assert getattr(FlowSettings(), name) == value


def test_defaults_of_the_smm_keys() -> None:
    s = parse(base()).flow("A", "B").settings
    assert (s.batch_size, s.batching_window_ms, s.starting_position) == (100, 500, "TRIM_HORIZON")
    assert (s.oversized_record_action, s.dead_letter_topic) == ("fail", "smm-dead-letter.internal")


def test_every_flow_exists_and_is_disabled_by_default() -> None:
    config = parse(base())
    assert [f.name for f in config.flows] == ["A->B", "B->A"]
    assert all(f.enabled is False for f in config.flows)
    assert config.enabled_flows() == []
    assert config.warnings == ()


def test_three_clusters_give_six_flows() -> None:
    config = parse(with_keys({"clusters": "A, B, C", "C.bootstrap.servers": "c:9092", "C->A.enabled": "true"}))
    assert sorted(f.name for f in config.flows) == ["A->B", "A->C", "B->A", "B->C", "C->A", "C->B"]
    assert [f.name for f in config.enabled_flows()] == ["C->A"]


@pytest.mark.parametrize(
    ("raw", "heartbeats", "enabled"),
    [
        ("true", "true", True),
        ("TRUE", "true", True),
        ("false", "true", False),
        # MM2 picks cluster pairs with Boolean.parseBoolean (untrimmed), its connector trims: with heartbeats on
        # the pair exists anyway and the flow runs; with heartbeats off the pair is never started.
        ("true ", "true", True),
        ("true ", "false", False),
        ("True", "false", True),
        ("yes", "true", False),
    ],
)
def test_enabled_flag_as_mm2_reads_it(raw: str, heartbeats: str, enabled: bool) -> None:
    config = parse(with_keys({"A->B.enabled": raw, "emit.heartbeats.enabled": heartbeats}))
    assert config.flow("A", "B").enabled is enabled
    assert config.flow("B", "A").enabled is False


def test_a_flow_mm2_would_not_start_is_explained() -> None:
    notices = warnings_of({"A->B.enabled": "true   # on", "B->A.enabled": "true ", "emit.heartbeats.enabled": "false"})
    assert any("A->B.enabled" in n and "no inline comments" in n and "does not" in n for n in notices)
    assert any("B->A.enabled" in n and "Boolean.parseBoolean" in n for n in notices)


def test_top_level_enabled_enables_every_flow_as_in_mm2() -> None:
    config = parse(with_keys({"enabled": "true"}))
    assert [f.name for f in config.enabled_flows()] == ["A->B", "B->A"]


def test_top_level_key_applies_to_every_flow() -> None:
    config = parse(with_keys({"offset.lag.max": "7", "topics": "orders, pay.*", "replication.factor": "-1"}))
    for flow in config.flows:
        assert flow.settings.offset_lag_max == 7
        assert flow.settings.topics == ("orders", "pay.*")
        assert flow.settings.replication_factor == -1


def test_per_flow_override_wins_over_top_level() -> None:
    config = parse(
        with_keys(
            {
                "offset.lag.max": "7",
                "A->B.offset.lag.max": "9",
                "sync.group.offsets.enabled": "true",
                "B->A.sync.group.offsets.enabled": "false",
                "B->A.topics": "only-this",
            }
        )
    )
    ab, ba = config.flow("A", "B").settings, config.flow("B", "A").settings
    assert (ab.offset_lag_max, ba.offset_lag_max) == (9, 7)
    assert (ab.sync_group_offsets_enabled, ba.sync_group_offsets_enabled) == (True, False)
    assert (ab.topics, ba.topics) == ((".*",), ("only-this",))


def test_per_flow_override_wins_regardless_of_order() -> None:
    first = {"A->B.offset.lag.max": "9", "offset.lag.max": "7"}
    assert parse(with_keys(first)).flow("A", "B").settings.offset_lag_max == 9


def test_cluster_config() -> None:
    config = parse(with_keys({"A.security.protocol": "SSL", "A.consumer.max.poll.records": "5"}))
    a = config.cluster("A")
    assert a.alias == "A"
    assert a.bootstrap_servers == ("a1:9092", "a2:9092")
    assert a.client == {"security.protocol": "SSL"}
    assert a.roles["consumer"] == {"max.poll.records": "5"}
    assert a.role_settings("consumer") == {"security.protocol": "SSL", "max.poll.records": "5"}
    assert config.cluster("B").client == {}


def test_connection_settings_come_from_the_cluster_or_the_top_level_role_keys_win() -> None:
    """MM2's clusterProps: A.<key> over the top-level <key> for bootstrap/security/ssl/sasl; A.<role>.<key> wins."""
    config = parse(
        with_keys(
            {
                "security.protocol": "SSL",
                "B.security.protocol": "PLAINTEXT",
                "A.producer.security.protocol": "SASL_SSL",
                "ssl.truststore.location": "/etc/top.pem",
            }
        )
    )
    a, b = config.cluster("A"), config.cluster("B")
    assert a.role_settings("consumer")["security.protocol"] == "SSL"
    assert a.role_settings("producer")["security.protocol"] == "SASL_SSL"
    assert b.role_settings("admin") == {"security.protocol": "PLAINTEXT", "ssl.truststore.location": "/etc/top.pem"}


@pytest.mark.parametrize(
    ("key", "fragment"),
    [
        ("A.linger.ms", "A.producer.linger.ms"),  # a cluster-level client key reaches no client in MM2
        ("producer.linger.ms", "<alias>.producer.linger.ms"),  # nor does a top-level one
        ("A.topics", "no per-cluster connector settings"),
        ("A->B.consumer.max.poll.records", "per-flow client settings"),
        ("A->B.producer.override.linger.ms", "per-flow client settings"),
        ("use.defaults.from", "A->B.use.defaults.from"),
        ("exactly.once.source.support", "B.exactly.once.source.support"),
    ],
)
def test_settings_mm2_drops_are_accepted_with_a_warning_saying_where_they_belong(key: str, fragment: str) -> None:
    config = parse(with_keys({"A->B.enabled": "true", key: "source" if "defaults" in key else "1"}))
    notices = [w for w in config.warnings if w.key == key]
    assert len(notices) == 1 and notices[0].strict and fragment in notices[0].message, config.warnings
    assert config.cluster("A").role_settings("producer") == {}
    assert not any(f.exactly_once for f in config.flows)
    assert config.flow("A", "B").settings.use_defaults_from == "target"


def test_unknown_flow_and_cluster_lookups_are_config_errors() -> None:
    config = parse(base())
    with pytest.raises(ConfigError, match="A->C"):
        config.flow("A", "C")
    with pytest.raises(ConfigError, match="'C'"):
        config.cluster("C")


@pytest.mark.parametrize("servers", ["localhost:9092", "[::1]:9092", "127.0.0.1:9092, localhost:1"])
def test_loopback(servers: str) -> None:
    assert parse(with_keys({"A.bootstrap.servers": servers})).cluster("A").is_loopback()


@pytest.mark.parametrize("servers", ["broker:9092", "localhost:9092,broker:9092", "10.0.0.1:9092"])
def test_not_loopback(servers: str) -> None:
    assert not parse(with_keys({"A.bootstrap.servers": servers})).cluster("A").is_loopback()


@pytest.mark.parametrize(
    "servers",
    ["b-1.msk.eu-west-1.amazonaws.com:9098", "[2001:db8::1]:9092", "h:1,h:65535", " a:1 , b:2 "],
)
def test_valid_bootstrap_servers(servers: str) -> None:
    parsed = parse(with_keys({"A.bootstrap.servers": servers})).cluster("A").bootstrap_servers
    assert parsed == tuple(s.strip() for s in servers.split(","))


# --- errors: one problem each, naming key, value and what is allowed --------------------------------------

ERROR_CASES = [
    pytest.param({}, ("B.bootstrap.servers",), ["B.bootstrap.servers", "missing", "host:port"], id="no-bootstrap"),
    pytest.param({"A.bootstrap.servers": "localhost"}, (), ["A.bootstrap.servers", "localhost", "host:port"]),
    pytest.param({"A.bootstrap.servers": "h:99999"}, (), ["A.bootstrap.servers", "h:99999", "host:port"]),
    pytest.param({"A.bootstrap.servers": "h:0"}, (), ["A.bootstrap.servers", "h:0", "host:port"]),
    pytest.param({"A.bootstrap.servers": "h:abc"}, (), ["A.bootstrap.servers", "h:abc", "host:port"]),
    pytest.param({"A.bootstrap.servers": "h:1;g:2"}, (), ["A.bootstrap.servers", "h:1;g:2", "host:port"]),
    pytest.param({"A.bootstrap.servers": ""}, (), ["A.bootstrap.servers", "host:port"], id="empty-bootstrap"),
    pytest.param({"topics": "orders, ["}, (), ["topics", "[", "regular expression"], id="bad-regex"),
    pytest.param({"A->B.groups": "(x"}, (), ["A->B.groups", "(x", "regular expression"], id="bad-group-regex"),
    pytest.param(
        {"replication.policy.class": "com.example.MyPolicy"},
        (),
        [
            "replication.policy.class",
            "com.example.MyPolicy",
            "org.apache.kafka.connect.mirror.DefaultReplicationPolicy",
        ],
        id="unknown-policy",
    ),
    pytest.param(
        {"emit.checkpoints.interval.seconds": "soon"},
        (),
        ["emit.checkpoints.interval.seconds", "soon", "whole number"],
        id="non-numeric-interval",
    ),
    pytest.param(
        {"A->B.emit.heartbeats.interval.seconds": "1.5"},
        (),
        ["A->B.emit.heartbeats.interval.seconds", "1.5", "whole number"],
    ),
    pytest.param({"replication.factor": "0"}, (), ["replication.factor", "'0'", "-1"], id="replication-factor-0"),
    pytest.param({"A->B.checkpoints.topic.replication.factor": "0"}, (), ["checkpoints.topic", "'0'", "-1"]),
    pytest.param({"replication.factor": "-2"}, (), ["replication.factor", "-2", "-1"]),
    pytest.param({"offset-syncs.topic.location": "middle"}, (), ["offset-syncs.topic.location", "middle", "source"]),
    pytest.param({"offset.lag.max": "-1"}, (), ["offset.lag.max", "'-1'", "0"]),
    pytest.param({"refresh.topics.interval.seconds": "0"}, (), ["refresh.topics.interval.seconds", "'0'", "cannot"]),
    pytest.param({"topics": "orders, orders"}, (), ["topics", "orders listed twice"]),
    pytest.param({"topics": "a{1,3}"}, (), ["topics", "a{1", "splits the list at every comma"]),
    pytest.param({"key.converter": "org.apache.kafka.connect.json.JsonConverter"}, (), ["key.converter", "re-encode"]),
    pytest.param({"A->B.source.cluster.alias": "X"}, (), ["A->B.source.cluster.alias", "'X'", "rename the cluster"]),
    pytest.param({"A.alias": "X"}, (), ["A.alias", "after 'X' instead of the cluster alias 'A'"]),
    pytest.param(
        {"emit.offset-syncs.enabled": "false"}, (), ["emit.offset-syncs.enabled = false", "checkpoints", "refuses"]
    ),
    pytest.param(
        {
            "emit.offset-syncs.enabled": "false",
            "emit.checkpoints.enabled": "false",
            "offset-syncs.topic.location": "source",
        },
        (),
        ["offset-syncs.topic.location set", "MirrorSourceConnector can't setup offset-syncs"],
    ),
    pytest.param({"A.ssl.keystore.type": "BKS"}, (), ["A.ssl.keystore.type", "JKS, PKCS12"]),
    pytest.param({"smm.dead.letter.topic": "dead letters"}, (), ["smm.dead.letter.topic", "'dead letters'", "249"]),
    pytest.param({"smm.dead.letter.topic": ".."}, (), ["smm.dead.letter.topic", "not '.' or '..'"]),
    pytest.param({"offset.storage.replication.factor": "0"}, (), ["offset.storage.replication.factor", "-1"]),
    pytest.param({"A.ssl.enabled.protocols": "TLSv1.1"}, (), ["A.ssl.enabled.protocols", "TLSv1.2, TLSv1.3"]),
    pytest.param({"A.sasl.oauthbearer.token.endpoint.url": "https://x"}, (), ["A.sasl.oauthbearer", "weaken"]),
    pytest.param(
        {"config.providers": "vault", "config.providers.vault.class": "com.example.Vault"},
        (),
        ["config.providers.vault.class", "com.example.Vault", "EnvVarConfigProvider"],
    ),
    pytest.param({"sync.group.offsets.enabled": "1"}, (), ["sync.group.offsets.enabled", "'1'", "true or false"]),
    pytest.param({"smm.batch.size": "10001"}, (), ["smm.batch.size", "10001", "10000"]),
    pytest.param(
        {"A.security.protocol": "TLS"}, (), ["A.security.protocol", "TLS", "SASL_SSL"], id="bad-security-protocol"
    ),
    pytest.param({"A.sasl.mechanism": "GSSAPI"}, (), ["A.sasl.mechanism", "GSSAPI", "SCRAM-SHA-512"]),
    pytest.param({"A.producer.linger.ms": "fast"}, (), ["A.producer.linger.ms", "fast", "whole number"]),
    pytest.param({"A.consumer.isolation.level": "x"}, (), ["A.consumer.isolation.level", "read_committed"]),
    pytest.param(
        {"B.exactly.once.source.support": "on"}, (), ["B.exactly.once.source.support", "'on'", "preparing, enabled"]
    ),
    pytest.param(
        {
            "A->B.enabled": "true",
            "B.exactly.once.source.support": "enabled",
            "A.consumer.isolation.level": "read_uncommitted",
        },
        (),
        ["A.consumer.isolation.level = read_uncommitted", "A->B is exactly-once", "aborted", "read_committed"],
        id="exactly-once-reading-uncommitted",
    ),
]


@pytest.mark.parametrize(("entries", "drop", "fragments"), ERROR_CASES)
def test_each_error_is_one_clear_problem(entries: dict[str, str], drop: tuple[str, ...], fragments: list[str]) -> None:
    problems = problems_of(entries, drop)
    assert len(problems) == 1, problems
    for fragment in fragments:
        assert fragment in problems[0], (fragment, problems[0])


def test_config_error_message_lists_every_problem() -> None:
    error = ConfigError(["first problem", "second problem"])
    assert error.problems == ["first problem", "second problem"]
    assert "first problem" in str(error)
    assert "second problem" in str(error)
    assert isinstance(error, ValueError)


def test_missing_clusters_key() -> None:
    with pytest.raises(ConfigError) as info:
        parse({})
    assert len(info.value.problems) == 1
    assert "clusters" in info.value.problems[0]


@pytest.mark.parametrize("alias", ["A.B", "A B", "A/B", "A>B"])
def test_bad_alias(alias: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse({"clusters": f"X, {alias}", "X.bootstrap.servers": "h:1"})
    assert any(p.startswith("clusters:") and repr(alias) in p for p in info.value.problems)


def test_all_problems_are_reported_together() -> None:
    problems = problems_of(
        {
            "A.sasl.mechanism": "GSSAPI",
            "topics": "[",
            "replication.factor": "0",
            "A.security.protocol": "TLS",
            "A.consumer.fetch.min.bytes": "many",
            "emit.checkpoints.interval.seconds": "soon",
        },
        drop=("B.bootstrap.servers",),
    )
    assert len(problems) == 7, problems
    for key in (
        "A.sasl.mechanism",
        "topics",
        "replication.factor",
        "A.security.protocol",
        "A.consumer.fetch.min.bytes",
        "emit.checkpoints.interval.seconds",
        "B.bootstrap.servers",
    ):
        assert sum(p.startswith(key) for p in problems) == 1, (key, problems)


def test_a_top_level_error_is_reported_once_not_once_per_flow() -> None:
    problems = problems_of({"clusters": "A, B, C", "C.bootstrap.servers": "c:1", "offset.lag.max": "many"})
    assert problems == ["offset.lag.max = 'many': allowed: a whole number >= 0"]


def test_an_invalid_setting_of_a_flow_that_does_not_run_is_a_warning() -> None:
    config = parse(with_keys({"B->A.offset.lag.max": "many"}))  # MM2 refuses that connector, which changes nothing
    assert [str(w) for w in config.warnings] == [
        "B->A.offset.lag.max: 'many': allowed: a whole number >= 0 (in a flow that is not enabled)"
    ]


# --- secrets never appear in errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "entries",
    [
        {"A.sasl.jaas.config": f'org.example.PlainLoginModule required password="{SECRET}";'},
        {"A.sasl.jaas.config": f'username="alice" password="{SECRET}";'},
        {"A.sasl.jaas.config": SECRET},
        {"A.consumer.sasl.jaas.config": f'required password="{SECRET}"'},
        {"A.producer.sasl.jaas.config": f"LoginModule {SECRET}"},
        {"A.admin.sasl.jaas.config": f"LoginModule required {SECRET}"},
        {"C.sasl.jaas.config": JAAS},
        {"A->B.sasl.jaas.config": JAAS},
        {"sasl.jaas.config": JAAS},
        {"A.sasl.jaas.confg": JAAS},
        {"A.sasl.jaas.config": JAAS, "A.security.protocol": "TLS", "topics": "["},
    ],
)
def test_jaas_password_never_appears_in_errors_or_warnings(entries: dict[str, str]) -> None:
    try:
        config = parse(with_keys({"A->B.enabled": "true", **entries}))
    except ConfigError as exc:
        assert exc.problems
        assert SECRET not in str(exc)
        assert all(SECRET not in p for p in exc.problems)
        assert all(SECRET not in a for a in exc.args)
    else:
        assert all(SECRET not in str(w) for w in config.warnings)


def test_jaas_error_still_names_the_key_and_what_is_allowed() -> None:
    module = "org.apache.kafka.common.security.plain.PlainLoginModule"
    problems = problems_of({"A.sasl.jaas.config": f'{module} required password="{SECRET}";'})
    assert len(problems) == 1
    assert problems[0].startswith("A.sasl.jaas.config = <hidden>")
    assert "username" in problems[0]


def test_valid_jaas_password_is_not_in_warnings() -> None:
    config = parse(with_keys({"A.producer.sasl.jaas.config": JAAS}))
    assert all(SECRET not in str(w) for w in config.warnings)


# --- load() -----------------------------------------------------------------------------------------------


def test_load_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "mm2.properties"
    with pytest.raises(ConfigError) as info:
        load(missing)
    assert len(info.value.problems) == 1
    assert str(missing) in info.value.problems[0]


def test_load_a_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path)
    assert str(tmp_path) in info.value.problems[0]


def test_load_reads_bytes_as_mm2_does_iso_8859_1(tmp_path: Path) -> None:
    path = tmp_path / "mm2.properties"
    path.write_text(
        "clusters = A, B\nA.bootstrap.servers = a:1\nB.bootstrap.servers = b:1\n"
        "A->B.enabled = true\nA->B.groups = caf\u00e9-.*, \\\n   orders-\\u00e9\n",
        encoding="utf-8",
    )
    config = load(str(path))
    assert config.flow("A", "B").enabled
    # Properties.load(InputStream): the UTF-8 bytes of é are two ISO-8859-1 characters; \u00e9 is é
    assert config.flow("A", "B").settings.groups == ("caf\u00c3\u00a9-.*", "orders-\u00e9")
    assert any("ISO-8859-1" in w.message for w in config.warnings)


@pytest.mark.parametrize(
    ("line", "must_not_leak"),
    [
        ("topics = orders-\\uZZZZ", None),
        ("topics = orders-\\u00", None),
        (f'A.sasl.jaas.config = x.PlainLoginModule required username="u" password="{SECRET}\\uXYZW";', "XYZW"),
    ],
)
def test_load_malformed_unicode_escape_is_a_config_error(tmp_path: Path, line: str, must_not_leak: str | None) -> None:
    # Java's Properties.load rejects a malformed \uxxxx escape; here it must become a ConfigError, not a
    # bare ValueError from int(), and must not echo part of a secret.
    path = tmp_path / "mm2.properties"
    path.write_text(f"clusters = A, B\nA.bootstrap.servers = a:1\nB.bootstrap.servers = b:1\n{line}\n")
    with pytest.raises(ConfigError) as info:
        load(path)
    if must_not_leak:
        assert must_not_leak not in str(info.value)
        assert SECRET not in str(info.value)


# --- warnings ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "tasks.max",
        "config.storage.replication.factor",
        "status.storage.replication.factor",
        "dedicated.mode.enable.internal.rest",
        "listeners",
        "key.converter",
    ],
)
def test_ignored_connect_keys_warn_not_fail(key: str) -> None:
    value = "org.apache.kafka.connect.converters.ByteArrayConverter" if "converter" in key else "1"
    config = parse(with_keys({key: value}))
    assert isinstance(config, MirrorConfig)
    assert len(config.warnings) == 1
    assert config.warnings[0].key == key and config.warnings[0].strict
    assert "ignored" in config.warnings[0].message or "not used" in config.warnings[0].message


def test_role_level_setting_is_used_without_warning() -> None:
    config = parse(with_keys({"A.producer.client.id": "p", "A.producer.security.protocol": "SSL"}))
    assert config.warnings == ()
    assert config.cluster("A").role_settings("producer") == {"client.id": "p", "security.protocol": "SSL"}


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("C->B.enabled", "true", "not a flow between the clusters"),
        ("A->C.topics", "x", "not a flow between the clusters"),
        ("A->A.enabled", "true", "two different clusters"),
        ("offset.lag.maximum", "5", "not a setting MirrorMaker 2 reads"),
        ("A->B.bogus", "1", "not a setting MirrorMaker 2 reads"),
        ("A.sasl.mechanisms", "PLAIN", "not a setting MirrorMaker 2 reads for a cluster"),
        ("A.producer.foo.bar", "1", "library's default is used"),
        ("A.producer.acks", "1", "acks=all"),
        ("A.producer.enable.idempotence", "false", "idempotence on"),
        ("X.Y.bootstrap.servers", "h:1", "not a setting MirrorMaker 2 reads"),
        ("tasks.max", "4", "one Lambda poller per partition"),
    ],
)
def test_keys_mm2_ignores_or_this_product_does_not_use_are_warnings(key: str, value: str, fragment: str) -> None:
    config = parse(with_keys({"A->B.enabled": "true", key: value}))
    notices = [w for w in config.warnings if w.key == key]
    assert len(notices) == 1 and fragment in notices[0].message and notices[0].strict, config.warnings
    assert config.strict_problems() == [str(notices[0])]


def test_a_duplicate_alias_is_dropped_with_a_warning_as_in_mm2() -> None:
    config = parse(with_keys({"clusters": "A, B, A"}))
    assert list(config.clusters) == ["A", "B"]
    assert [str(w) for w in config.warnings] == ["clusters: alias 'A' is listed twice; MM2 drops the duplicate"]


def test_exactly_once_disabled_is_accepted() -> None:
    config = parse(with_keys({"B.exactly.once.source.support": "disabled"}))
    assert config.warnings == ()
    assert not any(f.exactly_once for f in config.flows)


@pytest.mark.parametrize(
    ("entries", "exactly_once_into"),
    [
        ({"B.exactly.once.source.support": "enabled"}, {"B"}),
        ({"B.exactly.once.source.support": "ENABLED"}, {"B"}),
        # MM2 reads only the target cluster's own key: the top-level one changes nothing (and is warned about)
        ({"exactly.once.source.support": "enabled"}, set()),
        ({"exactly.once.source.support": "enabled", "A.exactly.once.source.support": "enabled"}, {"A"}),
    ],
)
def test_exactly_once_is_per_target_cluster(entries: dict[str, str], exactly_once_into: set[str]) -> None:
    config = parse(with_keys(entries))
    assert {f.target for f in config.flows if f.exactly_once} == exactly_once_into
    assert {a for a, c in config.clusters.items() if c.exactly_once} == exactly_once_into


def test_exactly_once_preparing_warns_and_stays_at_least_once() -> None:
    config = parse(with_keys({"B.exactly.once.source.support": "preparing"}))
    assert not config.flow("A", "B").exactly_once
    assert len(config.warnings) == 1
    assert config.warnings[0].key == "B.exactly.once.source.support" and "preparing" in config.warnings[0].message


def test_exactly_once_names_per_partition_transactional_ids() -> None:
    flow = parse(with_keys({"B.exactly.once.source.support": "enabled"})).flow("A", "B")
    assert flow.source_offsets_topic() == "mm2-offsets.A.internal"
    assert flow.transactional_id("orders", 3) == "smm:A:B:orders:3"
    long_id = flow.transactional_id("t" * 240, 1)
    assert len(long_id) == 200
    assert long_id != flow.transactional_id("t" * 240, 2)


# --- client settings: Java names -> kafka-python ----------------------------------------------------------


def kafka_python(config: MirrorConfig, alias: str, role: str) -> dict[str, object]:
    settings = client_settings.kafka_python(config.cluster(alias), role)
    settings.pop("ssl_context", None)
    return settings


def client_config() -> MirrorConfig:
    return parse(
        with_keys(
            {
                "A.security.protocol": "SASL_SSL",
                "A.sasl.mechanism": "SCRAM-SHA-512",
                "A.sasl.jaas.config": JAAS,
                "A.ssl.endpoint.identification.algorithm": "",
                "A.producer.request.timeout.ms": "30000",
                "A.producer.linger.ms": "5",
                "A.producer.compression.type": "none",
                "A.producer.acks": "all",
                "A.producer.enable.idempotence": "true",
                "A.producer.max.in.flight.requests.per.connection": "5",
                "A.consumer.max.poll.records": "10",
                "A.consumer.isolation.level": "read_committed",
                "A.consumer.auto.offset.reset": "earliest",
            }
        )
    )


def test_kafka_python_settings_producer() -> None:
    config = client_config()
    context = client_settings.kafka_python(config.cluster("A"), "producer")["ssl_context"]
    assert context.check_hostname is False
    settings = kafka_python(config, "A", "producer")
    assert settings == {
        "bootstrap_servers": ["a1:9092", "a2:9092"],
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "alice",
        "sasl_plain_password": SECRET,
        "request_timeout_ms": 30000,
        "linger_ms": 5,
        "compression_type": None,
        "max_in_flight_requests_per_connection": 5,
    }


def test_kafka_python_settings_consumer_and_admin() -> None:
    config = client_config()
    consumer = kafka_python(config, "A", "consumer")
    assert consumer["max_poll_records"] == 10
    assert consumer["isolation_level"] == "read_committed"
    assert consumer["auto_offset_reset"] == "earliest"
    assert consumer["security_protocol"] == "SASL_SSL"
    assert "linger_ms" not in consumer
    admin = kafka_python(config, "A", "admin")
    assert "max_poll_records" not in admin
    assert "linger_ms" not in admin
    assert admin["sasl_plain_password"] == SECRET
    assert admin["bootstrap_servers"] == ["a1:9092", "a2:9092"]


def test_kafka_python_settings_of_a_plain_cluster() -> None:
    assert kafka_python(parse(base()), "B", "producer") == {"bootstrap_servers": ["b1:9092"]}


@pytest.mark.parametrize(
    ("java", "python"), [("none", None), ("gzip", "gzip"), ("snappy", "snappy"), ("lz4", "lz4"), ("zstd", "zstd")]
)
def test_compression_type(java: str, python: str | None) -> None:
    config = parse(with_keys({"A.producer.compression.type": java}))
    assert kafka_python(config, "A", "producer")["compression_type"] == python


@pytest.mark.parametrize(("java", "python"), [("https", True), ("HTTPS", True), ("", False)])
def test_endpoint_identification(java: str, python: bool) -> None:
    config = parse(with_keys({"A.ssl.endpoint.identification.algorithm": java, "A.security.protocol": "SSL"}))
    assert client_settings.kafka_python(config.cluster("A"), "consumer")["ssl_context"].check_hostname is python


@pytest.mark.parametrize(
    ("role", "key", "python_name", "value"),
    [
        ("producer", "client.id", "client_id", "mirror-producer"),
        ("producer", "security.protocol", "security_protocol", "SSL"),
        ("consumer", "request.timeout.ms", "request_timeout_ms", 1234),
        ("admin", "client.id", "client_id", "mirror-admin"),
    ],
)
def test_role_level_common_setting_reaches_that_role_only(role: str, key: str, python_name: str, value: object) -> None:
    config = parse(with_keys({f"A.{role}.{key}": str(value)}))
    assert kafka_python(config, "A", role)[python_name] == value
    other = next(r for r in ("producer", "consumer", "admin") if r != role)
    assert python_name not in kafka_python(config, "A", other)


@pytest.mark.parametrize(
    ("jaas_password", "password"),
    [
        ("plain", "plain"),
        ("with space", "with space"),
        ('with\\"quote', 'with"quote'),
        ("back\\\\slash", "back\\slash"),
    ],
)
def test_jaas_password_quoting(jaas_password: str, password: str) -> None:
    # Kafka reads sasl.jaas.config with a StreamTokenizer: \" and \\ inside a quoted value are escapes.
    jaas = f'org.apache.kafka.common.security.plain.PlainLoginModule required username="u" password="{jaas_password}";'
    config = parse(with_keys({"A.sasl.jaas.config": jaas}))
    assert kafka_python(config, "A", "producer")["sasl_plain_password"] == password


def test_jaas_single_quoted_values() -> None:
    # Kafka's JaasConfig tokenizer accepts ' as well as " around option values.
    jaas = "org.apache.kafka.common.security.plain.PlainLoginModule required username='u' password='p w';"
    settings = kafka_python(parse(with_keys({"A.sasl.jaas.config": jaas})), "A", "producer")
    assert (settings["sasl_plain_username"], settings["sasl_plain_password"]) == ("u", "p w")


# --- FlowConfig helpers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "topic",
    [
        "orders",
        "A.orders",
        "my_topic-1.v2",
        "x" * 249,
        "UPPER.lower_123",
    ],
)
def test_consumer_group_id_is_deterministic_and_lambda_safe(topic: str) -> None:
    def flow() -> FlowConfig:
        config = parse(
            {"clusters": "us-west_1, eu-2", "us-west_1.bootstrap.servers": "h:1", "eu-2.bootstrap.servers": "h:2"}
        )
        return config.flow("us-west_1", "eu-2")

    group = flow().consumer_group_id(topic)
    assert group == flow().consumer_group_id(topic)
    assert LAMBDA_GROUP_ID.fullmatch(group), group


def test_consumer_group_id_differs_per_flow_and_topic() -> None:
    config = parse(base())
    ab, ba = config.flow("A", "B"), config.flow("B", "A")
    ids = {ab.consumer_group_id("t"), ab.consumer_group_id("u"), ba.consumer_group_id("t"), ba.consumer_group_id("u")}
    assert len(ids) == 4


def test_consumer_group_id_differs_for_long_topics_sharing_a_prefix() -> None:
    flow = parse(base()).flow("A", "B")
    prefix = "p" * 240
    first, second = flow.consumer_group_id(prefix + "-1"), flow.consumer_group_id(prefix + "-2")
    assert LAMBDA_GROUP_ID.fullmatch(first)
    assert LAMBDA_GROUP_ID.fullmatch(second)
    assert first != second


def test_consumer_group_id_differs_when_aliases_contain_dashes() -> None:
    config = parse(
        {
            "clusters": "A, B-C, A-B, C",
            "A.bootstrap.servers": "h:1",
            "B-C.bootstrap.servers": "h:2",
            "A-B.bootstrap.servers": "h:3",
            "C.bootstrap.servers": "h:4",
        }
    )
    assert config.flow("A", "B-C").consumer_group_id("t") != config.flow("A-B", "C").consumer_group_id("t")


@pytest.mark.parametrize(
    ("entries", "topic", "cluster"),
    [
        ({}, "mm2-offset-syncs.B.internal", "A"),
        ({"offset-syncs.topic.location": "source"}, "mm2-offset-syncs.B.internal", "A"),
        # on the target, MM2 names it after the source: flows A->B and C->B keep their syncs apart
        ({"offset-syncs.topic.location": "target"}, "mm2-offset-syncs.A.internal", "B"),
        ({"A->B.offset-syncs.topic.location": "target"}, "mm2-offset-syncs.A.internal", "B"),
        ({"replication.policy.separator": "_"}, "mm2-offset-syncs_B_internal", "A"),
        (
            {"replication.policy.separator": "_", "replication.policy.internal.topic.separator.enabled": "false"},
            "mm2-offset-syncs.B.internal",
            "A",
        ),
    ],
)
def test_offset_syncs_topic_and_cluster(entries: dict[str, str], topic: str, cluster: str) -> None:
    flow = parse(with_keys(entries)).flow("A", "B")
    assert flow.offset_syncs_topic() == topic
    assert flow.offset_syncs_cluster() == cluster


def test_offset_syncs_location_override_is_per_flow() -> None:
    config = parse(with_keys({"A->B.offset-syncs.topic.location": "target"}))
    assert config.flow("A", "B").offset_syncs_cluster() == "B"
    assert config.flow("B", "A").offset_syncs_cluster() == "B"
    assert config.flow("B", "A").offset_syncs_topic() == "mm2-offset-syncs.A.internal"  # on B, named after A
    assert config.flow("A", "B").offset_syncs_topic() == "mm2-offset-syncs.A.internal"  # on B, named after A


@pytest.mark.parametrize(
    ("cls_name", "cls", "identity"),
    [
        ("org.apache.kafka.connect.mirror.DefaultReplicationPolicy", DefaultReplicationPolicy, False),
        ("org.apache.kafka.connect.mirror.IdentityReplicationPolicy", IdentityReplicationPolicy, True),
    ],
)
def test_flow_policy(cls_name: str, cls: type, identity: bool) -> None:
    flow = parse(with_keys({"replication.policy.class": cls_name, "replication.policy.separator": "_"})).flow("A", "B")
    policy = flow.policy()
    assert type(policy) is cls
    assert policy.separator == "_"
    assert flow.uses_identity_names() is identity
    assert policy.format_remote_topic("A", "heartbeats") == "A_heartbeats"


def test_flow_topic_selector_and_group_filter() -> None:
    flow = parse(
        with_keys({"A->B.topics": "orders.*", "A->B.topics.exclude": "orders-test", "A->B.groups": "app-.*"})
    ).flow("A", "B")
    selector = flow.topic_selector()
    assert selector.target_alias == "B"
    assert selector.skip_reason("orders-1") is None
    assert selector.skip_reason("orders-test") == "filtered"
    assert selector.skip_reason("payments") == "filtered"
    assert selector.skip_reason("heartbeats") is None
    assert not selector.should_replicate("B.orders")
    groups = flow.group_filter()
    assert groups.matches("app-1")
    assert not groups.matches("other")
    assert not groups.matches("console-consumer-9")


def test_flow_settings_fields_all_have_keys() -> None:
    keys = [f.metadata["key"] for f in dataclasses.fields(FlowSettings)]
    assert len(keys) == len(set(keys))
    assert "offset.lag.max" in keys
    assert "emit.checkpoints.interval.seconds" in keys


def test_the_data_path_defaults_to_librdkafka_and_kafka_python_stays_selectable() -> None:
    enabled = {"A->B.enabled": "true"}
    assert parse(with_keys(enabled)).flow("A", "B").settings.producer_backend == "confluent-kafka"
    chosen = parse(with_keys({**enabled, "A->B.smm.producer.backend": "kafka-python"}))
    assert chosen.flow("A", "B").settings.producer_backend == "kafka-python"
    (problem,) = problems_of({"smm.producer.backend": "librdkafka"})
    assert "smm.producer.backend" in problem and "librdkafka" in problem and "confluent-kafka" in problem
