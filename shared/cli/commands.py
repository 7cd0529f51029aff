"""``smm``: validate a configuration, run local Kafka clusters, and run the flows locally.

Exit codes: 0 success, 1 bad configuration or a failed run, 2 bad command line.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, cast

from infra import settings as deploy_settings
from shared.aws.config_source import EventSourceTemplate
from shared.cli import failover
from shared.cli.config_file import load
from shared.mm2.config import ConfigError, FlowConfig, MirrorConfig

if TYPE_CHECKING:
    from shared.local.emulator import MappingOptions


def cmd_validate(args: argparse.Namespace) -> int:
    mirror_config = load(args.config)
    if args.strict and mirror_config.strict_problems():
        raise ConfigError(
            [f"{p} (--strict refuses keys that are accepted and not used)" for p in mirror_config.strict_problems()]
        )
    unused = len(mirror_config.strict_problems())
    print(f"{args.config}: valid; clusters: {', '.join(mirror_config.clusters)}; {unused} key(s) accepted and unused")
    for alias, cluster in mirror_config.clusters.items():
        print(f"  cluster {alias}: {','.join(cluster.bootstrap_servers)}")
    pairs = [f for f in mirror_config.flows if f.in_cluster_pairs]
    print(f"  cluster pairs MM2 would start: {', '.join(f.name for f in pairs) or 'none'}")
    enabled = mirror_config.enabled_flows()
    if not enabled:
        print("  no flow is enabled (set A->B.enabled = true)")
    for flow in enabled:
        _print_flow(flow)
    for flow in pairs:
        if not flow.enabled and flow.emits_heartbeats:
            print(f"  pair {flow.name}: heartbeats only (emit.heartbeats.enabled), nothing replicated")
    return 0


def _print_flow(flow: FlowConfig) -> None:
    """A flow as MM2 would run it: filters, names, internal topics, intervals (off when disabled)."""
    s = flow.settings

    def every(enabled: bool, seconds: int) -> str:
        return f"every {seconds}s" if enabled else "off"

    policy = s.replication_policy_class.rsplit(".", 1)[-1]
    print(f"  flow {flow.name}: topics {', '.join(s.topics)} (excluding {', '.join(s.topics_exclude)})")
    print(
        f"    remote names: {policy}, separator {s.replication_policy_separator!r} "
        f"(e.g. {flow.policy().format_remote_topic(flow.source, 'orders')})"
    )
    print(f"    groups {', '.join(s.groups)} (excluding {', '.join(s.groups_exclude)})")
    print(
        f"    offset syncs: {flow.offset_syncs_topic()} on {flow.offset_syncs_cluster()}, "
        f"offset.lag.max={s.offset_lag_max}; checkpoints: {flow.policy().checkpoints_topic(flow.source)} on "
        f"{flow.target}; replication.factor={s.replication_factor}"
    )
    print(
        f"    heartbeats {every(flow.emits_heartbeats, s.emit_heartbeats_interval_seconds)}, checkpoints "
        f"{every(s.emit_checkpoints_enabled, s.emit_checkpoints_interval_seconds)}, group offset sync "
        f"{every(s.sync_group_offsets_enabled, s.sync_group_offsets_interval_seconds)}, topic refresh "
        f"{every(s.refresh_topics_enabled, s.refresh_topics_interval_seconds)}, config sync "
        f"{every(s.sync_topic_configs_enabled, s.sync_topic_configs_interval_seconds)}, ACL sync "
        f"{every(s.sync_topic_acls_enabled, s.sync_topic_acls_interval_seconds)}"
    )
    print(f"    exactly-once: {'yes' if flow.exactly_once else 'no'}; data path: {s.producer_backend}")


def cmd_local(args: argparse.Namespace) -> int:
    from shared.local import broker

    mirror_config = load(args.config)
    state_dir = Path(args.state_dir) if args.state_dir else broker.default_state_dir()
    if args.action == "up":
        for b, started in broker.up(mirror_config, state_dir):
            print(f"{b.alias}: {'started' if started else 'already running'} at {b.bootstrap}")
    else:
        for b, stopped in broker.down(mirror_config, state_dir):
            print(f"{b.alias}: {'stopped' if stopped else 'was not running'} at {b.bootstrap}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    _local_powertools_defaults(args.verbose)
    from functions.mirror.collector import tune_for_batches
    from shared.local import emulator

    mirror_config = load(args.config)
    mappings = _mapping_options(args.settings, mirror_config) if args.settings else None
    tune_for_batches()
    stop = threading.Event()
    # SIGTERM (systemd, Kubernetes, kill) stops like Ctrl-C: batches finish, consumers commit and leave their groups
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    peers = [_start_peer(args, n) for n in range(1, args.processes)]
    out = sys.stdout
    if args.processes > 1 or args.peer:
        out = cast("TextIO", _Prefixed(sys.stdout, f"[process {args.peer}] "))
    try:
        totals = emulator.run(
            mirror_config,
            duration=args.duration,
            out=out,
            refresh_seconds=args.refresh,
            progress_seconds=args.progress,
            stop=stop,
            mappings=mappings,
        )
    finally:
        for peer in peers:
            peer.terminate()
        for peer in peers:
            peer.wait(timeout=90)
    if args.json:
        print(emulator.totals_json(totals))
    return 0


def _mapping_options(source: str, mirror_config: MirrorConfig) -> dict[str, MappingOptions]:
    """What the deploy settings ``source`` (a file, or inline JSON as ``cdk -c settings=``) give each enabled flow's
    mappings: retries, record age, bisect, failure destination, and the mirror function's timeout."""
    from shared.local.emulator import LAMBDA_DEFAULTS, MappingOptions

    settings = deploy_settings.load(source)
    flows = [flow.name for flow in mirror_config.enabled_flows()]
    unknown = [name for name in settings.flow_event_sources if name not in flows]
    if unknown:
        enabled = ", ".join(flows) or "none"
        raise deploy_settings.SettingsError(
            f"flow_event_sources.{name}: not an enabled flow (enabled: {enabled})" for name in unknown
        )
    timeout = settings.functions["mirror"].timeout_seconds
    options = {}
    for flow in flows:
        chosen = settings.event_source_for(flow)
        template = EventSourceTemplate(
            LAMBDA_DEFAULTS.function_name,
            pollers=chosen.provisioned_pollers,
            on_failure=chosen.on_failure,
            max_retry_attempts=chosen.max_retry_attempts,
            max_record_age_seconds=chosen.max_record_age_seconds,
            bisect_batch_on_error=chosen.bisect_batch_on_error,
        )
        options[flow] = MappingOptions(template=template, timeout_seconds=timeout)
    return options


