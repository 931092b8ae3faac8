"""Catalog of rig models: nominal hashrate, power, efficiency, cooling and layout.

`lookup(name)` accepts the spellings firmwares report ("Antminer S19j Pro", "S19J_PRO",
"antminer_s19jpro", "S19JPRO", "Antminer S9 (vnish 3.8.6)", "M50S.VH30") and returns None for an
unknown name: it never guesses a near model, because a wrong J/TH misprices every hour.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

__all__ = ["RigModel", "catalog", "lookup", "normalize_model_name"]

_VENDOR_WORDS = (
    "antminer",
    "bitmain",
    "whatsminer",
    "microbt",
    "avalonminer",
    "avalon",
    "canaan",
    "bitaxe",
)
# MicroBT appends a board-revision code to the model ("M50S.VH30", "M30S+VE40"): not a different model.
_WHATSMINER_REVISION = re.compile(r"v[a-z]\d{2}$")


@dataclass(frozen=True, slots=True)
class RigModel:
    """One rig model's nameplate figures (W and TH/s at the stock profile)."""

    vendor: str
    model: str
    hashrate_ths: float
    power_w: float
    efficiency_jth: float
    cooling: str
    fans: int | None
    hashboards: int | None
    chips_per_board: int | None
    chip: str | None
    max_temp_c: float
    source: str
    aliases: tuple[str, ...] = ()

    @property
    def expected_chips(self) -> int | None:
        """Chips over all hashboards, when both are known."""
        if self.hashboards is None or self.chips_per_board is None:
            return None
        return self.hashboards * self.chips_per_board


def normalize_model_name(name: str) -> str:
    """Fold a reported model name to its lookup key: lowercase letters and digits, vendor dropped."""
    text = name.lower()
    text = re.sub(r"\(.*?\)", " ", text)  # "(vnish 3.8.6)", "(BM1368)"
    text = text.replace("+", "plus").replace("hydro", "hyd")
    key = re.sub(r"[^a-z0-9]", "", text)
    for word in _VENDOR_WORDS:
        if key.startswith(word) and len(key) > len(word):
            key = key[len(word) :]
            break
    if key.startswith("m") and _WHATSMINER_REVISION.search(key):
        key = _WHATSMINER_REVISION.sub("", key)
    return key


def _int_or_none(value: str) -> int | None:
    return int(value) if value.strip() else None


@cache
def catalog() -> tuple[RigModel, ...]:
    """Every model in the shipped catalog (hardware/catalog.csv), in file order."""
    text = resources.files("hardware").joinpath("catalog.csv").read_text(encoding="utf-8")
    models = []
    for row in csv.DictReader(text.splitlines()):
        models.append(
            RigModel(
                vendor=row["vendor"],
                model=row["model"],
                hashrate_ths=float(row["hashrate_ths"]),
                power_w=float(row["power_w"]),
                efficiency_jth=float(row["efficiency_jth"]),
                cooling=row["cooling"],
                fans=_int_or_none(row["fans"]),
                hashboards=_int_or_none(row["hashboards"]),
                chips_per_board=_int_or_none(row["chips_per_board"]),
                chip=row["chip"] or None,
                max_temp_c=float(row["max_temp_c"]),
                source=row["source"],
                aliases=tuple(a for a in row["aliases"].split(";") if a),
            )
        )
    return tuple(models)


@cache
def _index() -> dict[str, RigModel]:
    index: dict[str, RigModel] = {}
    for model in catalog():
        keys = {
            normalize_model_name(model.model),
            *(normalize_model_name(a) for a in model.aliases),
        }
        if model.vendor == "Canaan":
            # Canaan firmware reports "Avalon1366"/"AvalonMiner 1366": index the bare number too.
            keys |= {k[1:] for k in keys if re.fullmatch(r"a\d{4}", k)}
        for key in keys:
            if key in index and index[key] is not model:
                raise ValueError(
                    f"catalog key {key!r} names both {index[key].model} and {model.model}"
                )
            index[key] = model
    return index


def lookup(name: str | None) -> RigModel | None:
    """The catalog model for a reported name, or None when the name is unknown or empty."""
    if not name:
        return None
    return _index().get(normalize_model_name(name))
