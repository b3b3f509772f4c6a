"""The bundled public datasets as SPEC §3 events (see ../shared/data/README.md).

Each loader maps one dataset's rows faithfully and returns its events sorted by event
time, with customer ids namespaced by dataset (``cdnow-00002``, ``uci-12621``) so that
datasets replayed together never merge different people. Rows that cannot become an
event (no customer id, say) are counted by reason, never silently lost.
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

__all__ = ["DATASETS", "DatasetEvents", "load_dataset", "HILLSTROM_CAMPAIGN_START"]

UTC = timezone.utc
# Hillstrom gives no dates: the two-week campaign is placed here (assumption, documented).
HILLSTROM_CAMPAIGN_START = datetime(2008, 3, 3, 9, 0, tzinfo=UTC)
HILLSTROM_WINDOW = timedelta(days=14)


@dataclass
class DatasetEvents:
    name: str
    events: list[dict[str, Any]] = field(default_factory=list)
    """SPEC §3 event objects, sorted by event time."""
    ts_ms: list[int] = field(default_factory=list)
    """Event time of each event (parallel to ``events``), for ordering and bounds."""
    skipped: Counter[str] = field(default_factory=Counter)
    """Source rows that could not become events, by reason."""

    def add(self, ts: datetime, event: dict[str, Any]) -> None:
        self.ts_ms.append(int(ts.timestamp() * 1000))
        self.events.append(event)

    def sort(self) -> DatasetEvents:
        order = sorted(range(len(self.events)), key=self.ts_ms.__getitem__)  # stable: keeps source order
        self.events = [self.events[i] for i in order]
        self.ts_ms = [self.ts_ms[i] for i in order]
        return self


def _rfc3339(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _stable_fraction(text: str) -> float:
    """A deterministic number in [0, 1) from ``text`` (placement of undated events)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") / 2**64


def load_cdnow(path: Path) -> DatasetEvents:
    """CDNOW: one purchase per line (customer, date, number of CDs, dollar value)."""
    out = DatasetEvents("cdnow")
    per_day: Counter[tuple[str, str]] = Counter()
    with path.open() as fh:
        next(fh)  # header
        for line_no, line in enumerate(fh, start=2):
            parts = line.split()
            if len(parts) != 4:
                out.skipped["malformed_row"] += 1
                continue
            customer, day, cds, dollars = parts[0], parts[1], int(parts[2]), float(parts[3])
            if cds <= 0:
                out.skipped["no_items"] += 1
                continue
            # Dates only: purchases of one customer on one day are spaced a minute apart from noon.
            nth = per_day[(customer, day)]
            per_day[(customer, day)] += 1
            ts = datetime.strptime(day, "%Y%m%d").replace(tzinfo=UTC) + timedelta(hours=12, minutes=nth)
            out.add(ts, {
                "event_id": f"cdnow-{line_no}", "type": "purchase", "user_id": f"cdnow-{customer}",
                "ts": _rfc3339(ts), "order_id": f"cdnow-{line_no}",
                "items": [{"product_id": "cdnow-cd", "name": "CD", "quantity": cds, "price": round(dollars / cds, 4)}],
                "total": dollars, "currency": "USD",
            })
    return out.sort()


