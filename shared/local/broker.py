"""Single-node KRaft Kafka brokers on loopback, so ``smm local`` and the Kafka tests need only a JDK.

A broker runs detached in its own session so it outlives the ``smm local up`` that started it. Everything
about it (config, data, log, pid, controller port) lives in one directory, so ``smm local down`` or a
later ``up`` from another process finds it again.

Secured clusters: when a loopback cluster's client settings in ``mm2.properties`` say ``security.protocol``
``SASL_SSL``/``SASL_PLAINTEXT`` (``sasl.mechanism`` SCRAM-SHA-256 or -512, ``sasl.jaas.config`` with username and
password) or ``SSL`` (mutual TLS when ``ssl.keystore.location`` is set), its broker's client listener asks for
exactly that, next to a PLAINTEXT controller listener on loopback. ``ListenerSecurity`` reads those settings:

* TLS material comes from ``shared.local.certs``: one CA per state dir (``<state dir>/tls``) and a broker
  certificate for 127.0.0.1, ::1 and localhost, given to the broker inline as PEM (``ssl.keystore.type=PEM``).
  The CA certificate is written to ``ssl.truststore.location`` and a client key and certificate (one PEM file,
  encrypted with ``ssl.key.password`` if set) to ``ssl.keystore.location`` when those files are missing; files
  already there must come from the same CA, or the start fails saying which file to delete.
* The SCRAM user is created when the data directory is formatted (``StorageTool format --add-scram``, given a
  salted password so the password itself is in no command line), so no plaintext door is needed. Credentials
  changed later need a fresh data directory: the start then fails fast saying so.

``server.properties`` then holds the broker's key and the SCRAM password, so it is written with mode 0600.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.kafka import settings as client_settings
from shared.local import certs
from shared.mm2.client_settings import parse_jaas

if TYPE_CHECKING:
    from shared.mm2.config import ClusterConfig, MirrorConfig

LIBS_ENV = "SMM_KAFKA_LIBS"
STATE_DIR_ENV = "SMM_LOCAL_DIR"
REPO_ROOT = Path(__file__).resolve().parents[2]
NODE_ID = 1
# A laptop runs several of these next to the tests: a small heap and the serial collector keep each one
# near 200 MB and off the other cores; exiting on OOM beats a wedged broker that still holds its port.
JVM_OPTIONS = ("-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true")
TOOL_JVM_OPTIONS = ("-Xmx256m", "-XX:+UseSerialGC", "-Djava.awt.headless=true")
# Single-node settings: replication factors a one-broker cluster can meet, no auto-created topics (the
# replicator must create what it needs, as on a real cluster), and fewer threads and buffers than a
# production broker needs.
BROKER_DEFAULTS: Mapping[str, str] = {
    "auto.create.topics.enable": "false",
    "num.partitions": "1",
    "default.replication.factor": "1",
    "min.insync.replicas": "1",
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "5",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "5",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
    "num.network.threads": "2",
    "num.io.threads": "4",
    "background.threads": "4",
    "num.recovery.threads.per.data.dir": "1",
    "log.cleaner.threads": "1",
    "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
}
_LOG4J2 = """\
# Written by smm local on every start. Console output goes to broker.log (the broker's stdout).
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.target = SYSTEM_OUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.console.ref = STDOUT
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
"""
_LOG_TAIL_LINES = 30
_MAX_LOG_BYTES = 10 * 1024 * 1024
_POLL_SECONDS = 0.25
_KILL_WAIT_SECONDS = 10.0

_libs_lock = threading.Lock()
_ports_lock = threading.Lock()
# Broker ports of this process's LocalBrokers: a controller port picked for one broker must not be the
# (still unbound) client port of another broker that starts next to it.
_claimed_ports: set[int] = set()
SCRAM_MECHANISMS = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
SCRAM_ITERATIONS = 4096  # Kafka's default and the minimum clients accept
# Consecutive probes refused for bad credentials before the start gives up (one more than needed, in case the
# first races the broker loading its SCRAM users).
_AUTH_FAILURES_TO_GIVE_UP = 2


class BrokerError(RuntimeError):
    """A local broker could not be set up, started or stopped; the message says what to do."""


@dataclass(frozen=True)
class ListenerSecurity:
    """What a local broker's client listener asks of clients; read from the cluster's client settings."""

    alias: str = ""
    protocol: str = "PLAINTEXT"
    mechanism: str | None = None
    username: str = ""
    password: str = field(default="", repr=False)
    truststore: Path | None = None  # the CA certificate is written here if missing
    keystore: Path | None = None  # set: mutual TLS; a client key and certificate are written here if missing
    key_password: str | None = field(default=None, repr=False)
    cluster: ClusterConfig | None = field(default=None, repr=False)  # whose client settings the probe uses

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @classmethod
    def of(cls, cluster: ClusterConfig) -> ListenerSecurity:
        """The listener a cluster's (already validated) settings describe; BrokerError for what a local one lacks."""
        settings = cluster.client
        alias = cluster.alias
        protocol = settings.get("security.protocol", "PLAINTEXT").strip()
        found: dict[str, Any] = {"alias": alias, "protocol": protocol, "cluster": cluster}
        if protocol.startswith("SASL_"):
            mechanism = settings.get("sasl.mechanism", "GSSAPI").strip()
            if mechanism not in SCRAM_MECHANISMS:
                raise BrokerError(
                    f"{alias}.sasl.mechanism = {mechanism}: a local broker can check "
                    f"{' and '.join(SCRAM_MECHANISMS)} only"
                )
            if "sasl.jaas.config" not in settings:
                raise BrokerError(f"{alias}.sasl.jaas.config: missing; a local SASL cluster creates that user")
            jaas = parse_jaas(settings["sasl.jaas.config"])
            if "," in jaas["username"]:
                raise BrokerError(f"{alias}.sasl.jaas.config: a local SCRAM user name cannot contain ','")
            found.update(mechanism=mechanism, username=jaas["username"], password=jaas["password"])
        if protocol in ("SSL", "SASL_SSL"):
            truststore = settings.get("ssl.truststore.location", "").strip()
            if not truststore:
                raise BrokerError(
                    f"{alias}.ssl.truststore.location: missing; a local {protocol} cluster writes its CA "
                    "certificate there for clients to trust (a PEM file path)"
                )
            found["truststore"] = Path(truststore).expanduser().resolve()
            keystore = settings.get("ssl.keystore.location", "").strip()
            if keystore:
                found["keystore"] = Path(keystore).expanduser().resolve()
                found["key_password"] = settings.get("ssl.key.password") or settings.get("ssl.keystore.password")
        return cls(**found)


