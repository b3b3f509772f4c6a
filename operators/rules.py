"""A small, safe expression language for segment rules (SPEC §7). No `eval`.

Grammar (lowest precedence first)::

    expr       := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | comparison
    comparison := value [ cmp value | ["not"] "in" list | "between" value "and" value ]
    value      := number | duration | string | true | false | null | name
                | "since" "(" name ")" | "(" expr ")" | list
    cmp        := "==" | "!=" | "<" | "<=" | ">" | ">="

Durations (``90s 15m 1h 7d 2w``) and ``since(x)`` (now minus the timestamp ``x``) are in
milliseconds. A comparison with an unknown (null) side is false. Compiled rules are
closures over a context dict; `Rule.time_thresholds` lists the ``since(x) <op> duration``
atoms so callers can wake a customer exactly when such a rule may flip.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["RuleSyntaxError", "Rule", "compile_rule", "NOW", "Node", "Resolver"]

NOW = "__now__"
"""Context key holding the evaluation time (epoch ms) for ``since``."""

Context = dict[str, Any]
Node = Callable[[Context], Any]
Resolver = Callable[[str], "tuple[Node, str] | None"]
"""name -> (accessor, kind) with kind number | string | bool | timestamp | any; None if unknown."""

_DURATION_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}
_TOKEN = re.compile(
    r"""\s*(?:
      (?P<duration>\d+(?:\.\d+)?[smhdw])(?![\w.])
    | (?P<number>-?\d+(?:\.\d+)?)(?![\w.])
    | (?P<string>"[^"\\]*"|'[^'\\]*')
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)
    | (?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,)
    )""",
    re.VERBOSE,
)
_BAD_DURATION = re.compile(r"-?\d+(?:\.\d+)?([A-Za-z_]\w*)")
_LITERALS = ("number", "duration", "string")
_KEYWORDS = {"and", "or", "not", "in", "between", "since", "true", "false", "null"}
_COMPARE = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
# For `since(x) OP d`: the offsets after x + d at which the comparison flips.
_FLIP_OFFSETS = {"<": (0,), ">=": (0,), "<=": (1,), ">": (1,), "==": (0, 1), "!=": (0, 1)}
_MIRROR = {"<": ">", ">": "<", "<=": ">=", ">=": "<=", "==": "==", "!=": "!="}


class RuleSyntaxError(ValueError):
    """A rule expression is invalid; ``column`` is 1-based within the expression."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(f"column {column}: {message}")
        self.message = message
        self.column = column


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # duration | number | string | name | op | keyword | end
    text: str
    column: int


@dataclass(frozen=True, slots=True)
class _Value:
    """A parsed operand: its node, its kind, where it starts, and ``x`` if it is ``since(x)``."""

    node: Node
    kind: str  # number | string | bool | timestamp | null | any
    column: int
    since: str | None = None


def _check_comparable(a: _Value, b: _Value) -> None:
    """Reject comparisons that could never be true (a number with a string, say)."""
    kinds = {"timestamp": "number"}
    ka, kb = kinds.get(a.kind, a.kind), kinds.get(b.kind, b.kind)
    if ka != kb and "any" not in (ka, kb) and "null" not in (ka, kb):
        raise RuleSyntaxError(f"cannot compare a {a.kind} with a {b.kind}", b.column)


@dataclass(frozen=True)
class Rule:
    """A compiled rule: ``evaluate(ctx)`` is true or false, never raises on missing values."""

    source: str
    evaluate: Node
    time_thresholds: tuple[tuple[str, int], ...]
    """(timestamp name, offset ms): the rule may flip at ``ctx[name] + offset``."""
    names: frozenset[str]
    """Every name the rule reads."""


