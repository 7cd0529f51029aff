"""Which Kafka failures mean that a cluster refused the client's credentials.

A deployed function reads its credentials from Secrets Manager and caches them; when a cluster refuses the login,
the secret may have been rotated, so the next invocation reads it again instead of waiting for the cache to
expire (``shared.aws.live_config``). Errors often reach us only as text (the mirror's delivery failures, config
sync's job failures, confluent-kafka's ``KafkaException``), so besides the types, the names both libraries put in
their messages count: kafka-python's error class, librdkafka's error codes (``KafkaError{code=_AUTHENTICATION,...``).
"""

from __future__ import annotations

from kafka.errors import SaslAuthenticationFailedError

from shared.kafka.clients import ClusterAuthenticationError

_MARKERS = (
    SaslAuthenticationFailedError.__name__,
    "code=_AUTHENTICATION,",
    "code=SASL_AUTHENTICATION_FAILED,",
)


def is_authentication_failure(exc: BaseException) -> bool:
    """True when ``exc``, or an exception it was raised from, is a refused login (SASL) or certificate (TLS)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ClusterAuthenticationError | SaslAuthenticationFailedError):
            return True
        if any(marker in str(current) for marker in _MARKERS):
            return True
        current = current.__cause__ or current.__context__
    return False
