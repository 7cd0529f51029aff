"""A cluster's client settings in each library's terms: kafka-python keyword arguments, a librdkafka config.

``ClusterConfig.settings(role)`` says what MM2 would give the client (Java keys, read and checked). Here the
parts that need more than a rename are done: TLS stores become an ``ssl.SSLContext`` or inline PEM
(``shared.kafka.tls``), SASL credentials become each library's username and password, and MSK IAM becomes
OAUTHBEARER with a token provider (``shared.kafka.msk_iam``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.kafka import msk_iam, tls
from shared.mm2.config import ClusterConfig

_TLS_PROTOCOLS = ("SSL", "SASL_SSL")


def kafka_python(cluster: ClusterConfig, role: str) -> dict[str, Any]:
    """kafka-python keyword arguments for a ``role`` client of ``cluster``."""
    settings = cluster.settings(role)
    kwargs: dict[str, Any] = {**settings.kafka_python, "bootstrap_servers": list(cluster.bootstrap_servers)}
    if settings.protocol in _TLS_PROTOCOLS:
        kwargs["ssl_context"] = tls.ssl_context(settings, cluster.alias)
    kwargs.pop("ssl_check_hostname", None)  # part of the context
    if settings.iam is not None:
        region = msk_iam.region_of(cluster.bootstrap_servers, cluster.alias)
        kwargs.update(msk_iam.kafka_python_settings(settings.iam, region))
    elif settings.username is not None:
        kwargs["sasl_plain_username"] = settings.username
        kwargs["sasl_plain_password"] = settings.password
    return kwargs


def librdkafka(cluster: ClusterConfig, role: str, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """A librdkafka configuration for a ``role`` client of ``cluster``, over the caller's ``defaults``."""
    settings = cluster.settings(role)
    config: dict[str, Any] = {"bootstrap.servers": ",".join(cluster.bootstrap_servers), **defaults}
    config.update(settings.librdkafka)
    if settings.protocol in _TLS_PROTOCOLS:
        config.update(tls.librdkafka_tls(settings, cluster.alias))
    if settings.iam is not None:
        region = msk_iam.region_of(cluster.bootstrap_servers, cluster.alias)
        config.update(msk_iam.librdkafka_settings(settings.iam, region))
    elif settings.mechanism:
        config["sasl.mechanism"] = settings.mechanism
        if settings.username is not None:
            config["sasl.username"] = settings.username
            config["sasl.password"] = settings.password
    if settings.buffer_memory is not None:  # bytes in Java, KiB in librdkafka
        config["queue.buffering.max.kbytes"] = max(1, settings.buffer_memory // 1024)
    return config
