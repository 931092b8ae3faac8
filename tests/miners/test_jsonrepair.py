"""miners.jsonrepair: one test per named rule, real malformed replies, and hypothesis properties."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from miners.jsonrepair import RULES, JsonRepairError, loads_lenient, repair_text


def test_every_rule_has_a_unique_name() -> None:
    names = [rule.name for rule in RULES]
    assert len(names) == len(set(names))
    assert names == [
        "nul_bytes",
        "raw_control_chars",
        "invalid_escapes",
        "nonfinite_numbers",
        "leading_garbage",
        "trailing_garbage",
        "truncated",
        "array_with_members",
        "missing_commas",
        "extra_commas",
    ]


def test_valid_json_takes_the_strict_path() -> None:
    assert loads_lenient(b'{"a": [1, 2.5, "x"]}') == ({"a": [1, 2.5, "x"]}, [])


def test_trailing_nul_terminator_is_not_a_fault() -> None:
    assert loads_lenient(b'{"Code": 11}\x00') == ({"Code": 11}, [])
    assert loads_lenient('{"Code": 11}\x00\x00') == ({"Code": 11}, [])


def test_rule_nul_bytes() -> None:
    assert loads_lenient(b'\x00{"Code": 11}\x00\x00') == ({"Code": 11}, ["nul_bytes"])
    assert loads_lenient(b'{"Code":\x00 11}') == ({"Code": 11}, ["nul_bytes"])


def test_rule_raw_control_chars() -> None:
    value, rules = loads_lenient('{"Msg": "line one\nline\ttwo\x01"}')
    assert value == {"Msg": "line one\nline\ttwo\x01"}
    assert rules == ["raw_control_chars"]


def test_rule_invalid_escapes() -> None:
    value, rules = loads_lenient(r'{"Msg": "Missing JSON \'command\'", "Path": "C:\q"}')
    assert value == {"Msg": "Missing JSON 'command'", "Path": "C:\\q"}
    assert rules == ["invalid_escapes"]


def test_rule_invalid_escapes_keeps_valid_escapes() -> None:
    value, _ = loads_lenient(r'{"a": "tab\t quote\" uni\u00e9 bad\'", "b": "\\"}')
    assert value == {"a": "tab\t quote\" uni\u00e9 bad'", "b": "\\"}


@pytest.mark.parametrize("literal", ["nan", "-nan", "inf", "-inf", "NaN", "Infinity", "-Infinity"])
def test_rule_nonfinite_numbers(literal: str) -> None:
    value, rules = loads_lenient(f'{{"GHS 5s": {literal}, "ok": 1}}')
    assert value == {"GHS 5s": None, "ok": 1}
    assert rules == ["nonfinite_numbers"]


def test_quoted_nan_is_a_valid_string_and_left_alone() -> None:
    assert loads_lenient('{"GHS 5s": "nan"}') == ({"GHS 5s": "nan"}, [])


def test_rule_leading_garbage() -> None:
    assert loads_lenient('HTTP banner\r\n{"a": 1}') == ({"a": 1}, ["leading_garbage"])


def test_rule_trailing_garbage() -> None:
    assert loads_lenient('{"a": 1}{"a": 2}') == ({"a": 1}, ["trailing_garbage"])
    assert loads_lenient('{"a": 1}}junk') == ({"a": 1}, ["trailing_garbage"])


def test_rule_truncated() -> None:
    assert loads_lenient('{"a": [1, 2') == ({"a": [1, 2]}, ["truncated"])
    assert loads_lenient('{"a": 1, "b": ') == ({"a": 1}, ["truncated"])
    assert loads_lenient('{"a": 1, "b"') == ({"a": 1}, ["truncated"])
    assert loads_lenient('{"a": 1, "b": tr') == ({"a": 1}, ["truncated"])
    assert loads_lenient('{"a": {"Msg": "cut her') == ({"a": {"Msg": "cut her"}}, ["truncated"])
    assert loads_lenient('[{"a": 1},') == ([{"a": 1}], ["truncated"])


def test_rule_array_with_members() -> None:
    raw = '{"Msg": {"error_code": ["110": "2023-01-06 10:00:00", "111": "x"]}, "l": [1, [2]]}'
    value, rules = loads_lenient(raw)
    assert value == {
        "Msg": {"error_code": {"110": "2023-01-06 10:00:00", "111": "x"}},
        "l": [1, [2]],
    }
    assert rules == ["array_with_members"]


def test_rule_missing_commas() -> None:
    value, rules = loads_lenient('{"STATS": [{"a": 1}{"b": 2}] "id": 1}')
    assert value == {"STATS": [{"a": 1}, {"b": 2}], "id": 1}
    assert rules == ["missing_commas"]
    assert loads_lenient("[1 2 [3] [4]]") == ([1, 2, [3], [4]], ["missing_commas"])


def test_rule_extra_commas() -> None:
    assert loads_lenient('{"a": [,1,,2,], "b": 3,}') == ({"a": [1, 2], "b": 3}, ["extra_commas"])


def test_string_contents_survive_structural_repairs() -> None:
    tricky = 'x}{y ,] [, nan \\" :'
    doc = '{"s": ' + json.dumps(tricky) + ', "l": [1, 2,],}'
    value, rules = loads_lenient(doc)
    assert value == {"s": tricky, "l": [1, 2]}
    assert rules == ["extra_commas"]


def test_several_faults_at_once() -> None:
    raw = b'{"STATS":[{"a":nan}{"b":"it\\\'s"},],"id":1}\x00trailing'
    value, rules = loads_lenient(raw)
    assert value == {"STATS": [{"a": None}, {"b": "it's"}], "id": 1}
    assert set(rules) == {
        "nul_bytes",
        "invalid_escapes",
        "nonfinite_numbers",
        "trailing_garbage",
        "missing_commas",
        "extra_commas",
    }


def test_latin1_bytes_are_read() -> None:
    value, rules = loads_lenient(b'{"Temp": "45\xb0C"}')
    assert value == {"Temp": "45\u00b0C"}
    assert rules == ["latin1_bytes"]


@pytest.mark.parametrize("raw", [b"", b"zzz", b"STATUS=S,Code=1|", b"{]", b"[}"])
def test_unreadable_raises_with_position(raw: bytes) -> None:
    with pytest.raises(JsonRepairError) as info:
        loads_lenient(raw)
    assert "unreadable JSON" in str(info.value)


def test_real_malformed_replies(miner_responses: Path) -> None:
    l3, rules = loads_lenient(
        (miner_responses / "antminer/stats_l3plus_missing_comma.json").read_bytes()
    )
    assert rules == ["missing_commas"]
    assert l3["STATS"][0]["Type"] == "Antminer L3+"
    assert l3["STATS"][1]["GHS av"] == 500.28
    s9, rules = loads_lenient(
        (miner_responses / "antminer/stats_s9_nicehash_missing_comma.json").read_bytes()
    )
    assert rules == ["missing_commas"]
    assert s9["STATS"][1]["build_version"] == "3.8.6"


def test_every_shared_json_file_is_valid_or_repaired(miner_responses: Path) -> None:
    for path in sorted(miner_responses.rglob("*.json")):
        value, rules = loads_lenient(path.read_bytes())
        assert isinstance(value, dict), path
        assert rules in ([], ["missing_commas"]), (path, rules)


# --- properties ---

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**18), max_value=10**18)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=25,
)
containers = st.one_of(
    st.lists(documents, max_size=5), st.dictionaries(st.text(), documents, max_size=5)
)


@settings(max_examples=60, deadline=None)
@given(containers)
def test_property_valid_json_passes_every_rule_unchanged(doc: Any) -> None:
    text = json.dumps(doc, ensure_ascii=False)
    repaired, rules = repair_text(text)
    assert rules == []
    assert json.loads(repaired) == doc
    assert loads_lenient(text) == (doc, [])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.dictionaries(st.text(), scalars, max_size=4), min_size=2, max_size=5))
def test_property_missing_commas_between_objects(rows: list[dict[str, Any]]) -> None:
    text = "[" + "".join(json.dumps(row) for row in rows) + "]"
    value, rules = loads_lenient(text)
    assert value == rows
    assert rules == ["missing_commas"]


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(), scalars, min_size=1, max_size=5))
def test_property_trailing_comma_and_trailing_garbage(doc: dict[str, Any]) -> None:
    body = json.dumps(doc)
    text = body[:-1] + ",}" + "\x00 garbage"
    value, rules = loads_lenient(text)
    assert value == doc
    assert {"extra_commas", "trailing_garbage", "nul_bytes"} >= set(rules)


@settings(max_examples=100, deadline=None)
@given(st.text(), st.text())
def test_property_raw_control_chars_keep_the_intended_text(a: str, b: str) -> None:
    intended = a + "\n" + b
    # Encode everything except the newline, which the firmware writes raw.
    body = json.dumps(intended, ensure_ascii=False).replace("\\n", "\n")
    value, rules = loads_lenient('{"Msg": ' + body + ', "x": [1,]}')
    assert value == {"Msg": intended, "x": [1]}
    assert "raw_control_chars" in rules


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.text(), st.integers(), min_size=1, max_size=5))
def test_property_truncated_object_keeps_complete_members(doc: dict[str, int]) -> None:
    text = json.dumps(doc)
    cut = text[:-1]  # lose only the closing brace
    value, rules = loads_lenient(cut)
    assert value == doc
    assert rules == ["truncated"]


def test_missing_comma_fast_path_agrees_with_the_token_rule(miner_responses: Path) -> None:
    for name in ("stats_l3plus_missing_comma.json", "stats_s9_nicehash_missing_comma.json"):
        text = (miner_responses / "antminer" / name).read_text()
        repaired, rules = repair_text(text)
        assert rules == ["missing_commas"]
        assert json.loads(repaired) == loads_lenient(text)[0]


def test_missing_comma_fast_path_gives_way_to_other_rules() -> None:
    value, rules = loads_lenient('{"a": [{"b": 1}{"c": nan}], "d": 2,}')
    assert value == {"a": [{"b": 1}, {"c": None}], "d": 2}
    assert rules == ["nonfinite_numbers", "missing_commas", "extra_commas"]


def test_deep_nesting_is_a_repair_error_not_a_crash() -> None:
    with pytest.raises(JsonRepairError, match="nested too deeply"):
        loads_lenient("[" * 100_000 + "]" * 100_000)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(alphabet="{}[],:\"\\ \n\x00ntrufal0123.-eE'", max_size=60))
def test_property_any_input_returns_or_raises_repair_error(raw: bytes | str) -> None:
    with contextlib.suppress(JsonRepairError):  # the only exception allowed out
        loads_lenient(raw)


@settings(max_examples=50, deadline=None)
@given(containers, st.data())
def test_property_truncation_anywhere_never_crashes(doc: Any, data: st.DataObject) -> None:
    text = json.dumps(doc)
    cut = data.draw(st.integers(min_value=1, max_value=len(text)))
    try:
        value, _ = loads_lenient(text[:cut])
    except JsonRepairError:
        return
    assert isinstance(value, type(doc))


@settings(max_examples=60, deadline=None)
@given(st.text(), st.dictionaries(st.text(), scalars, max_size=3))
def test_property_backslash_quote_escapes_mean_a_quote(message: str, rest: dict[str, Any]) -> None:
    intended = message + "'" + message
    body = json.dumps(intended).replace("'", "\\'")  # how the firmware escapes apostrophes
    value, rules = loads_lenient('{"Msg": ' + body + ', "rest": ' + json.dumps(rest) + "}")
    assert value == {"Msg": intended, "rest": rest}
    assert rules == ["invalid_escapes"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.integers(), st.text(max_size=5)), min_size=1, max_size=8),
    st.sampled_from(["nan", "-nan", "inf", "-inf"]),
)
def test_property_bare_nonfinite_reads_as_null(items: list[Any], literal: str) -> None:
    text = "[" + ", ".join(literal if item is None else json.dumps(item) for item in items) + "]"
    value, rules = loads_lenient(text)
    assert value == items
    assert rules == (["nonfinite_numbers"] if None in items else [])


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters='{["\x00'), max_size=20), containers)
def test_property_leading_garbage_is_dropped(prefix: str, doc: Any) -> None:
    text = prefix + json.dumps(doc)
    value, _ = loads_lenient(text)
    assert value == doc
