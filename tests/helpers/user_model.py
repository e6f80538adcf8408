"""The model file from the issue, verbatim: users' existing code that must keep working."""

USER_MODEL = """
from hibayes.model import Model, model
from hibayes.model.models import check_features
import numpyro, numpyro.distributions as dist, jax, jax.numpy as jnp

@model
def my_custom_model(prior_mu_loc: float = 0.0, prior_mu_scale: float = 1.0) -> Model:
    def model(features):
        check_features(features, ["obs", "num_group", "group_index", "n_total"])
        overall_mean = numpyro.sample("overall_mean", dist.Normal(prior_mu_loc, prior_mu_scale))
        sigma_group = numpyro.sample("sigma_group", dist.Exponential(rate=1.0))
        z_group = numpyro.sample("z_group", dist.Normal(0, 1).expand([features["num_group"]]))
        group_effects = overall_mean + sigma_group * z_group
        numpyro.deterministic("group_effects", group_effects)
        numpyro.sample("obs", dist.Binomial(total_count=features["n_total"],
                       probs=jax.nn.sigmoid(group_effects[features["group_index"]])), obs=features["obs"])
    return model
"""