def _tokenize(text: str) -> list[_Token]:
    tokens, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            column = pos + len(text[pos:]) - len(text[pos:].lstrip()) + 1
            unit = _BAD_DURATION.match(text, column - 1)
            msg = (f"unknown duration unit {unit.group(1)!r} (use s, m, h, d or w)" if unit
                   else f"unexpected character {text[column - 1]!r}")
            raise RuleSyntaxError(msg, column)
        group = match.lastgroup or ""
        value = match.group(group)
        kind = "keyword" if group == "name" and value in _KEYWORDS else group
        tokens.append(_Token(kind, value, match.start(group) + 1))
        pos = match.end()
    tokens.append(_Token("end", "", len(text) + 1))
    return tokens


class _Parser:
    def __init__(self, text: str, resolve: Resolver) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0
        self.resolve = resolve
        self.names: set[str] = set()
        self.thresholds: list[tuple[str, int]] = []

    # -- token helpers -----------------------------------------------------------------

    def peek(self) -> _Token:
        return self.tokens[self.pos]

    def take(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def accept(self, text: str) -> bool:
        token = self.peek()
        if token.kind in ("op", "keyword") and token.text == text:
            self.pos += 1
            return True
        return False

    def expect(self, text: str) -> None:
        if not self.accept(text):
            self.fail(f"expected {text!r}")

    def fail(self, message: str) -> None:
        token = self.peek()
        found = "end of rule" if token.kind == "end" else repr(token.text)
        raise RuleSyntaxError(f"{message}, found {found}", token.column)

    # -- grammar -----------------------------------------------------------------------

    def parse(self) -> Node:
        node = self.expr()
        if self.peek().kind != "end":
            self.fail("expected 'and', 'or' or the end of the rule")
        return node

    def expr(self) -> Node:
        parts = [self.and_expr()]
        while self.accept("or"):
            parts.append(self.and_expr())
        return _fold(parts, lambda a, b: lambda ctx: a(ctx) or b(ctx))

    def and_expr(self) -> Node:
        parts = [self.not_expr()]
        while self.accept("and"):
            parts.append(self.not_expr())
        return _fold(parts, lambda a, b: lambda ctx: a(ctx) and b(ctx))

    def not_expr(self) -> Node:
        if self.accept("not"):
            inner = self.not_expr()
            return lambda ctx: not inner(ctx)
        return self.comparison()

    def comparison(self) -> Node:
        left = self.value()
        token = self.peek()
        if token.kind == "op" and token.text in _COMPARE:
            self.take()
            right = self.value()
            _check_comparable(left, right)
            self._note_threshold(left.since, token.text, right.node)
            self._note_threshold(right.since, _MIRROR[token.text], left.node)
            compare, lhs, rhs = _COMPARE[token.text], left.node, right.node
            if "null" in (left.kind, right.kind):
                if token.text not in ("==", "!="):
                    raise RuleSyntaxError("null can only be compared with == or !=", token.column)
                return lambda ctx: compare(lhs(ctx), rhs(ctx))  # an explicit test for unknown
            return lambda ctx: _null_safe(compare, lhs(ctx), rhs(ctx))
        negate = False
        if token.kind == "keyword" and token.text == "not" and self.tokens[self.pos + 1].text == "in":
            self.take()
            negate = True
        if self.accept("in"):
            members = self.list_literal(left)
            lhs = left.node
            return lambda ctx: (v := lhs(ctx)) is not None and ((v in members) != negate)
        if self.accept("between"):
            low = self.value()
            self.expect("and")
            high = self.value()
            _check_comparable(left, low)
            _check_comparable(left, high)
            self._note_threshold(left.since, ">=", low.node)
            self._note_threshold(left.since, "<=", high.node)
            lhs, lo, hi = left.node, low.node, high.node
            return lambda ctx: _between(lhs(ctx), lo(ctx), hi(ctx))
        if left.kind not in ("bool", "any"):
            raise RuleSyntaxError(f"a {left.kind} is not a condition: compare it (e.g. `> 0`)", left.column)
        node = left.node
        return lambda ctx: bool(node(ctx))

    def value(self) -> _Value:
        token = self.take()
        col = token.column
        if token.kind == "number":
            return _Value(_const(float(token.text) if "." in token.text else int(token.text)), "number", col)
        if token.kind == "duration":
            return _Value(_const(_duration_ms(token.text)), "number", col)
        if token.kind == "string":
            return _Value(_const(token.text[1:-1]), "string", col)
        if token.kind == "keyword" and token.text in ("true", "false", "null"):
            literal = {"true": True, "false": False, "null": None}[token.text]
            return _Value(_const(literal), "null" if literal is None else "bool", col)
        if token.kind == "keyword" and token.text == "since":
            self.expect("(")
            name_token = self.peek()
            name, kind, _ = self.name()
            if kind != "timestamp":
                raise RuleSyntaxError(f"since() needs a timestamp name, {name!r} is a {kind}", name_token.column)
            self.expect(")")
            return _Value(lambda ctx: None if (ts := ctx.get(name)) is None else ctx[NOW] - ts, "number", col, name)
        if token.kind == "name":
            self.pos -= 1
            _, kind, node = self.name()
            return _Value(node, kind, col)
        if token.kind == "op" and token.text == "(":
            inner = self.expr()
            self.expect(")")
            return _Value(inner, "bool", col)
        self.pos -= 1
        self.fail("expected a value")
        raise AssertionError  # unreachable: fail() raises

    def name(self) -> tuple[str, str, Node]:
        token = self.take()
        if token.kind != "name":
            self.pos -= 1
            self.fail("expected a name")
        resolved = self.resolve(token.text)
        if resolved is None:
            raise RuleSyntaxError(f"unknown name {token.text!r}", token.column)
        node, kind = resolved
        self.names.add(token.text)
        return token.text, kind, node

    def list_literal(self, left: _Value) -> frozenset:
        self.expect("[")
        members = []
        while True:
            token = self.peek()
            if token.kind not in _LITERALS and token.text not in ("true", "false", "null"):
                self.fail("list members must be literals")
            member = self.value()
            _check_comparable(left, member)
            members.append(member.node({}))
            if self.accept("]"):
                return frozenset(members)
            self.expect(",")

    def _note_threshold(self, since_name: str | None, op: str, other: Node) -> None:
        """Record when ``since(since_name) op other`` can change its answer, if ``other`` is a constant."""
        if since_name is None:
            return
        try:
            duration = other({})
        except (KeyError, TypeError):
            return  # compared with another variable: no fixed flip time
        if isinstance(duration, (int, float)):
            for offset in _FLIP_OFFSETS[op]:
                self.thresholds.append((since_name, int(duration) + offset))


def _fold(parts: list[Node], combine: Callable[[Node, Node], Node]) -> Node:
    """Chain operands into nested short-circuiting closures (cheaper than any()/all())."""
    node = parts[0]
    for part in parts[1:]:
        node = combine(node, part)
    return node


def _const(value: Any) -> Node:
    return lambda ctx: value


def _duration_ms(text: str) -> int:
    return int(float(text[:-1]) * _DURATION_MS[text[-1]])


def _null_safe(compare: Callable[[Any, Any], bool], left: Any, right: Any) -> bool:
    """A comparison with an unknown value is false (``!=`` included)."""
    if left is None or right is None:
        return False
    try:
        return bool(compare(left, right))
    except TypeError:
        return False  # e.g. a string attribute compared with a number


def _between(value: Any, low: Any, high: Any) -> bool:
    try:
        return value is not None and low <= value <= high
    except TypeError:
        return False


def compile_rule(text: str, resolve: Resolver) -> Rule:
    """Compile ``text``; ``resolve(name)`` gives a name's accessor, or None if unknown.

    Raises `RuleSyntaxError` (with column) on any error.
    """
    parser = _Parser(text, resolve)
    node = parser.parse()
    return Rule(text, lambda ctx: bool(node(ctx)), tuple(parser.thresholds), frozenset(parser.names))
