"""The `pulse` command: run the worker, replay datasets, read a profile, run the demo."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

import orjson

from config.settings import ConfigError, Settings, load_settings
from flows.datasets import DATASETS, load_dataset
from flows.personalize import RunOptions
from flows.replay import ensure_topics, make_producer, replay
from operators.segments import RulesError

__all__ = ["main"]

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"


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
    prefix, sep, when = text.rpartition("=")
    return (prefix if sep else "*"), _time_ms(when)


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", help="TOML config file (default: $PULSE_CONFIG or config/pulse.toml)")


def _parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="pulse",
        description="Pulse: real-time personalization features from Kafka tracking events to Redis profiles.",
    )
    sub = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the worker (Bytewax dataflow)",
                         description="Consume events from Kafka, keep per-customer state, write profiles to Redis. "
                                     "Runs until SIGTERM/SIGINT, or to the end of every partition with --until-eof.")
    _add_config(run)
    run.add_argument("-w", "--workers", type=int, default=int(os.environ.get("BYTEWAX_WORKERS_PER_PROCESS", 1)),
                     help="worker threads in this process (default 1)")
    run.add_argument("-i", "--process-id", type=int, default=None, help="this process's index in a cluster")
    run.add_argument("-a", "--addresses", default=None,
                     help="';'-separated host:port of every cluster process, in process order")
    run.add_argument("-r", "--recovery-dir", type=Path, default=os.environ.get("BYTEWAX_RECOVERY_DIRECTORY"),
                     help="recovery store directory (initialised on first use); enables resume after a crash")
    run.add_argument("--recovery-partitions", type=int, default=4,
                     help="partitions of a new recovery store: at least the most workers you will ever run")
    run.add_argument("-s", "--snapshot-interval", type=float, default=10.0, help="seconds between snapshots")
    run.add_argument("-b", "--backup-interval", type=float, default=0.0,
                     help="seconds old snapshots are kept (for delayed backups of the store)")
    run.add_argument("--until-eof", action="store_true", help="stop at the end of every partition (backfills)")
    run.add_argument("--end-of-input", type=_end_of_input, action="append", default=[], metavar="[PREFIX=]TIME",
                     help="with --until-eof: event time the customer clocks reach at the end "
                          "(per customer-id prefix, e.g. uci=2011-12-09T12:50:00Z)")
    run.add_argument("--metrics-port", type=int, default=None, help="Prometheus port (default: metrics.port + process id)")

    rep = sub.add_parser("replay", help="replay a dataset into the events topic",
                         description="Turn a bundled dataset into SPEC events and produce them, keyed by "
                                     "customer id, in event-time order.")
    _add_config(rep)
    rep.add_argument("datasets", nargs="+", choices=[*DATASETS, "all"], metavar="DATASET",
                     help=f"one or more of: {', '.join(DATASETS)}, all")
    rep.add_argument("--data-dir", help="dataset folder (default: $PULSE_DATA_DIR or ../shared/data)")
    pace = rep.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, help="event-time seconds played per wall second (e.g. 3600)")
    pace.add_argument("--fast", action="store_true", help="as fast as possible (the default)")
    rep.add_argument("--since", type=_time_ms, help="first event time to replay (RFC 3339)")
    rep.add_argument("--until", type=_time_ms, help="replay events before this time (RFC 3339)")
    rep.add_argument("--create-topics", action="store_true", help="create missing topics first")

    prof = sub.add_parser("profile", help="print a customer's profile JSON from Redis",
                          description="Read the render-ready profile a dispatch system would read.")
    _add_config(prof)
    prof.add_argument("user_id", metavar="USER_ID")

    demo = sub.add_parser("demo", help="end-to-end demo on the real datasets",
                          description="Start a private broker and Redis (unless KAFKA_BOOTSTRAP_SERVERS / REDIS_URL "
                                      "are set), replay the datasets, run the flow to the end, print a summary.")
    _add_config(demo)
    demo.add_argument("--data-dir", help="dataset folder (default: $PULSE_DATA_DIR or ../shared/data)")
    demo.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    demo.add_argument("-w", "--workers", type=int, default=1)
    return root


def _cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    from pulse.metrics import serve_metrics
    from pulse.runner import WorkerOptions, run_workers

    port = args.metrics_port if args.metrics_port is not None else (
        settings.metrics.port + (args.process_id or 0) if settings.metrics.port else 0)
    if port:
        serve_metrics(port, settings.metrics.host)
        logging.info("metrics on http://%s:%d/metrics", settings.metrics.host, port)
    workers = WorkerOptions(
        workers=args.workers, process_id=args.process_id,
        addresses=args.addresses.split(";") if args.addresses else None,
        recovery_dir=Path(args.recovery_dir) if args.recovery_dir else None,
        recovery_partitions=args.recovery_partitions,
        snapshot_seconds=args.snapshot_interval, backup_seconds=args.backup_interval,
    )
    run_workers(settings, RunOptions(tail=not args.until_eof, end_of_input=dict(args.end_of_input)), workers)
    return 0


def _cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    names = list(DATASETS) if "all" in args.datasets else list(dict.fromkeys(args.datasets))
    k = settings.kafka
    if args.create_topics:
        ensure_topics(k.bootstrap_servers, {k.events_topic: k.partitions, k.dead_letter_topic: 1})
    loaded = [load_dataset(name, _data_dir(args.data_dir)) for name in names]
    report = replay(loaded, make_producer(k.bootstrap_servers), k.events_topic, speed=args.speed,
                    since_ms=args.since, until_ms=args.until)
    print(orjson.dumps({
        "topic": k.events_topic, "produced": dict(report.produced), "delivery_errors": report.delivery_errors,
        "skipped_source_rows": {n: dict(c) for n, c in report.skipped.items() if c},
        "last_event_time": {n: datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat()
                            for n, ms in report.last_ts_ms.items()},
        "seconds": round(report.seconds, 2),
    }, option=orjson.OPT_INDENT_2).decode())
    return 1 if report.delivery_errors else 0


def _cmd_profile(settings: Settings, args: argparse.Namespace) -> int:
    from state.client import ProfileClient

    profile = ProfileClient.from_url(settings.redis.url, settings.redis.key_prefix).get(args.user_id)
    if profile is None:
        print(f"no profile for {args.user_id!r} under prefix {settings.redis.key_prefix!r}", file=sys.stderr)
        return 1
    print(orjson.dumps(profile, option=orjson.OPT_INDENT_2).decode())
    return 0


def _cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from pulse.demo import run_demo

    summary = run_demo(settings, _data_dir(args.data_dir), args.datasets, workers=args.workers)
    return 0 if summary["events_in"] + sum(summary["dead_lettered_by_reason"].values()) == summary["produced"] else 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=os.environ.get("PULSE_LOG_LEVEL", "INFO"),
                        format='{"ts":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s","msg":"%(message)s"}')
    try:
        settings = load_settings(args.config)
        command = {"run": _cmd_run, "replay": _cmd_replay, "profile": _cmd_profile, "demo": _cmd_demo}
        return command[args.command](settings, args)
    except (ConfigError, RulesError, FileNotFoundError) as exc:
        print(f"pulse: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
