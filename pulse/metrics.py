"""Prometheus collectors (SPEC §10). Labels never carry customer ids or personal data."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

__all__ = [
    "EVENTS_IN", "DEAD_LETTERS", "DUPLICATES", "LATE_EVENTS", "KAFKA_ERRORS", "EVENT_TIME_LAG",
    "CUSTOMERS_IN_STATE", "PROFILES_WRITTEN", "PROFILES_STALE", "REDIS_WRITE_SECONDS",
    "REDIS_BATCH_SIZE", "REDIS_ERRORS", "MODEL_EXAMPLES", "MODEL_VERSION", "MODEL_ROC_AUC",
    "MODEL_LOG_LOSS", "serve_metrics",
]

EVENTS_IN = Counter("pulse_events_in", "Valid events consumed, by event type.", ["type"])
DEAD_LETTERS = Counter("pulse_dead_letters", "Messages sent to the dead-letter topic, by reason.", ["reason"])
DUPLICATES = Counter("pulse_duplicate_events", "Events dropped because their event_id was already applied.")
LATE_EVENTS = Counter("pulse_late_events", "Events older than the allowed lateness, counted and dropped.")
KAFKA_ERRORS = Counter("pulse_kafka_errors", "Errors reported by the Kafka consumer.")
EVENT_TIME_LAG = Gauge("pulse_event_time_lag_seconds", "Wall clock minus the newest event time consumed.")
CUSTOMERS_IN_STATE = Gauge("pulse_customers_in_state", "Customers held in this process's keyed state.")
PROFILES_WRITTEN = Counter("pulse_profiles_written", "Profile writes applied to Redis.")
PROFILES_STALE = Counter("pulse_profiles_stale", "Profile writes skipped: Redis already had a newer version.")
REDIS_WRITE_SECONDS = Histogram(
    "pulse_redis_write_seconds", "Latency of one pipelined profile batch write.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
REDIS_BATCH_SIZE = Histogram(
    "pulse_redis_batch_size", "Profiles per pipelined write (after coalescing).",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000),
)
REDIS_ERRORS = Counter("pulse_redis_errors", "Redis write attempts that failed (and were retried).")
MODEL_EXAMPLES = Counter("pulse_model_examples", "Labelled examples learned by the propensity model.", ["label"])
MODEL_VERSION = Gauge("pulse_model_version", "Examples learned by the propensity model so far.")
MODEL_ROC_AUC = Gauge("pulse_model_roc_auc", "Progressive-validation ROC AUC of purchasePropensity.")
MODEL_LOG_LOSS = Gauge("pulse_model_log_loss", "Progressive-validation log loss of purchasePropensity.")


def serve_metrics(port: int, host: str = "127.0.0.1") -> None:
    """Serve the default registry on ``http://host:port/metrics`` (background thread)."""
    start_http_server(port, addr=host)