def kafka_libs() -> Path:
    """The Kafka jars; fetched with Maven on first use so a fresh checkout needs no manual step."""
    libs = _libs_dir()
    with _libs_lock:
        if not _has_jars(libs):
            _fetch_libs(libs)
    return libs


def _libs_dir() -> Path:
    return Path(os.environ.get(LIBS_ENV) or REPO_ROOT / ".kafka" / "libs").expanduser().resolve()


def _has_jars(directory: Path) -> bool:
    return directory.is_dir() and any(directory.glob("*.jar"))


def _fetch_libs(libs: Path) -> None:
    pom = REPO_ROOT / "kafka-runtime" / "pom.xml"
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError(
            f"no Kafka jars in {libs} and mvn is not installed: install Maven, or set {LIBS_ENV} "
            f"to a directory holding the jars that {pom} lists"
        )
    if not pom.is_file():
        raise BrokerError(f"no Kafka jars in {libs} and no {pom} to fetch them with")
    print(f"smm: fetching Kafka jars with Maven into {libs} (first run only)", file=sys.stderr, flush=True)
    # Download next to the target and move in only on success, so a failed run never leaves a partial
    # set of jars that the next run would take for complete.
    partial = libs.with_name(libs.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    command = [
        mvn,
        "-q",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={partial}",
        "-DincludeScope=runtime",
    ]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not _has_jars(partial):
        shutil.rmtree(partial, ignore_errors=True)
        output = _last_lines(result.stdout + result.stderr)
        raise BrokerError(f"mvn failed (exit {result.returncode}) fetching Kafka jars from {pom}:\n{output}")
    libs.mkdir(parents=True, exist_ok=True)
    for jar in partial.iterdir():
        os.replace(jar, libs / jar.name)
    shutil.rmtree(partial, ignore_errors=True)


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise BrokerError("java not found: a local Kafka broker needs a JDK 17+ on PATH or in JAVA_HOME")
    return found


class LocalBroker:
    """One combined broker+controller node whose directory is the whole truth about it."""

    def __init__(
        self,
        alias: str,
        port: int,
        state_dir: Path,
        host: str = "127.0.0.1",
        *,
        extra_properties: Mapping[str, str] | None = None,
        security: ListenerSecurity | None = None,
    ) -> None:
        self.alias = alias
        self.port = port
        self.host = host.strip("[]")
        self.extra_properties: dict[str, str] = dict(extra_properties or {})
        self.security = security or ListenerSecurity(alias)
        self._last_probe_error = ""
        self.dir = Path(state_dir).expanduser().resolve() / f"{alias}-{port}"
        self._proc: subprocess.Popen[bytes] | None = None
        with _ports_lock:
            _claimed_ports.add(port)

    def __repr__(self) -> str:
        return f"LocalBroker({self.alias!r}, {self.bootstrap!r}, dir={str(self.dir)!r})"

    def __str__(self) -> str:
        return f"{self.alias} ({self.bootstrap})"

    @property
    def bootstrap(self) -> str:
        return f"{_url_host(self.host)}:{self.port}"

    @property
    def properties_file(self) -> Path:
        return self.dir / "server.properties"

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def log_file(self) -> Path:
        return self.dir / "broker.log"

    @property
    def pid_file(self) -> Path:
        return self.dir / "broker.pid"

    @property
    def controller_port_file(self) -> Path:
        return self.dir / "controller.port"

    @property
    def tls_dir(self) -> Path:
        """The broker's own certificate and key (PEM); the CA is one level up, shared by the state dir."""
        return self.dir / "tls"

    def is_running(self) -> bool:
        """True when the port answers: a broker started elsewhere (no pid file here) still counts."""
        return _port_answers(self.host, self.port)

    def controller_port(self) -> int:
        """Chosen once and kept: the formatted metadata log records the controller's endpoint."""
        try:
            return int(self.controller_port_file.read_text(encoding="ascii").strip())
        except (OSError, ValueError):
            pass
        with _ports_lock:
            port = _free_port(self.host, avoid=_claimed_ports)
            _claimed_ports.add(port)
        self.dir.mkdir(parents=True, exist_ok=True)
        _write_atomic(self.controller_port_file, f"{port}\n")
        return port

    def start(self, timeout: float = 60) -> bool:
        """Start and wait until clients can use the broker; False when it was already up."""
        deadline = time.monotonic() + timeout
        if self.is_running():
            return False
        if self._live_pid() is not None:
            # Another process launched it and it is still coming up: wait rather than race it for the
            # data directory's lock.
            self._wait_ready(deadline, timeout, None)
            return False
        java = _java()
        libs = kafka_libs()
        self.dir.mkdir(parents=True, exist_ok=True)
        controller_port = self.controller_port()
        if not _can_bind(self.host, controller_port):
            raise BrokerError(
                f"{self}: controller port {controller_port} (kept in {self.controller_port_file}) is in use "
                f"by another process; free it, or delete {self.dir} to start this cluster afresh"
            )
        if self.security.tls:
            try:
                self._prepare_tls()
            except certs.CertificateError as exc:
                raise BrokerError(f"{self}: {exc}") from None
        certs.write_private(self.properties_file, self._server_properties(controller_port))
        log4j = self.dir / "log4j2.properties"
        log4j.write_text(_LOG4J2, encoding="utf-8")
        logging_option = f"-Dlog4j2.configurationFile={log4j}"
        classpath = str(libs / "*")
        if not (self.data_dir / "meta.properties").exists():
            self._format(java, logging_option, classpath)
        self._rotate_log()
        command = [java, *JVM_OPTIONS, logging_option, "-cp", classpath, "kafka.Kafka", str(self.properties_file)]
        with self.log_file.open("ab") as log:
            log.write(f"--- smm local: starting {self} at {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                command,
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._proc = proc
        _write_atomic(self.pid_file, f"{proc.pid}\n")
        try:
            self._wait_ready(deadline, timeout, proc)
        except BaseException:
            self._signal_and_wait(proc.pid, signal.SIGKILL, _KILL_WAIT_SECONDS)
            self.pid_file.unlink(missing_ok=True)
            self._proc = None
            raise
        return True

    def stop(self, timeout: float = 30) -> bool:
        """Shut down cleanly (SIGTERM), killing only if that hangs; False when it was not running."""
        pid = self._live_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            if self.is_running():
                # Reporting "not running" here would be false, and killing by port could hit anything.
                raise BrokerError(
                    f"{self}: the port answers but {self.pid_file} names no live broker of {self.dir}; "
                    "it was not started from this state directory, so stop it where it was started"
                )
            return False
        if not self._signal_and_wait(pid, signal.SIGTERM, timeout) and not self._signal_and_wait(
            pid, signal.SIGKILL, _KILL_WAIT_SECONDS
        ):
            raise BrokerError(f"{self}: process {pid} survived SIGTERM and SIGKILL")
        self.pid_file.unlink(missing_ok=True)
        self._proc = None
        return True

    def kill(self) -> bool:
        """Die without a clean shutdown, as a crashed broker would; for fault tests."""
        pid = self._live_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        if not self._signal_and_wait(pid, signal.SIGKILL, _KILL_WAIT_SECONDS):
            raise BrokerError(f"{self}: process {pid} survived SIGKILL")
        self.pid_file.unlink(missing_ok=True)
        self._proc = None
        return True

    def _prepare_tls(self) -> None:
        """The broker's certificate (made afresh each start), and the clients' files where the config names them."""
        sec = self.security
        ca = certs.authority(self.dir.parent / "tls")
        broker = certs.issue(ca, f"smm-local-{self.alias}")
        certs.write_private(self.tls_dir / "broker.pem", broker.chain)
        certs.write_private(self.tls_dir / "broker-key.pem", broker.key)
        if sec.truststore is not None:
            if not sec.truststore.exists():
                certs.write_private(sec.truststore, ca.pem())
            elif ca.pem().strip() not in sec.truststore.read_text(encoding="ascii", errors="replace"):
                raise BrokerError(
                    f"{self}: {sec.alias}.ssl.truststore.location = {sec.truststore} does not hold the local CA "
                    f"({ca.cert}); delete it to have it written again"
                )
        if sec.keystore is not None:
            if not sec.keystore.exists():
                client = certs.issue(
                    ca, sec.username or f"smm-{sec.alias}-client", client_only=True, key_password=sec.key_password
                )
                certs.write_private(sec.keystore, client.key + client.chain)
            elif not ca.issued(sec.keystore):
                raise BrokerError(
                    f"{self}: {sec.alias}.ssl.keystore.location = {sec.keystore} was not issued by the local CA "
                    f"({ca.cert}); delete it to have a client key and certificate issued again"
                )

    def _listener_properties(self) -> dict[str, str]:
        """The client listener's security settings (empty for PLAINTEXT)."""
        sec = self.security
        props: dict[str, str] = {}
        if sec.tls:
            props.update(
                {
                    "ssl.keystore.type": "PEM",
                    "ssl.keystore.certificate.chain": (self.tls_dir / "broker.pem").read_text(encoding="ascii"),
                    "ssl.keystore.key": (self.tls_dir / "broker-key.pem").read_text(encoding="ascii"),
                    "ssl.truststore.type": "PEM",
                    "ssl.truststore.location": str(self.dir.parent / "tls" / "ca.pem"),
                    "ssl.client.auth": "required" if sec.keystore is not None else "none",
                }
            )
        if sec.sasl and sec.mechanism is not None:
            module = "org.apache.kafka.common.security.scram.ScramLoginModule"
            login = f'{module} required username="{_jaas_quote(sec.username)}" password="{_jaas_quote(sec.password)}";'
            props.update(
                {
                    "sasl.enabled.mechanisms": sec.mechanism,
                    "sasl.mechanism.inter.broker.protocol": sec.mechanism,
                    # The broker's own login, used if it connects to itself over the inter-broker listener.
                    f"listener.name.{sec.protocol.lower()}.{sec.mechanism.lower()}.sasl.jaas.config": login,
                }
            )
        return props

    def _server_properties(self, controller_port: int) -> str:
        host = _url_host(self.host)
        listener = self.security.protocol
        props: dict[str, str] = {
            "process.roles": "broker,controller",
            "node.id": str(NODE_ID),
            "controller.quorum.bootstrap.servers": f"{host}:{controller_port}",
            "listeners": f"{listener}://{host}:{self.port},CONTROLLER://{host}:{controller_port}",
            "advertised.listeners": f"{listener}://{host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": f"{listener}:{listener},CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": listener,
            "log.dirs": str(self.data_dir),
            **BROKER_DEFAULTS,
            **self._listener_properties(),
        }
        lines = [f"# Written by smm local on every start of {self}; edits here are lost."]
        lines += [f"{_escape(k, key=True)}={_escape(v)}" for k, v in props.items()]
        if self.extra_properties:
            # Appended, so they win over the defaults above (java.util.Properties keeps the last value).
            lines.append("# extra_properties")
            lines += [f"{_escape(k, key=True)}={_escape(v)}" for k, v in self.extra_properties.items()]
        return "\n".join(lines) + "\n"

    def _format(self, java: str, logging_option: str, classpath: str) -> None:
        command = [
            java,
            *TOOL_JVM_OPTIONS,
            logging_option,
            "-cp",
            classpath,
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "-t",
            _new_cluster_id(),
            "-c",
            str(self.properties_file),
        ]
        scram = self._scram_argument()
        if scram:
            command += ["--add-scram", scram]
        try:
            result = subprocess.run(command, cwd=self.dir, capture_output=True, text=True, timeout=120, check=False)
        except subprocess.TimeoutExpired:
            raise BrokerError(f"{self}: formatting {self.data_dir} did not finish within 120 s") from None
        if result.returncode != 0:
            output = _last_lines(result.stdout + result.stderr)
            if scram:
                output = output.replace(scram, "<--add-scram argument>")
            raise BrokerError(f"{self}: formatting {self.data_dir} failed (exit {result.returncode}):\n{output}")

    def _scram_argument(self) -> str:
        """``--add-scram`` for the SCRAM user, with the salted password (what the broker keeps), not the password.

        The format tool splits its argument at commas, which a password may contain; base64 never does.
        """
        sec = self.security
        if not sec.sasl or sec.mechanism not in SCRAM_MECHANISMS:
            return ""
        salt = os.urandom(32)
        salted = hashlib.pbkdf2_hmac(SCRAM_MECHANISMS[sec.mechanism], sec.password.encode(), salt, SCRAM_ITERATIONS)
        b64 = base64.b64encode
        return (
            f"{sec.mechanism}=[name={sec.username},salt={b64(salt).decode()},"
            f"saltedpassword={b64(salted).decode()},iterations={SCRAM_ITERATIONS}]"
        )

    def _wait_ready(self, deadline: float, timeout: float, proc: subprocess.Popen[bytes] | None) -> None:
        auth_failures = 0
        while True:
            if proc is not None and proc.poll() is not None:
                raise BrokerError(
                    f"{self}: java exited with code {proc.returncode} while starting; "
                    f"last lines of {self.log_file}:\n{self._log_tail()}"
                )
            if proc is None and self._live_pid() is None:
                raise BrokerError(f"{self}: stopped while starting; see {self.log_file}:\n{self._log_tail()}")
            if self.is_running():
                try:
                    if self._cluster_answers():
                        return
                    auth_failures = 0
                except _AuthenticationFailed as exc:
                    auth_failures += 1
                    if auth_failures >= _AUTH_FAILURES_TO_GIVE_UP:
                        raise BrokerError(f"{self}: {exc}{self._credentials_hint()}") from None
            if time.monotonic() >= deadline:
                probe = f"; last probe: {self._last_probe_error}" if self._last_probe_error else ""
                raise BrokerError(
                    f"{self}: not ready within {timeout:g} s{probe}{self._credentials_hint()}\n"
                    f"last lines of {self.log_file}:\n{self._log_tail()}"
                )
            time.sleep(_POLL_SECONDS)

    def _cluster_answers(self) -> bool:
        """The port opens before the broker serves requests; an unfenced broker in the cluster means it does.

        Raises ``_AuthenticationFailed`` when the broker answers but refuses the credentials or certificate;
        any other failure only means "not ready yet" and is kept for the timeout message.
        """
        from kafka import KafkaAdminClient

        from shared.kafka.clients import ClusterAuthenticationError, ClusterError, _connect

        try:
            admin = _connect(self.alias, KafkaAdminClient, self._probe_settings())
        except ClusterAuthenticationError as exc:
            raise _AuthenticationFailed(str(exc)) from None
        except ClusterError as exc:
            self._last_probe_error = str(exc)
            return False
        except Exception as exc:  # whatever else a half-started broker provokes: not ready yet
            self._last_probe_error = f"{type(exc).__name__}: {exc}"
            return False
        try:
            cluster: dict[str, Any] = admin.describe_cluster()
            return any(not b.get("is_fenced", False) for b in cluster.get("brokers") or ())
        except Exception as exc:
            self._last_probe_error = f"{type(exc).__name__}: {exc}"
            return False
        finally:
            admin.close()

    def _credentials_hint(self) -> str:
        if not self.security.sasl:
            return ""
        return (
            f". The SCRAM user of {self.alias}.sasl.jaas.config was created when {self.data_dir} was formatted; "
            f"if the credentials changed since, stop the broker and delete {self.dir} to format it again"
        )

    def _probe_settings(self) -> dict[str, Any]:
        """The cluster's own client settings (security included), with short timeouts."""
        cluster = self.security.cluster
        client = {} if cluster is None else client_settings.kafka_python(cluster, "admin")
        return {
            **client,
            "bootstrap_servers": [self.bootstrap],
            "client_id": "smm-local-probe",
            "bootstrap_timeout_ms": 3000,
            "request_timeout_ms": 3000,
        }

    def _live_pid(self) -> int | None:
        """The pid in broker.pid if that process is alive and is this broker (pids get reused)."""
        try:
            pid = int(self.pid_file.read_text(encoding="ascii").strip())
        except (OSError, ValueError):
            return None
        if pid <= 0 or not self._pid_alive(pid):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return pid  # no /proc (macOS): trust the pid file
        return pid if str(self.properties_file).encode() in cmdline else None

    def _pid_alive(self, pid: int) -> bool:
        if self._proc is not None and self._proc.pid == pid:
            return self._proc.poll() is None
        try:
            # Reap it if it is an exited child of ours (another LocalBroker object started it), else a
            # zombie would look alive forever.
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done == pid:
                return False
        except ChildProcessError:
            pass
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def _signal_and_wait(self, pid: int, sig: signal.Signals, timeout: float) -> bool:
        """Send ``sig`` and wait up to ``timeout`` seconds; True once the process is gone."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while self._pid_alive(pid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        return True

    def _rotate_log(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            if self.log_file.stat().st_size > _MAX_LOG_BYTES:
                os.replace(self.log_file, self.dir / "broker.log.1")

    def _log_tail(self) -> str:
        try:
            with self.log_file.open("rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - 64 * 1024))
                text = log.read().decode("utf-8", errors="replace")
        except OSError:
            return "(no log)"
        tail = _last_lines(text)
        if "Defaulting to no-operation (NOP) logger" in tail:
            # Without a logging binding the broker dies silently; say how to get its reasons back.
            tail += (
                f"\n(the Kafka jars in {_libs_dir()} have no working SLF4J binding, so the broker could not "
                "log why: delete that directory and the next start fetches them again from kafka-runtime/pom.xml)"
            )
        return tail


class _AuthenticationFailed(Exception):
    """The broker answered and refused the probe's credentials."""


def default_state_dir() -> Path:
    return Path(os.environ.get(STATE_DIR_ENV) or ".smm-local")


def brokers_for(config: MirrorConfig, state_dir: Path) -> list[LocalBroker]:
    """A broker for each loopback cluster: remote clusters are someone else's to run."""
    brokers: dict[int, LocalBroker] = {}
    for alias, cluster in config.clusters.items():
        if not cluster.bootstrap_servers or not cluster.is_loopback():
            continue
        if len(cluster.bootstrap_servers) > 1:
            raise BrokerError(
                f"{alias}.bootstrap.servers = {','.join(cluster.bootstrap_servers)}: a local cluster has "
                "one broker; list a single loopback host:port"
            )
        host, _, port = cluster.bootstrap_servers[0].rpartition(":")
        # Two aliases for one cluster (same port) share one broker.
        if int(port) not in brokers:
            brokers[int(port)] = LocalBroker(alias, int(port), state_dir, host, security=ListenerSecurity.of(cluster))
    return list(brokers.values())


def up(config: MirrorConfig, state_dir: Path) -> list[tuple[LocalBroker, bool]]:
    """Start the config's local brokers in parallel: each JVM start is mostly waiting."""
    brokers = brokers_for(config, state_dir)
    if brokers:
        kafka_libs()  # fetch once, before the threads would race for it
    return _each(brokers, lambda broker: broker.start())


def down(config: MirrorConfig, state_dir: Path) -> list[tuple[LocalBroker, bool]]:
    return _each(brokers_for(config, state_dir), lambda broker: broker.stop())


def _each(brokers: list[LocalBroker], action: Callable[[LocalBroker], bool]) -> list[tuple[LocalBroker, bool]]:
    """Run ``action`` on all brokers; a failure of one does not abandon the others, all are reported."""
    if not brokers:
        return []
    with ThreadPoolExecutor(max_workers=len(brokers), thread_name_prefix="smm-local") as pool:
        futures = [pool.submit(action, broker) for broker in brokers]
    results: list[tuple[LocalBroker, bool]] = []
    errors: list[str] = []
    for broker, future in zip(brokers, futures, strict=True):
        try:
            results.append((broker, future.result()))
        except (BrokerError, OSError) as exc:
            errors.append(str(exc) if isinstance(exc, BrokerError) else f"{broker}: {exc}")
    if errors:
        raise BrokerError("\n".join(errors))
    return results


def _jaas_quote(value: str) -> str:
    """A value inside a double-quoted JAAS option."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _port_answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _can_bind(host: str, port: int) -> bool:
    addr = "127.0.0.1" if host == "localhost" else host
    with socket.socket(_family(addr), socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the JVM does
        try:
            sock.bind((addr, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on and no ``LocalBroker`` of this process has claimed (controller ports included)."""
    with _ports_lock:
        return _free_port(host, avoid=set(_claimed_ports))


def _free_port(host: str, avoid: Collection[int] = ()) -> int:
    addr = "127.0.0.1" if host == "localhost" else host
    for _ in range(50):
        with socket.socket(_family(addr), socket.SOCK_STREAM) as sock:
            sock.bind((addr, 0))
            port: int = sock.getsockname()[1]
        if port not in avoid:
            return port
    raise BrokerError(f"no free port on {host}")


def _new_cluster_id() -> str:
    """Kafka's own format; one starting with '-' would read as a command-line flag, as Kafka also avoids."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _escape(text: str, *, key: bool = False) -> str:
    """java.util.Properties escaping; Kafka reads the file as ISO-8859-1, so anything else is \\uXXXX."""
    out: list[str] = []
    for i, ch in enumerate(text):
        if ch == "\\":
            out.append("\\\\")
        elif ch in "\t\n\r\f":
            out.append({"\t": "\\t", "\n": "\\n", "\r": "\\r", "\f": "\\f"}[ch])
        elif ch == " " and (key or i == 0):
            out.append("\\ ")
        elif key and ch in "=:#!":
            out.append("\\" + ch)
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            units = ch.encode("utf-16-be")
            out += [f"\\u{units[j]:02x}{units[j + 1]:02x}" for j in range(0, len(units), 2)]
    return "".join(out)


def _last_lines(text: str, count: int = _LOG_TAIL_LINES) -> str:
    lines = text.rstrip().splitlines()[-count:]
    return "\n".join(lines) if lines else "(no output)"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="ascii")
    os.replace(tmp, path)