def load_uci(path: Path) -> DatasetEvents:
    """UCI Online Retail: invoice lines grouped into orders; ``C`` invoices become refunds.

    InvoiceDate is UK local time and is read as UTC. Lines without a CustomerID cannot
    be attributed and are skipped (counted); so are non-cancellation lines with a
    non-positive quantity (stock adjustments).
    """
    out = DatasetEvents("uci")
    invoices: dict[str, list[dict[str, str]]] = defaultdict(list)
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row["CustomerID"] in ("", "NA"):
                out.skipped["no_customer_id"] += 1
                continue
            cancel = row["InvoiceNo"].startswith("C")
            if not cancel and int(row["Quantity"]) <= 0:
                out.skipped["non_positive_quantity"] += 1
                continue
            invoices[row["InvoiceNo"]].append(row)
    first_seen: dict[str, tuple[datetime, str]] = {}
    for invoice, rows in invoices.items():
        head = rows[0]
        user = f"uci-{head['CustomerID'].split('.')[0]}"
        ts = datetime.strptime(head["InvoiceDate"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        items = [
            {"product_id": r["StockCode"], "name": r["Description"].strip() or None,
             "quantity": abs(int(r["Quantity"])), "price": float(r["UnitPrice"])}
            for r in rows
        ]
        for item in items:
            if item["name"] is None:
                del item["name"]
        total = round(sum(i["quantity"] * i["price"] for i in items), 2)
        out.add(ts, {
            "event_id": f"uci-{invoice}", "type": "refund" if invoice.startswith("C") else "purchase",
            "user_id": user, "ts": _rfc3339(ts), "order_id": invoice, "items": items,
            "total": total, "currency": "GBP",
        })
        if user not in first_seen or ts < first_seen[user][0]:
            first_seen[user] = (ts, head["Country"])
    for user, (ts, country) in first_seen.items():
        out.add(ts - timedelta(seconds=1), {
            "event_id": f"uci-profile-{user}", "type": "profile_update", "user_id": user,
            "ts": _rfc3339(ts - timedelta(seconds=1)), "attributes": {"country": country},
        })
    return out.sort()


def load_hillstrom(path: Path) -> DatasetEvents:
    """Hillstrom e-mail experiment: prior history as attributes, arms as `email_sent`.

    Visits (``page_view``) and conversions (``purchase`` of ``spend``) are placed at a
    deterministic point inside the two-week campaign window after the send.
    """
    out = DatasetEvents("hillstrom")
    start = HILLSTROM_CAMPAIGN_START
    with path.open(newline="") as fh:
        for i, row in enumerate(csv.DictReader(fh), start=1):
            user = f"hillstrom-{i:05d}"
            arm = row["segment"]
            attrs = {
                "recency_months": int(row["recency"]), "history_segment": row["history_segment"],
                "history_spend": float(row["history"]), "mens": row["mens"] == "1",
                "womens": row["womens"] == "1", "zip_code": row["zip_code"], "newbie": row["newbie"] == "1",
                "channel": row["channel"], "campaign_arm": arm,
            }
            profile_ts = start - timedelta(days=1)
            out.add(profile_ts, {"event_id": f"{user}-profile", "type": "profile_update", "user_id": user,
                                 "ts": _rfc3339(profile_ts), "attributes": attrs})
            sent = start + timedelta(seconds=int(_stable_fraction(f"{user}-send") * 3600))
            if arm != "No E-Mail":
                out.add(sent, {"event_id": f"{user}-sent", "type": "email_sent", "user_id": user,
                               "ts": _rfc3339(sent), "campaign_id": "hillstrom-2008",
                               "variant": "mens" if arm.startswith("Mens") else "womens"})
            if row["visit"] == "1" or row["conversion"] == "1":
                span = (HILLSTROM_WINDOW - timedelta(hours=2)).total_seconds()
                visit = sent + timedelta(seconds=int(_stable_fraction(f"{user}-visit") * span))
                out.add(visit, {"event_id": f"{user}-visit", "type": "page_view", "user_id": user,
                                "ts": _rfc3339(visit), "url": "/"})
                if row["conversion"] == "1":
                    bought = visit + timedelta(minutes=10)
                    spend = float(row["spend"])
                    out.add(bought, {
                        "event_id": f"{user}-order", "type": "purchase", "user_id": user, "ts": _rfc3339(bought),
                        "order_id": f"{user}-order",
                        "items": [{"product_id": "hillstrom-merchandise", "quantity": 1, "price": spend}],
                        "total": spend, "currency": "USD",
                    })
    return out.sort()


_REES46_TYPES = {"view": "product_view", "cart": "add_to_cart", "remove_from_cart": "remove_from_cart"}


def load_rees46(path: Path) -> DatasetEvents:
    """REES46: views, cart adds/removes (quantity 1) and purchases of single products."""
    out = DatasetEvents("rees46")
    with path.open(newline="") as fh:
        for row_no, row in enumerate(csv.DictReader(fh), start=2):
            ts = datetime.strptime(row["event_time"], "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=UTC)
            user = f"rees46-{row['user_id']}"
            product = {"product_id": row["product_id"], "price": float(row["price"])}
            if row["category_code"]:
                product["category"] = row["category_code"]
            base = {"event_id": f"rees46-{row_no}", "user_id": user, "ts": _rfc3339(ts)}
            kind = row["event_type"]
            if kind in _REES46_TYPES:
                quantity = {} if kind == "view" else {"quantity": 1}
                out.add(ts, {**base, "type": _REES46_TYPES[kind], **product, **quantity})
            elif kind == "purchase":
                out.add(ts, {**base, "type": "purchase", "order_id": f"rees46-{row_no}",
                             "items": [{**product, "quantity": 1}], "total": product["price"], "currency": "USD"})
            else:
                out.skipped["unknown_event_type"] += 1
    return out.sort()


def load_retailrocket(path: Path) -> DatasetEvents:
    """Retailrocket: views, cart adds and transactions; no prices (null) and no categories.

    Rows of one transaction id become one purchase; timestamps stay epoch milliseconds.
    Orders carry currency ``XXX`` (ISO 4217: no currency) as their amounts are unknown.
    """
    out = DatasetEvents("retailrocket")
    orders: dict[str, list[dict[str, str]]] = defaultdict(list)
    with path.open(newline="") as fh:
        for row_no, row in enumerate(csv.DictReader(fh), start=2):
            ms = int(row["timestamp"])
            ts = datetime.fromtimestamp(ms / 1000, tz=UTC)
            user = f"retailrocket-{row['visitorid']}"
            base = {"event_id": f"retailrocket-{row_no}", "user_id": user, "ts": ms}
            if row["event"] == "view":
                out.add(ts, {**base, "type": "product_view", "product_id": row["itemid"]})
            elif row["event"] == "addtocart":
                out.add(ts, {**base, "type": "add_to_cart", "product_id": row["itemid"], "quantity": 1, "price": None})
            elif row["event"] == "transaction":
                orders[row["transactionid"]].append(row)
            else:
                out.skipped["unknown_event_type"] += 1
    for transaction, rows in orders.items():
        ms = min(int(r["timestamp"]) for r in rows)
        order_id = transaction.split(".")[0]
        out.add(datetime.fromtimestamp(ms / 1000, tz=UTC), {
            "event_id": f"retailrocket-order-{order_id}", "type": "purchase",
            "user_id": f"retailrocket-{rows[0]['visitorid']}", "ts": ms, "order_id": order_id,
            "items": [{"product_id": r["itemid"], "quantity": 1, "price": None} for r in rows],
            "total": None, "currency": "XXX",
        })
    return out.sort()


DATASETS: dict[str, tuple[str, Callable[[Path], DatasetEvents]]] = {
    "cdnow": ("cdnow/CDNOW_master.txt", load_cdnow),
    "uci": ("uci_online_retail/online_retail_sample.csv", load_uci),
    "hillstrom": ("hillstrom/hillstrom.csv", load_hillstrom),
    "rees46": ("rees46/2019-Oct-head-sample.csv", load_rees46),
    "retailrocket": ("retailrocket/events_sample_1500visitors.csv", load_retailrocket),
}


def load_dataset(name: str, data_dir: Path, file: Path | None = None) -> DatasetEvents:
    """Load dataset ``name`` from ``data_dir`` (or from ``file``, e.g. a test slice)."""
    if name not in DATASETS:
        msg = f"unknown dataset {name!r} (known: {', '.join(DATASETS)})"
        raise ValueError(msg)
    relative, loader = DATASETS[name]
    path = file or data_dir / relative
    if not path.exists():
        msg = f"dataset file not found: {path} (set PULSE_DATA_DIR or --data-dir)"
        raise FileNotFoundError(msg)
    return loader(path)
