"""The `pulse` command: run the worker, replay datasets, read a profile, run the demo.

Heavy modules (Bytewax, River, Kafka clients) are imported inside the commands so that
``--help`` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

import orjson

from config.settings import ConfigError, Settings, load_settings

__all__ = ["main"]

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
DATASET_NAMES = ("cdnow", "uci", "hillstrom", "rees46", "retailrocket")


class UsageError(Exception):
    """Options that make no sense together; reported like an argparse error."""


def _data_dir(value: str | None) -> Path:
    return Path(value or os.environ.get("PULSE_DATA_DIR") or DEFAULT_DATA_DIR)


def _time_ms(text: str) -> int:
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        msg = f"not an RFC 3339 time: {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    ts = ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)
    return int(ts.timestamp() * 1000)


def _end_of_input(text: str) -> tuple[str, int]:
    prefix, sep, when = text.partition("=") if "=" in text else ("*", "", text)
    return prefix, _time_ms(when)


def _positive(kind: type) -> type:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if value <= 0:
            msg = f"must be a positive {'integer' if kind is int else 'number'}, got {text!r}"
            raise argparse.ArgumentTypeError(msg)
        return value

    parse.__name__ = kind.__name__
    return parse


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", help="TOML config file (default: $PULSE_CONFIG or config/pulse.toml)")


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="dataset folder (default: $PULSE_DATA_DIR or ../shared/data)")


def _datasets(values: list[str]) -> list[str]:
    return list(DATASET_NAMES) if "all" in values else list(dict.fromkeys(values))


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    root = argparse.ArgumentParser(
        prog="pulse",
        description="Pulse: real-time personalization features from Kafka tracking events to Redis profiles. "
                    "Settings come from config/pulse.toml, PULSE__<SECTION>__<KEY> variables, "
                    "KAFKA_BOOTSTRAP_SERVERS and REDIS_URL.",
    )
    sub = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run", help="run the worker (Bytewax dataflow)", formatter_class=fmt,
        description="Consume events from Kafka, keep per-customer state, write profiles to Redis. Runs until "
                    "SIGTERM/SIGINT, or to the end of every partition with --until-eof (then prints a summary).")
    _add_config(run)
    run.add_argument("-w", "--workers", type=_positive(int),
                     default=int(os.environ.get("BYTEWAX_WORKERS_PER_PROCESS", 1)),
                     help="worker threads in this process")
    run.add_argument("-i", "--process-id", type=int, default=None,
                     help="this process's index in a multi-process cluster (needs -a)")
    run.add_argument("-a", "--addresses", default=None,
                     help="';'-separated host:port of every cluster process, in process order")
    run.add_argument("-r", "--recovery-dir", type=Path, default=os.environ.get("BYTEWAX_RECOVERY_DIRECTORY"),
                     help="recovery store directory (created on first use); enables resume after a crash")
    run.add_argument("--recovery-partitions", type=_positive(int), default=4,
                     help="partitions of a new recovery store: at least the most workers you will ever run")
    run.add_argument("-s", "--snapshot-interval", type=_positive(float), default=None,
                     help="seconds between snapshots (with -r; default 10)")
    run.add_argument("-b", "--backup-interval", type=float, default=None,
                     help="seconds old snapshots are kept for delayed backups of the store (with -r; default 0)")
    run.add_argument("--until-eof", action="store_true",
                     help="stop at the end of every partition (backfills; timers follow event time only)")
    run.add_argument("--end-of-input", type=_end_of_input, action="append", default=[], metavar="[PREFIX=]TIME",
                     help="with --until-eof: event time the customer clocks reach at the end, per customer-id "
                          "prefix (e.g. uci=2011-12-09T12:50:00Z); repeatable")
    run.add_argument("--metrics-port", type=int, default=None,
                     help="Prometheus port (default: metrics.port + process id; 0 disables)")

    rep = sub.add_parser(
        "replay", help="replay datasets into the events topic", formatter_class=fmt,
        description="Turn bundled datasets into SPEC events and produce them, keyed by customer id "
                    "(namespaced: cdnow-00002, uci-12621, ...), in event-time order; prints a JSON report.")
    _add_config(rep)
    rep.add_argument("datasets", nargs="+", choices=[*DATASET_NAMES, "all"], metavar="DATASET",
                     help=f"one or more of: {', '.join(DATASET_NAMES)}, all")
    _add_data_dir(rep)
    pace = rep.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=_positive(float),
                      help="event-time seconds played per wall second (e.g. 3600 = an hour a second)")
    pace.add_argument("--fast", action="store_true", help="as fast as the broker takes it (the default)")
    rep.add_argument("--since", type=_time_ms, help="first event time to replay (RFC 3339)")
    rep.add_argument("--until", type=_time_ms, help="replay events before this time (RFC 3339)")
    rep.add_argument("--create-topics", action="store_true", help="create missing topics first")

    prof = sub.add_parser(
        "profile", help="print a customer's profile JSON from Redis", formatter_class=fmt,
        description="Print the render-ready profile a dispatch system would read for USER_ID "
                    "(ids are namespaced by source, e.g. cdnow-00002, uci-12621). Exit 1 if there is none.")
    _add_config(prof)
    prof.add_argument("user_id", metavar="USER_ID", help="customer id, e.g. uci-12621")

    demo = sub.add_parser(
        "demo", help="end-to-end demo on the real datasets", formatter_class=fmt,
        description="Start a private broker and Redis (unless KAFKA_BOOTSTRAP_SERVERS / REDIS_URL are set), "
                    "replay the datasets, run the flow to the end, print a summary, stop what it started.")
    _add_config(demo)
    _add_data_dir(demo)
    demo.add_argument("--datasets", nargs="+", choices=[*DATASET_NAMES, "all"], default=["all"],
                      metavar="DATASET", help=f"datasets to replay: {', '.join(DATASET_NAMES)}, all")
    demo.add_argument("-w", "--workers", type=_positive(int), default=1, help="worker threads")
    return root


def _check_run_options(args: argparse.Namespace) -> None:
    if args.end_of_input and not args.until_eof:
        msg = "--end-of-input only applies with --until-eof"
        raise UsageError(msg)
    if args.recovery_dir is None and (args.snapshot_interval is not None or args.backup_interval is not None):
        msg = "-s/--snapshot-interval and -b/--backup-interval need -r/--recovery-dir"
        raise UsageError(msg)
    if (args.process_id is None) != (args.addresses is None):
        msg = "-i/--process-id and -a/--addresses go together"
        raise UsageError(msg)


def _cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    from operators.segments import SegmentRules
    from pulse.kafka_check import wait_for_kafka
    from pulse.metrics import serve_metrics
    from pulse.runner import WorkerOptions, run_summary, run_workers

    _check_run_options(args)
    SegmentRules.load(settings.rules_path)  # fail on bad rules before opening anything
    wait_for_kafka(settings.kafka.bootstrap_servers, [settings.kafka.events_topic],
                   settings.kafka.connect_timeout_seconds)
    port = args.metrics_port if args.metrics_port is not None else (
        settings.metrics.port + (args.process_id or 0) if settings.metrics.port else 0)
    if port:
        try:
            serve_metrics(port, settings.metrics.host)
        except OSError as exc:
            msg = f"cannot serve metrics on {settings.metrics.host}:{port} ({exc.strerror}); " \
                  "set --metrics-port or PULSE__METRICS__PORT (0 disables)"
            raise UsageError(msg) from None
        logging.getLogger("pulse").info("metrics on http://%s:%d/metrics", settings.metrics.host, port)
    workers = WorkerOptions(
        workers=args.workers, process_id=args.process_id,
        addresses=args.addresses.split(";") if args.addresses else None,
        recovery_dir=Path(args.recovery_dir) if args.recovery_dir else None,
        recovery_partitions=args.recovery_partitions,
        snapshot_seconds=args.snapshot_interval or 10.0, backup_seconds=args.backup_interval or 0.0,
    )
    from flows.personalize import RunOptions

    run_workers(settings, RunOptions(tail=not args.until_eof, end_of_input=dict(args.end_of_input)), workers)
    if args.until_eof:
        print(orjson.dumps(run_summary(), option=orjson.OPT_INDENT_2).decode())
    return 0


def _cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    from flows.datasets import load_dataset
    from flows.replay import ensure_topics, make_producer, replay
    from pulse.kafka_check import wait_for_kafka

    if args.since is not None and args.until is not None and args.since >= args.until:
        msg = "--since must be before --until"
        raise UsageError(msg)
    k = settings.kafka
    loaded = [load_dataset(name, _data_dir(args.data_dir)) for name in _datasets(args.datasets)]
    wait_for_kafka(k.bootstrap_servers, [] if args.create_topics else [k.events_topic], k.connect_timeout_seconds)
    if args.create_topics:
        ensure_topics(k.bootstrap_servers, {k.events_topic: k.partitions, k.dead_letter_topic: 1})
    report = replay(loaded, make_producer(k.bootstrap_servers), k.events_topic, speed=args.speed,
                    since_ms=args.since, until_ms=args.until)
    print(orjson.dumps({
        "topic": k.events_topic, "produced": dict(report.produced), "acknowledged": report.acknowledged,
        "delivery_errors": report.delivery_errors,
        "skipped_source_rows": {n: dict(c) for n, c in report.skipped.items() if c},
        "last_event_time": {n: datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat()
                            for n, ms in report.last_ts_ms.items()},
        "seconds": round(report.seconds, 2),
    }, option=orjson.OPT_INDENT_2).decode())
    return 1 if report.delivery_errors else 0


def _cmd_profile(settings: Settings, args: argparse.Namespace) -> int:
    import redis

    from state.client import ProfileClient

    try:
        profile = ProfileClient.from_url(settings.redis.url, settings.redis.key_prefix).get(args.user_id)
    except redis.RedisError as exc:
        msg = f"cannot read from Redis at {settings.redis.url}: {exc}"
        raise redis.ConnectionError(msg) from None
    if profile is None:
        print(f"no profile for {args.user_id!r} under prefix {settings.redis.key_prefix!r}", file=sys.stderr)
        return 1
    print(orjson.dumps(profile, option=orjson.OPT_INDENT_2).decode())
    return 0


def _cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from operators.segments import SegmentRules
    from pulse.demo import run_demo

    SegmentRules.load(settings.rules_path)  # fail on bad rules before starting services
    summary = run_demo(settings, _data_dir(args.data_dir), _datasets(args.datasets), workers=args.workers)
    lost = summary["produced"] - summary["events_in"] - sum(summary["dead_lettered_by_reason"].values())
    if lost:
        print(f"pulse: {lost} produced events were not consumed", file=sys.stderr)
    return 1 if lost else 0


def _operator_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """(usage errors -> exit 2, runtime errors -> exit 1) whose message is meant for the operator."""
    import redis
    from bytewax.errors import BytewaxRuntimeError

    from operators.segments import RulesError
    from pulse.kafka_check import KafkaUnavailable

    usage = (ConfigError, RulesError, UsageError, FileNotFoundError)
    runtime = (KafkaUnavailable, redis.ConnectionError, redis.TimeoutError, BytewaxRuntimeError)
    return usage, runtime


def _root_cause(exc: BaseException) -> BaseException:
    """The first error under Bytewax's wrappers (they only say which step failed)."""
    from bytewax.errors import BytewaxRuntimeError

    while isinstance(exc, BytewaxRuntimeError) and exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    os.environ.setdefault("RUST_BACKTRACE", "0")  # a failing step already says why, in Python
    logging.basicConfig(level=os.environ.get("PULSE_LOG_LEVEL", "INFO"),
                        format='{"ts":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s","msg":"%(message)s"}')
    command = {"run": _cmd_run, "replay": _cmd_replay, "profile": _cmd_profile, "demo": _cmd_demo}
    try:
        settings = load_settings(args.config)
        return command[args.command](settings, args)
    except Exception as exc:  # noqa: BLE001 - only operator-facing errors are caught below
        usage, runtime = _operator_errors()
        if not isinstance(exc, usage + runtime):
            raise
        cause = _root_cause(exc)
        detail = str(exc) if cause is exc else f"{type(cause).__name__}: {cause}"
        print(f"pulse {args.command}: {detail}", file=sys.stderr)
        return 2 if isinstance(exc, usage) else 1

if __name__ == "__main__":
    sys.exit(main())
