"""A test-only model with a coding bug that only simulation-based calibration sees.

It fits like ``two_level_group_binomial`` but simulates ``obs`` as if the group
levels were coded in reverse order (a decoding bug between simulator and
likelihood): data drawn from it are scored against the wrong group's effect.
"""

from __future__ import annotations

import numpyro
import numpyro.distributions as dist
from numpyro.distributions.discrete import BinomialLogits

from hibayes.model import Model, model


class ReversedLevelsBinomial(BinomialLogits):
    """Scores rows in order but simulates them with the row order reversed."""

    def sample(self, key, sample_shape=()):
        """Draw with the logits of the rows in reverse order."""
        swapped = BinomialLogits(self.logits[..., ::-1], self.total_count)
        return swapped.sample(key, sample_shape)


@model
def miscoded_group_binomial(
    prior_mu_overall_loc: float = 0.0,
    prior_mu_overall_scale: float = 1.0,
    prior_sigma_overall_scale: float = 0.5,
    prior_sigma_group_scale: float = 0.1,
    sample_overall_mean_directly: bool = True,
) -> Model:
    """two_level_group_binomial's priors; group levels miscoded in the simulator."""

    def program(features):
        sigma_overall = numpyro.sample(
            "sigma_overall", dist.HalfNormal(prior_sigma_overall_scale)
        )
        z_overall = numpyro.sample("z_overall", dist.Normal(0, 1))
        overall_mean = numpyro.sample(
            "overall_mean",
            dist.Normal(
                prior_mu_overall_loc + sigma_overall * z_overall, prior_mu_overall_scale
            ),
        )
        sigma_group = numpyro.sample(
            "sigma_group", dist.HalfNormal(prior_sigma_group_scale)
        )
        z_group = numpyro.sample(
            "z_group", dist.Normal(0, 1).expand([features["num_group"]])
        )
        effects = numpyro.deterministic(
            "group_effects", overall_mean + sigma_group * z_group
        )
        numpyro.sample(
            "obs",
            ReversedLevelsBinomial(
                effects[features["group_index"]], features["n_total"]
            ),
            obs=features["obs"],
        )

    return program
