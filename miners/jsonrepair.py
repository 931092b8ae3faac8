"""Lenient JSON for rig replies: strict parse first, then named repair rules for real firmware faults.

Every rule is a small function over a token list. The lexer keeps each string literal as one
token, so rules that fix structure never see (or change) the content of a valid string; the two
string rules only touch strings that are themselves invalid JSON (raw control characters, bad
escapes). Rules run only when strict parsing failed, in registry order, and the names of those
that changed something are returned so callers can log which fault a rig has.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

try:  # 3-5x faster than the stdlib on the strict path, which nearly every reply takes
    import orjson
except ImportError:  # pragma: no cover - orjson is a dependency; the stdlib still works
    orjson = None  # type: ignore[assignment]

__all__ = ["RULES", "JsonRepairError", "RepairRule", "loads_lenient", "repair_text"]


class JsonRepairError(ValueError):
    """The reply is not JSON even after every repair rule; says where it failed."""

    def __init__(self, message: str, rules: list[str]) -> None:
        super().__init__(message)
        self.rules = rules


# Token kinds: "s" string literal (with quotes), "p" punctuation ({}[],:), "l" bare literal
# (number, true/false/null, nan, garbage words), "u" an unterminated string at end of input,
# "n" a NUL byte outside strings.
Token = tuple[str, str]

_OPEN = {"{": "}", "[": "]"}
_COMMA: Token = ("p", ",")
_VALUE_END = frozenset("}]")
_VALID_ESCAPES = frozenset('"\\/bfnrtu')
_NONFINITE = frozenset(
    {"nan", "-nan", "+nan", "inf", "-inf", "+inf", "infinity", "-infinity", "+infinity"}
)
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?\Z")
_CONTROL = re.compile(r"[\x00-\x1f]")
_HEX4 = re.compile(r"[0-9a-fA-F]{4}")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard constant {name}")


def _strict(text: str) -> Any:
    return json.loads(text, parse_constant=_reject_constant)


# Strings use the unrolled-loop form so an unterminated string cannot backtrack exponentially.
_TOKEN = re.compile(
    r"""(?P<s>"[^"\\]*(?:\\.[^"\\]*)*")"""
    r"""|(?P<u>"[^"\\]*(?:\\.[^"\\]*)*\\?\Z)"""
    r"""|(?P<p>[{}\[\],:])"""
    r"""|(?P<w>[ \t\r\n]+)"""
    r"""|(?P<n>\x00)"""
    r"""|(?P<l>[^ \t\r\n{}\[\],:"\x00]+)""",
    re.S,
)


def _tokenize(text: str) -> list[Token]:
    return [
        (kind, match.group())
        for match in _TOKEN.finditer(text)
        if (kind := match.lastgroup or "w") != "w"
    ]


def _is_value_start(tok: Token) -> bool:
    return tok[0] in "slu" or tok[1] in _OPEN


def _is_value_end(tok: Token) -> bool:
    return tok[0] in "sl" or (tok[0] == "p" and tok[1] in _VALUE_END)


def _valid_literal(text: str) -> bool:
    return text in ("true", "false", "null") or _NUMBER.match(text) is not None


# --- rules: each takes the token list and returns a new list, or None when it does not apply ---


def rule_nul_bytes(tokens: list[Token]) -> list[Token] | None:
    """NUL bytes outside strings (the cgminer wire terminator, padding) are dropped."""
    if not any(kind == "n" for kind, _ in tokens):
        return None
    return [tok for tok in tokens if tok[0] != "n"]


def _escape_control(match: re.Match[str]) -> str:
    ch = match.group(0)
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(ch, f"\\u{ord(ch):04x}")


def rule_raw_control_chars(tokens: list[Token]) -> list[Token] | None:
    """Raw newlines, tabs and other control characters inside strings are escaped."""
    changed = False
    out: list[Token] = []
    for kind, text in tokens:
        if kind in "su" and _CONTROL.search(text):
            text = _CONTROL.sub(_escape_control, text)
            changed = True
        out.append((kind, text))
    return out if changed else None


def _fix_escapes(body: str) -> str:
    parts: list[str] = []
    i, n = 0, len(body)
    while i < n:
        ch = body[i]
        if ch != "\\":
            parts.append(ch)
            i += 1
            continue
        nxt = body[i + 1] if i + 1 < n else ""
        if nxt == "'":
            parts.append("'")  # \' is a C-ism: the firmware meant a plain quote
        elif nxt == "u" and _HEX4.fullmatch(body[i + 2 : i + 6]):
            parts.append(body[i : i + 6])
            i += 6
            continue
        elif nxt in _VALID_ESCAPES and nxt != "u":
            parts.append(body[i : i + 2])
        else:
            parts.append("\\\\" + nxt)  # keep the backslash the firmware wrote, literally
        i += 2
    return "".join(parts)


def _has_bad_escape(body: str) -> bool:
    i, n = 0, len(body)
    while i < n:
        if body[i] == "\\":
            nxt = body[i + 1] if i + 1 < n else ""
            if nxt == "u":
                if not _HEX4.fullmatch(body[i + 2 : i + 6]):
                    return True
                i += 6
                continue
            if nxt not in _VALID_ESCAPES:
                return True
            i += 2
        else:
            i += 1
    return False


def rule_invalid_escapes(tokens: list[Token]) -> list[Token] | None:
    """`\\'` becomes `'`; any other invalid escape keeps its backslash as a literal character."""
    changed = False
    out: list[Token] = []
    for kind, text in tokens:
        if kind == "s" and "\\" in text and _has_bad_escape(text[1:-1]):
            text = '"' + _fix_escapes(text[1:-1]) + '"'
            changed = True
        elif kind == "u" and "\\" in text:
            body = text[1:]
            if body.endswith("\\") and not body.endswith("\\\\"):
                body = body[:-1]  # a truncated escape cannot be completed
            fixed = _fix_escapes(body)
            if fixed != text[1:]:
                text = '"' + fixed
                changed = True
        out.append((kind, text))
    return out if changed else None


def rule_nonfinite_numbers(tokens: list[Token]) -> list[Token] | None:
    """Bare `nan`, `inf`, `-nan`, `NaN`, `Infinity` become null (no usable reading)."""
    changed = False
    out: list[Token] = []
    for kind, text in tokens:
        if kind == "l" and text.lower() in _NONFINITE:
            out.append(("l", "null"))
            changed = True
        else:
            out.append((kind, text))
    return out if changed else None


def rule_leading_garbage(tokens: list[Token]) -> list[Token] | None:
    """Anything before the first `{` or `[` (banners, stray bytes) is dropped."""
    for idx, (kind, text) in enumerate(tokens):
        if kind == "p" and text in _OPEN:
            return tokens[idx:] if idx else None
    return None


def _top_level_end(tokens: list[Token]) -> int | None:
    """Index just after the first complete top-level container, or None when it never closes."""
    if not tokens or tokens[0][1] not in _OPEN or tokens[0][0] != "p":
        return None
    depth = 0
    for idx, (kind, text) in enumerate(tokens):
        if kind != "p":
            continue
        if text in _OPEN:
            depth += 1
        elif text in _VALUE_END:
            depth -= 1
            if depth == 0:
                return idx + 1
    return None


def rule_trailing_garbage(tokens: list[Token]) -> list[Token] | None:
    """Anything after the top-level object or array closes (a second document, junk) is dropped."""
    end = _top_level_end(tokens)
    if end is None or end == len(tokens):
        return None
    return tokens[:end]


def _open_stack(tokens: list[Token]) -> list[str]:
    stack: list[str] = []
    for kind, text in tokens:
        if kind != "p":
            continue
        if text in _OPEN:
            stack.append(text)
        elif text in _VALUE_END and stack:
            stack.pop()
    return stack


def rule_truncated(tokens: list[Token]) -> list[Token] | None:
    """A reply cut short: close the open string, drop a dangling key or comma, close brackets."""
    stack = _open_stack(tokens)
    unterminated = bool(tokens) and tokens[-1][0] == "u"
    if not stack and not unterminated:
        return None
    out = list(tokens)
    if unterminated:
        out[-1] = ("s", out[-1][1] + '"')
    while out:
        kind, text = out[-1]
        prev = out[-2] if len(out) > 1 else ("p", "")
        if kind == "p" and text == ",":
            out.pop()
        elif kind == "p" and text == ":":
            out.pop()
            if out and out[-1][0] == "s":
                out.pop()  # the key whose value never arrived
        elif kind == "l" and not _valid_literal(text):
            out.pop()  # half a number or a cut `tru`
        elif kind == "s" and stack and stack[-1] == "{" and prev[0] == "p" and prev[1] in "{,":
            out.pop()  # a key with no colon yet
        else:
            break
    out.extend(("p", _OPEN[opener]) for opener in reversed(stack))
    return out


def rule_array_with_members(tokens: list[Token]) -> list[Token] | None:
    """`[` ... `]` holding `"key": value` pairs (btminer 2.0.4 `error_code`) becomes an object."""
    stack: list[int] = []  # indices of open brackets
    has_colon: dict[int, bool] = {}
    swaps: list[tuple[int, int]] = []
    for idx, (kind, text) in enumerate(tokens):
        if kind != "p":
            continue
        if text in _OPEN:
            stack.append(idx)
        elif text in _VALUE_END:
            if stack:
                start = stack.pop()
                if tokens[start][1] == "[" and has_colon.pop(start, False):
                    swaps.append((start, idx))
        elif text == ":" and stack and tokens[stack[-1]][1] == "[":
            has_colon[stack[-1]] = True
    if not swaps:
        return None
    out = list(tokens)
    for start, end in swaps:
        out[start] = ("p", "{")
        if out[end][1] == "]":
            out[end] = ("p", "}")
    return out


def rule_missing_commas(tokens: list[Token]) -> list[Token] | None:
    """Two values side by side inside a container (`}{`, `] [`, `"a" "b"`) get a comma."""
    out: list[Token] = []
    append = out.append
    depth = 0
    after_value = False  # the previous token ended a value
    changed = False
    for tok in tokens:
        kind, text = tok
        if kind == "p":
            if text in _OPEN:
                if after_value and depth:
                    append(_COMMA)
                    changed = True
                depth += 1
                after_value = False
            elif text in _VALUE_END:
                depth -= 1
                after_value = True
            else:
                after_value = False
        elif kind in "slu":
            if after_value and depth:
                append(_COMMA)
                changed = True
            after_value = kind != "u"
        append(tok)
    return out if changed else None


def rule_extra_commas(tokens: list[Token]) -> list[Token] | None:
    """Leading, doubled and trailing commas in arrays and objects are dropped."""
    changed = False
    out: list[Token] = []
    for tok in tokens:
        if tok == ("p", ","):
            if out and out[-1][0] == "p" and out[-1][1] in "{[,":
                changed = True
                continue
        elif tok[0] == "p" and tok[1] in _VALUE_END and out and out[-1] == ("p", ","):
            out.pop()
            changed = True
        out.append(tok)
    return out if changed else None


def _always(_text: str) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class RepairRule:
    """One named repair: `apply(tokens)` returns the repaired tokens or None when not needed.

    `may_apply(text)` is a cheap test on the raw text (C-speed substring/regex search) that
    skips the token pass when the fault cannot be present; it may say yes wrongly, never no.
    """

    name: str
    description: str
    apply: Callable[[list[Token]], list[Token] | None]
    may_apply: Callable[[str], bool] = _always


_NONFINITE_HINT = re.compile(r"(?i)nan|inf")
_EXTRA_COMMA_HINT = re.compile(r"[\[{,]\s*,|,\s*[\]}]")

RULES: tuple[RepairRule, ...] = (
    RepairRule(
        "nul_bytes",
        "NUL bytes outside strings are dropped",
        rule_nul_bytes,
        lambda text: "\x00" in text,
    ),
    RepairRule(
        "raw_control_chars",
        "raw newlines/control chars in strings escaped",
        rule_raw_control_chars,
        lambda text: _CONTROL.search(text) is not None,
    ),
    RepairRule(
        "invalid_escapes",
        "\\' and other invalid escapes fixed",
        rule_invalid_escapes,
        lambda text: "\\" in text,
    ),
    RepairRule(
        "nonfinite_numbers",
        "bare nan/inf become null",
        rule_nonfinite_numbers,
        lambda text: _NONFINITE_HINT.search(text) is not None,
    ),
    RepairRule("leading_garbage", "text before the first { or [ dropped", rule_leading_garbage),
    RepairRule("trailing_garbage", "text after the top-level value dropped", rule_trailing_garbage),
    RepairRule("truncated", "cut-off reply closed", rule_truncated),
    RepairRule(
        "array_with_members",
        "[ ] holding key: value pairs becomes { }",
        rule_array_with_members,
        lambda text: "[" in text,
    ),
    RepairRule("missing_commas", "comma inserted between adjacent values", rule_missing_commas),
    RepairRule(
        "extra_commas",
        "leading/doubled/trailing commas dropped",
        rule_extra_commas,
        lambda text: _EXTRA_COMMA_HINT.search(text) is not None,
    ),
)


def _serialize(tokens: list[Token]) -> str:
    # A space between tokens keeps two literals from fusing; JSON ignores it.
    return " ".join(text for _, text in tokens)


def repair_text(text: str) -> tuple[str, list[str]]:
    """Run every rule over `text` (no strict attempt first); return the text and rules applied."""
    tokens = _tokenize(text)
    applied: list[str] = []
    for rule in RULES:
        if not rule.may_apply(text):
            continue
        fixed = rule.apply(tokens)
        if fixed is not None:
            tokens = fixed
            applied.append(rule.name)
    return _serialize(tokens), applied


def _decode(raw: bytes | str) -> tuple[str, list[str]]:
    # The trailing NUL is cgminer's wire terminator, not a fault: strip it before the strict try.
    if isinstance(raw, str):
        return raw.rstrip("\x00"), []
    raw = raw.rstrip(b"\x00")
    try:
        return raw.decode("utf-8"), []
    except UnicodeDecodeError:
        # Some firmwares put Latin-1 degree signs in text fields; every byte maps in Latin-1.
        return raw.decode("latin-1"), ["latin1_bytes"]


_MAX_FAST_COMMAS = 64


_NOT_FIXED = object()


def _missing_commas_fast(text: str, error: ValueError) -> Any:
    """The commonest fault (`}{` in bmminer stats) fixed at C speed, or `_NOT_FIXED`.

    When strict parsing stops with "Expecting ',' delimiter", the decoder is between two values
    inside a container, so a comma inserted at that position can never land inside a string:
    the same repair as `rule_missing_commas`, guided by the decoder instead of a token pass.
    """
    for _ in range(_MAX_FAST_COMMAS):
        if not (isinstance(error, json.JSONDecodeError) and error.msg == "Expecting ',' delimiter"):
            return _NOT_FIXED
        text = text[: error.pos] + "," + text[error.pos :]
        try:
            return _strict(text)
        except ValueError as exc:
            error = exc
    return _NOT_FIXED


def loads_lenient(raw: bytes | str) -> tuple[Any, list[str]]:
    """Parse a rig reply: strict JSON when valid, else repaired; returns (value, rules applied).

    Raises `JsonRepairError` (a ValueError) when the text cannot be read even after repair.
    """
    if orjson is not None:
        # orjson is strict RFC 8259 like `_strict` (NaN, Infinity, bad UTF-8 all refused), so
        # anything it rejects takes the stdlib path below and is repaired exactly as before.
        try:
            body = raw.rstrip(b"\x00") if isinstance(raw, bytes) else raw.rstrip("\x00")
            return orjson.loads(body), []
        except orjson.JSONDecodeError:
            pass
    text, applied = _decode(raw)
    try:
        return _strict(text), applied
    except RecursionError:
        raise JsonRepairError("unreadable JSON: nested too deeply", applied) from None
    except ValueError as strict_error:
        first_error = strict_error
    fast = _missing_commas_fast(text, first_error)
    if fast is not _NOT_FIXED:
        return fast, [*applied, "missing_commas"]
    repaired, rules = repair_text(text)
    applied.extend(rules)
    try:
        return _strict(repaired), applied
    except RecursionError:
        raise JsonRepairError("unreadable JSON: nested too deeply", applied) from None
    except ValueError as exc:
        snippet = text[:80].replace("\n", "\\n")
        raise JsonRepairError(
            f"unreadable JSON ({first_error}); after repairs {applied or 'none'}: {exc}; "
            f"starts {snippet!r}",
            applied,
        ) from exc
