import re
from pathlib import Path

import pytest

from operators.rules import NOW, RuleSyntaxError
from operators.segments import RulesError, SegmentRules, resolve_name, rule_context
from operators.rules import compile_rule

HOUR = 3_600_000
DAY = 24 * HOUR


def facts(**values: object) -> dict:
    base = {"ltv": 0.0, "orders": 0, "attributes": {}, "counts": {"1h": {}, "24h": {}, "7d": {}, "30d": {}},
            "last_seen": None, "cart_updated": None, "cart_items": 0, "preferred_category": None}
    return {**base, **values}


def check(text: str, now: int = 10 * DAY, **values: object) -> bool:
    return compile_rule(text, resolve_name).evaluate(rule_context(facts(**values), now))


@pytest.mark.parametrize(("text", "values", "result"), [
    ("ltv >= 1000", {"ltv": 1000.0}, True),
    ("ltv >= 1000", {"ltv": 999.99}, False),
    ("orders > 1 and ltv < 50", {"orders": 2, "ltv": 10.0}, True),
    ("orders > 1 and ltv < 50", {"orders": 1, "ltv": 10.0}, False),
    ("orders > 5 or not (ltv > 1)", {"orders": 1, "ltv": 0.0}, True),
    ("preferred_category in ['shoes', \"bags\"]", {"preferred_category": "bags"}, True),
    ("preferred_category not in ['shoes']", {"preferred_category": "bags"}, True),
    ("preferred_category not in ['shoes']", {"preferred_category": None}, False),
    ("ltv between 10 and 20", {"ltv": 20.0}, True),
    ("ltv between 10 and 20 and orders == 0", {"ltv": 15.0}, True),
    ("attributes.tier == 'gold'", {"attributes": {"tier": "gold"}}, True),
    ("attributes.tier == 'gold'", {}, False),
    ("attributes.age > 30", {"attributes": {"age": "n/a"}}, False),
    ("count_7d_purchase >= 2", {"counts": {"1h": {}, "24h": {}, "7d": {"purchase": 2}, "30d": {}}}, True),
    ("count_30d_all == 3", {"counts": {"1h": {}, "24h": {}, "7d": {}, "30d": {"a": 1, "b": 2}}}, True),
    ("since(last_seen) > 7d", {"last_seen": 2 * DAY}, True),
    ("since(last_seen) > 7d", {"last_seen": 3 * DAY}, False),
    ("since(last_seen) > 7d", {"last_seen": None}, False),
    ("since(cart_updated) >= 1h and cart_items > 0", {"cart_updated": 10 * DAY - HOUR, "cart_items": 1}, True),
    ("last_seen == null", {}, True),
])
def test_expressions(text: str, values: dict, result: bool) -> None:
    assert check(text, **values) is result


@pytest.mark.parametrize(("text", "column", "message"), [
    ("ltv >= ", 8, "expected a value"),
    ("ltv >> 3", 6, "expected a value"),
    ("__import__('os') == 0", 1, "unknown name '__import__'"),
    ("open('x').read()", 10, "unexpected character '.'"),
    ("ltv >= 1000 orders", 13, "expected 'and', 'or'"),
    ("ltv $ 3", 5, "unexpected character '$'"),
    ("since(ltvv) > 1d", 7, "unknown name 'ltvv'"),
    ("count_9y_purchase > 1", 1, "unknown name"),
    ("x in [ltv]", 1, "unknown name 'x'"),
    ("ltv in [orders]", 9, "list members must be literals"),
])
def test_syntax_errors_name_the_column(text: str, column: int, message: str) -> None:
    with pytest.raises(RuleSyntaxError, match=re.escape(message)) as info:
        compile_rule(text, resolve_name)
    assert info.value.column == column


def test_since_atoms_give_flip_times() -> None:
    rule = compile_rule("cart_items > 0 and since(cart_updated) >= 1h or 30d < since(last_seen)", resolve_name)
    assert set(rule.time_thresholds) == {("cart_updated", HOUR), ("last_seen", 30 * DAY + 1)}


