"""The ``calibrate`` section: every bad value is one error naming its key."""

from __future__ import annotations

import pytest

from hibayes.calibrate import CalibrationSettings, CalibrationSettingsError


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"alpha": "abc"}, "calibrate.alpha must be a number, got 'abc'"),
        ({"batch": 2.5}, "calibrate.batch must be a whole number, got 2.5"),
        ({"simulations": True}, "calibrate.simulations must be a whole number"),
        ({"simulations": 1}, "calibrate.simulations must be >= 2"),
        ({"alpha": 1.5}, "calibrate.alpha must be in (0, 1)"),
        ({"max_unusable": 2}, "calibrate.max_unusable must be in [0, 1]"),
        ({"alphas": 0.1}, "unknown calibrate key(s) ['alphas']"),
    ],
)
def test_bad_values_name_the_key(values, message):
    with pytest.raises(CalibrationSettingsError) as caught:
        CalibrationSettings.from_mapping(values)
    assert message in str(caught.value)


def test_values_from_the_command_line_become_numbers():
    """Hydra may hand over strings or ints; the settings hold numbers of their kind."""
    settings = CalibrationSettings.from_mapping(
        {"simulations": "40", "alpha": 1 / 20, "max_unusable": 1}
    )
    assert settings.simulations == 40 and isinstance(settings.simulations, int)
    assert settings.max_unusable == 1.0 and isinstance(settings.max_unusable, float)
