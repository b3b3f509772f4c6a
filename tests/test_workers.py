"""Two Bytewax workers produce the same profiles as one (the state pickles across workers)."""

from pathlib import Path

import orjson
from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main

from config.settings import load_settings
from flows.datasets import load_dataset
from flows.personalize import RunOptions, build_flow
from flows.replay import merge_in_time_order

DATA = Path(__file__).parent / "data"
# Batching differs between runs, and with it the model's interleaving of learning and
# scoring; every customer fact, and the profile version, must not.
RUN_DEPENDENT = ("purchasePropensity", "propensityModelVersion", "propensityTopFeatures")


def final_profiles(workers: int) -> dict[str, dict]:
    datasets = [load_dataset("uci", DATA, DATA / "uci_online_retail_slice.csv"),
                load_dataset("rees46", DATA, DATA / "rees46_slice.csv")]
    messages = [KafkaSourceMessage(key=e["user_id"].encode(), value=orjson.dumps(e), topic="t", partition=0, offset=i)
                for i, (_, _, e) in enumerate(merge_in_time_order(datasets))]
    written: list = []
    flow = build_flow(load_settings(env={}), RunOptions(tail=False, end_of_input={d.name: d.ts_ms[-1] for d in datasets}),
                      source=TestingSource(messages, batch_size=50), dead_letter_sink=TestingSink([]),
                      profile_sink=TestingSink(written))
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
    newest: dict[str, object] = {}
    for write in written:
        if write.user_id not in newest or write.version > newest[write.user_id].version:
            newest[write.user_id] = write
    return {user: {k: v for k, v in orjson.loads(w.payload).items() if k not in RUN_DEPENDENT}
            for user, w in newest.items()}


def test_two_workers_match_one() -> None:
    one, two = final_profiles(1), final_profiles(2)
    assert len(one) == 289  # 5 UCI customers + 284 REES46 users in the slices
    assert one == two