def _start_peer(args: argparse.Namespace, n: int) -> subprocess.Popen[bytes]:
    """Another ``smm run`` of the same file: its ESM consumers join the same groups, so Kafka divides each topic's
    partitions between the processes (as Lambda's pollers share a mapping's group), and each core does work."""
    command = [sys.executable, "-m", "shared.cli.commands", "run", args.config, "--progress", f"{args.progress:g}"]
    command += ["--peer", str(n)]
    if args.duration is not None:
        command += ["--duration", f"{args.duration:g}"]
    if args.refresh is not None:
        command += ["--refresh", f"{args.refresh:g}"]
    if args.settings is not None:
        command += ["--settings", args.settings]
    if args.verbose:
        command.append("--verbose")
    return subprocess.Popen(command)


class _Prefixed(io.TextIOBase):
    """Progress lines of several processes on one terminal, each saying which process it is."""

    def __init__(self, out: TextIO, prefix: str) -> None:
        self._out = out
        self._prefix = prefix

    def write(self, text: str) -> int:
        lines = text.splitlines(keepends=True)
        self._out.write("".join(self._prefix + line if line.strip() else line for line in lines))
        return len(text)

    def flush(self) -> None:
        self._out.flush()


def _processes(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if not 1 <= n <= 64:
        raise argparse.ArgumentTypeError(f"{value!r}: allowed: a whole number from 1 to 64")
    return n


def cmd_demo(args: argparse.Namespace) -> int:
    _local_powertools_defaults(args.verbose)
    from shared.local import demo

    return demo.main(Path(args.config), duration=args.duration, keep=args.keep)


def _local_powertools_defaults(verbose: bool) -> None:
    """Locally, metrics go to the progress lines rather than EMF on stdout, and logs are quiet."""
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "INFO" if verbose else "WARNING")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="smm", description="Serverless MirrorMaker: MirrorMaker 2 as functions.")
    sub = p.add_subparsers(dest="command", required=True)

    v = sub.add_parser("validate", help="check an mm2.properties file and print the flows it defines")
    v.add_argument("config")
    v.add_argument(
        "--strict", action="store_true", help="refuse keys that are accepted and not used (each is a warning otherwise)"
    )
    v.set_defaults(func=cmd_validate)

    loc = sub.add_parser("local", help="start or stop local Kafka brokers for the loopback clusters of CONFIG")
    loc.add_argument("action", choices=["up", "down"])
    loc.add_argument("config")
    loc.add_argument("--state-dir", help="where broker data and logs live (default: $SMM_LOCAL_DIR or .smm-local)")
    loc.set_defaults(func=cmd_local)

    r = sub.add_parser("run", help="run every enabled flow locally (the event-source mapping emulator)")
    r.add_argument("config")
    r.add_argument("--duration", type=float, help="stop after this many seconds (default: run until Ctrl-C)")
    r.add_argument("--refresh", type=float, help="topic discovery interval (default: refresh.topics.interval.seconds)")
    r.add_argument("--progress", type=float, default=10.0, help="seconds between progress lines (default 10)")
    r.add_argument(
        "--settings",
        help="deploy settings (a JSON file, or inline JSON as in cdk -c settings=): the flows' mappings retry, "
        "give up and send failed records as the deployment's would (default: Lambda's defaults, retry until it works)",
    )
    r.add_argument("--json", action="store_true", help="print the final totals as JSON")
    r.add_argument("--verbose", action="store_true", help="show the functions' structured logs")
    r.add_argument(
        "--processes",
        type=_processes,
        default=1,
        help="run N processes that share the work (Kafka splits each topic's partitions among them; default 1)",
    )
    r.add_argument("--peer", type=int, default=0, help=argparse.SUPPRESS)  # set on the processes --processes adds
    r.set_defaults(func=cmd_run)

    d = sub.add_parser("demo", help="two local clusters, a bidirectional flow, and what landed where")
    d.add_argument("--config", default=str(Path(__file__).resolve().parents[2] / "examples" / "demo.properties"))
    d.add_argument("--duration", type=float, default=15.0)
    d.add_argument("--keep", action="store_true", help="leave the clusters running afterwards")
    d.add_argument("--verbose", action="store_true")
    d.set_defaults(func=cmd_demo)

    failover.add_commands(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except (ConfigError, deploy_settings.SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except RuntimeError as exc:  # BrokerError, ClusterError, MirrorError: already say what and where
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
