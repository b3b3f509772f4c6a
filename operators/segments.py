"""Segment definitions from the rules file, and their evaluation over a customer's facts.

The rules file is TOML (``[segments.NAME]`` with ``when`` and ``description``). Loading
compiles every expression against the names a customer context provides, and a bad
rule fails at start-up with ``file:line``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from operators.events import EVENT_TYPES
from operators.rules import NOW, Node, Rule, RuleSyntaxError, compile_rule
from state.windows import WINDOWS

__all__ = ["RulesError", "Segment", "SegmentRules", "TIMESTAMP_NAMES", "VALUE_NAMES", "resolve_name", "rule_context"]

TIMESTAMP_NAMES = frozenset({
    "first_seen", "last_seen", "last_purchase", "last_email_open", "last_email_click", "cart_updated",
})
"""Epoch-ms facts usable in ``since(...)``."""
VALUE_NAMES = {
    **dict.fromkeys(("ltv", "orders", "aov", "revenue", "refunded", "cart_items", "cart_value",
                     "purchase_propensity", "churn_risk"), "number"),
    "preferred_category": "string", "currency": "string", "sendable": "bool",
}
"""Scalar facts rules may read, with their kind."""
_COUNT_NAME = re.compile(r"^count_(?P<window>[0-9]+[a-z])_(?P<type>[a-z_]+)$")
_SEGMENT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def resolve_name(name: str) -> tuple[Node, str] | None:
    """(accessor over a `rule_context`, kind) for a name rules may use; None if unknown."""
    if name in VALUE_NAMES:
        return (lambda ctx: ctx.get(name)), VALUE_NAMES[name]
    if name in TIMESTAMP_NAMES:
        return (lambda ctx: ctx.get(name)), "timestamp"
    if name.startswith("attributes.") and len(name) > len("attributes."):
        key = name[len("attributes."):]
        return (lambda ctx: ctx["attributes"].get(key)), "any"
    match = _COUNT_NAME.match(name)
    if match is None or match["window"] not in WINDOWS or match["type"] not in (*EVENT_TYPES, "all"):
        return None
    window, kind = match["window"], match["type"]
    if kind == "all":
        return (lambda ctx: sum(ctx["counts"][window].values())), "number"
    return (lambda ctx: ctx["counts"][window].get(kind, 0)), "number"


class RulesError(ValueError):
    """The rules file is invalid; the message starts with ``path:line``."""


@dataclass(frozen=True)
class Segment:
    name: str
    description: str
    rule: Rule


class SegmentRules:
    """All segments of a rules file, evaluated together."""

    def __init__(self, segments: Iterable[Segment]) -> None:
        self.segments = tuple(segments)
        self.time_thresholds = tuple(sorted({t for s in self.segments for t in s.rule.time_thresholds}))
        self.count_windows = tuple(sorted({
            match["window"] for s in self.segments for name in s.rule.names if (match := _COUNT_NAME.match(name))
        }))
        """Windows whose counts some rule reads: as they slide, those rules may flip."""

    @classmethod
    def load(cls, path: str | Path) -> SegmentRules:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            msg = f"{path}: cannot read rules file ({exc.strerror})"
            raise RulesError(msg) from None
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            msg = f"{path}: {exc}"
            raise RulesError(msg) from None
        unknown = set(raw) - {"segments"}
        if unknown:
            msg = f"{path}:{_line_of(text, sorted(unknown)[0])}: unknown top-level key {sorted(unknown)[0]!r}"
            raise RulesError(msg)
        segments = []
        for name, body in raw.get("segments", {}).items():
            line = _header_line(text, name)
            where = f"{path}:{line}: segment {name!r}"
            if not _SEGMENT_NAME.match(name):
                msg = f"{where}: name must be lower_snake_case (a-z, 0-9, _)"
                raise RulesError(msg)
            if not isinstance(body, dict) or not isinstance(body.get("when"), str):
                msg = f"{where}: needs a string `when = \"...\"`"
                raise RulesError(msg)
            extra = set(body) - {"when", "description"}
            if extra:
                msg = f"{where}: unknown key {sorted(extra)[0]!r} (allowed: when, description)"
                raise RulesError(msg)
            try:
                rule = compile_rule(body["when"], resolve_name)
            except RuleSyntaxError as exc:
                error_line, column = _locate(text, _line_of(text, "when", after=line), body["when"], exc.column)
                msg = f"{path}:{error_line}: segment {name!r}: column {column}: {exc.message}"
                raise RulesError(msg) from None
            segments.append(Segment(name, str(body.get("description", "")), rule))
        return cls(segments)

    def evaluate(self, context: dict[str, Any]) -> list[str]:
        """Names of the segments the customer is in (rules file order)."""
        return [s.name for s in self.segments if s.rule.evaluate(context)]

    def next_flip_ms(self, timestamps: dict[str, int | None], now_ms: int) -> int | None:
        """Earliest time after ``now_ms`` at which a ``since()`` rule may change its answer."""
        due = None
        for name, offset in self.time_thresholds:
            ts = timestamps.get(name)
            if ts is not None and ts + offset > now_ms and (due is None or ts + offset < due):
                due = ts + offset
        return due


def rule_context(facts: dict[str, Any], now_ms: int, **scores: float | None) -> dict[str, Any]:
    """What rules read: a customer's facts (see `operators.customer`), the time and scores."""
    return {**facts, NOW: now_ms, **scores}


def _locate(text: str, when_line: int, expression: str, column: int) -> tuple[int, int]:
    """File line and column of ``column`` (1-based) of an expression starting on ``when_line``.

    A multi-line (triple-quoted) rule starts on the line after ``when = \"\"\"``.
    """
    raw = text.splitlines()[when_line - 1].rstrip()
    first_line = when_line + 1 if raw.endswith(('"""', "'''")) else when_line
    before = expression[: column - 1]
    return first_line + before.count("\n"), column - (before.rfind("\n") + 1)


def _header_line(text: str, name: str) -> int:
    """1-based line of ``[segments.NAME]``, however it is spaced or quoted (else 1)."""
    header = re.compile(r"^\s*\[\s*segments\s*\.\s*(?:\"" + re.escape(name) + r"\"|'" + re.escape(name)
                        + r"'|" + re.escape(name) + r")\s*\]")
    return next((n for n, line in enumerate(text.splitlines(), start=1) if header.match(line)), 1)


def _line_of(text: str, needle: str, after: int = 0) -> int:
    """1-based line of the first line (after line ``after``) that starts with ``needle``."""
    for number, line in enumerate(text.splitlines(), start=1):
        if number > after and line.strip().startswith(needle):
            return number
    return after or 1
