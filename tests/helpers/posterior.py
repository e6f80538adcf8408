"""Shared check: two fits of the same model agree within Monte Carlo error."""

from __future__ import annotations

import arviz as az
import numpy as np


def assert_same_posterior(reference, new, var_names) -> None:
    """Means within 5 combined MCSE (~1 false alarm in 10^6 per quantity), sds within 15%."""
    ref = az.summary(reference.idata, var_names=var_names, round_to="none")
    got = az.summary(new.idata, var_names=var_names, round_to="none")
    mcse = np.sqrt(ref["mcse_mean"] ** 2 + got["mcse_mean"] ** 2)
    assert (np.abs(ref["mean"] - got["mean"]) <= 5 * mcse).all(), (
        ref["mean"] - got["mean"]
    ) / mcse
    np.testing.assert_allclose(got["sd"], ref["sd"], rtol=0.15)
