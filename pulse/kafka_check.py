"""Wait for Kafka before starting anything that would block on it without a timeout.

Bytewax's Kafka source lists partitions at start-up with no timeout, so an unreachable
broker would hang the worker beyond SIGTERM. Checking first, with retries and a
deadline, turns that into log lines and a clear error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

__all__ = ["KafkaUnavailable", "wait_for_kafka", "QUIET_CLIENT_CONFIG"]

logger = logging.getLogger(__name__)

QUIET_CLIENT_CONFIG = {"log.connection.close": False}
"""librdkafka otherwise logs every idle disconnect to stderr."""


class KafkaUnavailable(RuntimeError):
    """The brokers did not answer in time, or a required topic is missing."""


def wait_for_kafka(bootstrap_servers: str, topics: Iterable[str] = (), timeout: float = 60.0) -> None:
    """Return once the cluster answers and every topic in ``topics`` exists."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers, "log_level": 0, **QUIET_CLIENT_CONFIG})
    deadline = time.monotonic() + timeout
    delay = 0.5
    while True:
        try:
            existing = admin.list_topics(timeout=min(5.0, max(0.5, deadline - time.monotonic()))).topics
            break
        except KafkaException as exc:
            if time.monotonic() >= deadline:
                msg = f"cannot reach Kafka at {bootstrap_servers} within {timeout:.0f}s ({exc.args[0].str()})"
                raise KafkaUnavailable(msg) from None
            logger.warning("Kafka at %s not reachable yet; retrying in %.1fs", bootstrap_servers, delay)
            time.sleep(delay)
            delay = min(5.0, delay * 2)
    missing = sorted(set(topics) - set(existing))
    if missing:
        msg = (f"topic(s) {', '.join(missing)} do not exist on {bootstrap_servers} "
               "(create them, e.g. `pulse replay --create-topics`)")
        raise KafkaUnavailable(msg)
