"""Timers through Bytewax: live (wall clock) and at end of a bounded replay, no new event needed."""

import time
from datetime import timedelta
from pathlib import Path

import orjson
from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.testing import TestingSource, TestingSink, run_main

from config.settings import load_settings
from flows.personalize import RunOptions, build_flow
from operators.customer import profile_version

RULES = '[segments.cart_abandoner]\nwhen = "cart_items > 0 and since(cart_updated) >= 2s"\n'


def message(offset: int, event: dict) -> KafkaSourceMessage:
    return KafkaSourceMessage(key=event["user_id"].encode(), value=orjson.dumps(event), topic="t",
                              partition=0, offset=offset)


def cart_add(user: str, ts_ms: int) -> dict:
    return {"event_id": f"{user}-1", "type": "add_to_cart", "user_id": user, "ts": ts_ms,
            "product_id": "p", "quantity": 1, "price": 4.0}


def test_wall_clock_timer_fires_with_no_new_event(tmp_path: Path) -> None:
    (tmp_path / "rules.toml").write_text(RULES)
    settings = load_settings(env={}).replace(clock={"mode": "wall"}, segments={"rules_file": str(tmp_path / "rules.toml")})
    now = int(time.time() * 1000)
    source = TestingSource([message(0, cart_add("live-1", now)), TestingSource.PAUSE(timedelta(seconds=3.5))])
    written: list = []
    run_main(build_flow(settings, RunOptions(), source=source, dead_letter_sink=TestingSink([]),
                        profile_sink=TestingSink(written)))
    assert [w.segments for w in written] == [(), ("cart_abandoner",)]
    assert written[1].version > written[0].version


def test_end_of_input_moves_the_event_clock(tmp_path: Path) -> None:
    (tmp_path / "rules.toml").write_text(RULES)
    settings = load_settings(env={}).replace(segments={"rules_file": str(tmp_path / "rules.toml")})
    t0 = 1_300_000_000_000
    events = [message(0, cart_add("shop-1", t0)), message(1, cart_add("other-1", t0))]
    written: list = []
    options = RunOptions(tail=False, end_of_input={"shop": t0 + 2000})  # "other" has no end time
    run_main(build_flow(settings, options, source=TestingSource(events), dead_letter_sink=TestingSink([]),
                        profile_sink=TestingSink(written)))
    final = {w.user_id: w for w in written}
    assert final["shop-1"].segments == ("cart_abandoner",) and final["shop-1"].version == profile_version(t0 + 2000, 1)
    assert final["other-1"].segments == () and final["other-1"].version == profile_version(t0, 1)
