"""Config values of the wrong type found before any work, one line each, key named."""

from __future__ import annotations

import pytest

from hibayes.config import ConfigError, checked_sections
from hibayes.diagnostics import Thresholds
from hibayes.errors import InputError
from hibayes.inference import FitSettings, FitSettingsError


@pytest.mark.parametrize(
    ("values", "line"),
    [
        ({"rhat_max": "abc"}, "checks.rhat_max must be a number, got 'abc'"),
        ({"ess_bulk_min": None}, "checks.ess_bulk_min must be a number, got None"),
        (
            {"divergences_max": 1.5},
            "checks.divergences_max must be an integer, got 1.5",
        ),
        ({"ebfmi_min": float("nan")}, "checks.ebfmi_min must be a number, got nan"),
        ({"rhat_max": True}, "checks.rhat_max must be a number, got True"),
    ],
)
def test_thresholds_refuse_values_that_are_not_numbers(values, line):
    with pytest.raises(InputError) as info:
        Thresholds.from_mapping(values)
    assert str(info.value) == line


def test_thresholds_take_numbers_and_integral_floats():
    limits = Thresholds.from_mapping(
        {"rhat_max": 1.05, "divergences_max": 3.0, "ess_bulk_min": 100}
    )
    assert (limits.rhat_max, limits.divergences_max, limits.ess_bulk_min) == (
        1.05,
        3.0,
        100,
    )


def test_fit_settings_list_every_wrong_value():
    with pytest.raises(FitSettingsError) as info:
        FitSettings.from_mapping(
            {
                "samples": None,
                "collapse_identical_rows": "yes",
                "posterior_predictive_samples": None,
                "seed": "x",
            }
        )
    assert str(info.value).splitlines() == [
        "fit.samples must be an integer, got None",
        "fit.seed must be an integer, got 'x'",
        "fit.collapse_identical_rows must be true or false, got 'yes'",
    ]


def test_checked_sections_report_every_section_at_once():
    cfg = {
        "model": {"name": "two_level_group_binomial", "no_such_prior": 1.0},
        "fit": {"samples": "many"},
        "checks": {"rhat_max": None},
    }
    with pytest.raises(ConfigError) as info:
        checked_sections(cfg, "two_level_group_binomial")
    lines = str(info.value).splitlines()
    assert lines[0] == "3 problems in the config:"
    assert "no_such_prior" in lines[1]
    assert lines[2:] == [
        "  fit.samples must be an integer, got 'many'",
        "  checks.rhat_max must be a number, got None",
    ]
