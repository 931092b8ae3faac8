"""Override targets: known ids only, and never a rack id two sites share."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.config import parse_config
from controller.overrides import OverrideError, check_target


def test_a_rack_id_at_two_sites_is_refused(tmp_path: Path) -> None:
    config = parse_config(
        {
            "sites": [
                {"id": "a", "racks": [{"id": "rack-1"}, {"id": "rack-a"}]},
                {"id": "b", "racks": [{"id": "rack-1"}]},
            ]
        },
        tmp_path / "farm.toml",
    )
    check_target(config, "rack", "rack-a")
    check_target(config, "site", "b")
    with pytest.raises(OverrideError) as err:
        check_target(config, "rack", "rack-1")
    assert str(err.value) == "rack 'rack-1' exists at sites a, b; target its rigs instead"
    with pytest.raises(OverrideError, match="unknown rack 'rack-9'"):
        check_target(config, "rack", "rack-9")
