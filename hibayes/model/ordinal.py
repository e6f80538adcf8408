"""An ordered-logistic likelihood whose cost does not grow with the number of classes.

NumPyro's ``OrderedLogistic`` builds the probability of every class for every row
and then picks the observed one: rows x classes sigmoids and logs per gradient.
The probability of class k is sigmoid(c_k - eta) - sigmoid(c_(k-1) - eta), so the
log-probability of an observed class needs only the two cutpoints around it.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpyro.distributions as dist
from jax.nn import softplus

__all__ = ["OrderedLogistic"]


class OrderedLogistic(dist.OrderedLogistic):
    """``numpyro.distributions.OrderedLogistic`` with an O(rows) ``log_prob``.

    Same parameters, support, sampling and probabilities; only ``log_prob`` is
    computed differently (from the two cutpoints around each value, in log space,
    which is also more accurate in the tails than log of a difference of probs).
    """

    def __init__(self, predictor: Any, cutpoints: Any, *,
                 validate_args: bool | None = None) -> None:
        super().__init__(predictor, cutpoints, validate_args=validate_args)
        if jnp.ndim(cutpoints) == 1:
            self._shared_cutpoints = jnp.asarray(cutpoints)

    def log_prob(self, value: Any) -> Any:
        """log(sigmoid(c_y - eta) - sigmoid(c_(y-1) - eta)), computed stably."""
        if self._validate_args:
            self._validate_sample(value)
        value = jnp.asarray(value, dtype=jnp.int32)
        num_cut = self.cutpoints.shape[-1]
        shape = jnp.broadcast_shapes(jnp.shape(value), self.batch_shape)
        value = jnp.broadcast_to(value, shape)
        eta = jnp.broadcast_to(self.predictor, shape)
        # Cutpoints shared by every row (the usual case) are indexed directly;
        # broadcasting them to rows x classes first would cost what we save.
        shared = getattr(self, "_shared_cutpoints", None)

        def cutpoint(index: Any) -> Any:
            index = jnp.clip(index, 0, num_cut - 1)
            if shared is not None:
                return shared[index]
            cut = jnp.broadcast_to(self.cutpoints, (*shape, num_cut))
            return jnp.take_along_axis(cut, index[..., None], axis=-1)[..., 0]

        a, b = cutpoint(value) - eta, cutpoint(value - 1) - eta  # a > b inside the range
        first, last = value == 0, value == num_cut
        # log(sigmoid(a) - sigmoid(b)) = a + log(-expm1(b - a)) - softplus(a) - softplus(b);
        # the end classes have one infinite cutpoint. Safe arguments keep the
        # unused branches (and their gradients) finite.
        gap = jnp.where(first | last, -1.0, b - a)
        middle = a + jnp.log(-jnp.expm1(gap)) - softplus(a) - softplus(b)
        return jnp.where(first, -softplus(-a), jnp.where(last, -softplus(b), middle))