def test_rules_file_errors_carry_the_line(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text('[segments.ok]\nwhen = "ltv > 1"\n\n[segments.bad]\ndescription = "x"\nwhen = "ltv >>> 1"\n')
    with pytest.raises(RulesError, match=r"rules.toml:6: segment 'bad': column 6"):
        SegmentRules.load(path)


@pytest.mark.parametrize(("body", "message"), [
    ('[segments.Bad-Name]\nwhen = "ltv > 1"\n', "lower_snake_case"),
    ('[segments.a]\nwhen = 3\n', "needs a string"),
    ('[segments.a]\nwhen = "ltv > 1"\nwhne = "x"\n', "unknown key 'whne'"),
    ('[segment.a]\nwhen = "ltv > 1"\n', "unknown top-level key 'segment'"),
    ('[segments.a\n', "rules.toml"),
])
def test_rules_file_structure_errors(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(body)
    with pytest.raises(RulesError, match=message):
        SegmentRules.load(path)


def test_default_rules_file_segments() -> None:
    rules = SegmentRules.load(Path(__file__).parents[1] / "config" / "rules.toml")
    assert [s.name for s in rules.segments] == ["vip", "active_7d", "cart_abandoner", "lapsed_30d"]
    now = 100 * DAY
    ctx = rule_context(facts(ltv=1500.0, last_seen=now - 31 * DAY, cart_items=2, cart_updated=now - 2 * HOUR), now)
    assert rules.evaluate(ctx) == ["vip", "cart_abandoner", "lapsed_30d"]
    assert rules.next_flip_ms({"last_seen": now - DAY, "cart_updated": now - 10}, now) == now - 10 + HOUR
    assert NOW in ctx


@pytest.mark.parametrize(("text", "message"), [
    ("since(ltv) > 1h", "since() needs a timestamp name, 'ltv' is a number"),
    ("ltv > 'abc'", "cannot compare a number with a string"),
    ("preferred_category == 3", "cannot compare a string with a number"),
    ("preferred_category in ['a', 2]", "cannot compare a string with a number"),
    ("ltv", "a number is not a condition"),
    ("since(last_seen) > 30x", "unknown duration unit 'x'"),
])
def test_rules_that_could_never_mean_anything_are_rejected(text: str, message: str) -> None:
    with pytest.raises(RuleSyntaxError, match=re.escape(message)):
        compile_rule(text, resolve_name)


def test_bare_boolean_and_attribute_names_are_conditions() -> None:
    assert check("sendable", sendable=True) and not check("sendable", sendable=False)
    assert check("attributes.vip", attributes={"vip": True})


def test_multi_line_rule_errors_point_at_the_right_line(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text('[segments.a]\nwhen = """\nltv > 1 and\n  orders >>> 2"""\n')
    with pytest.raises(RulesError, match=r"rules.toml:4: segment 'a': column 11: expected a value"):
        SegmentRules.load(path)


def test_null_needs_an_explicit_test() -> None:
    assert check("attributes.tier != 'gold'") is False  # unknown: not "not gold"
    assert check("attributes.tier == null") is True
    assert check("attributes.tier != null", attributes={"tier": "x"}) is True
    with pytest.raises(RuleSyntaxError, match="null can only be compared with == or !="):
        compile_rule("ltv > null", resolve_name)


def test_between_and_equality_on_since_give_both_edges() -> None:
    rule = compile_rule("since(last_seen) between 1d and 2d or since(last_purchase) == 3d", resolve_name)
    assert set(rule.time_thresholds) == {("last_seen", DAY), ("last_seen", 2 * DAY + 1),
                                         ("last_purchase", 3 * DAY), ("last_purchase", 3 * DAY + 1)}


@pytest.mark.parametrize("header", ['[segments."bad"]', "[ segments.bad ]", "[segments.'bad']"])
def test_error_lines_with_quoted_or_spaced_headers(tmp_path: Path, header: str) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(f'[segments.ok]\nwhen = "ltv > 1"\n\n{header}\nwhen = "ltv >>> 1"\n')
    with pytest.raises(RulesError, match=r"rules.toml:5: segment 'bad'"):
        SegmentRules.load(path)
