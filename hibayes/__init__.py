"""hibayes: hierarchical Bayesian models for AI-evaluation data (NumPyro, Hydra, MLflow)."""

import warnings

# conf/hydra/launcher/*.yaml keep the launcher plugins' names (hydra/launcher=joblib), so
# Hydra checks them against the plugins' schemas and warns that this is deprecated.
# (Launcher workers get the same filter from hydra_plugins/hibayes_sweeper.)
warnings.filterwarnings(
    "ignore", message=r"\s*'hydra/launcher/\w+' is validated against"
)
