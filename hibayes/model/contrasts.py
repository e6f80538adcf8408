"""Effect-coded effects sampled in orthonormal sum-to-zero coordinates, exactly.

Effect coding samples ``n - 1`` free levels and sets the last to minus their sum,
``effects = A @ free`` with ``A = [I; -1']``. Data inform each level's effect
about equally, so in the free coordinates the likelihood's curvature is
``A' D A ~ d (I + 1 1')``: every free level is correlated with every other
through the last one. The condition number is ``n`` for a main effect and
``n1 * n2`` for a doubly sum-to-zero interaction (200 for 10 x 20 levels), which
a diagonal mass matrix cannot undo, and a dense one over a few hundred
parameters is learned too noisily in a usual warmup.

Here the sampler draws contrasts ``z`` in an orthonormal basis ``Q`` of the
sum-to-zero vectors instead, ``effects = Q @ z``, where the curvature is
``Q' D Q ~ d I``. With ``A = Q R`` (QR), ``z = R @ free``: a fixed linear
bijection. :class:`SumToZeroNormal` is the exact image of the free levels' iid
Normal prior under it (log density ``Normal(loc, scale).log_prob(R^-1 z)``
minus ``log|det R|``), so the joint density of everything the model reports,
and hence the posterior, is unchanged. It does not cover other priors, nor
dummy coding (whose reference level is absorbed elsewhere).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro.distributions import constraints
from numpyro.distributions.util import promote_shapes

__all__ = ["SumToZeroNormal", "sum_to_zero_basis"]


@functools.cache
def _qr(n_levels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``Q`` [n, n-1], ``R`` and ``R^-1`` [n-1, n-1] with ``[I; -1'] = Q R``."""
    coding = np.vstack([np.eye(n_levels - 1), -np.ones((1, n_levels - 1))])
    q, r = np.linalg.qr(coding)
    # A positive diagonal makes the basis unique; it changes nothing else.
    signs = np.sign(np.diag(r))
    q, r = q * signs, r * signs[:, None]
    return q, r, np.linalg.inv(r)


def sum_to_zero_basis(n_levels: int) -> np.ndarray:
    """Orthonormal basis ``Q`` [n, n-1] of the vectors whose n entries sum to zero."""
    return _qr(int(n_levels))[0]


def _apply(mats: Sequence[np.ndarray], value: Any, shape: tuple[int, ...]) -> Any:
    """Apply ``mats[i]`` along axis i of the event reshaped to ``shape``; flatten back."""
    batch = jnp.shape(value)[:-1]
    x = jnp.reshape(value, batch + shape)
    for axis, mat in enumerate(mats):
        x = jnp.moveaxis(
            jnp.tensordot(x, mat.T, axes=([len(batch) + axis], [0])),
            -1,
            len(batch) + axis,
        )
    return jnp.reshape(x, batch + (math.prod(shape),))


class SumToZeroNormal(dist.Distribution):
    """Orthonormal contrasts of effect-coded levels whose free levels are iid Normal.

    For ``levels = (n,)`` the free levels ``f`` [n-1] are iid ``Normal(loc, scale)``
    and a draw is ``R @ f``; for ``levels = (n1, n2)`` the free interaction cells
    ``F`` [n1-1, n2-1] are iid and a draw is ``R1 @ F @ R2'``, flattened. Then
    ``sum_to_zero_basis(n) @ z`` (per axis) equals the effect-coded effects.
    """

    arg_constraints: ClassVar[dict] = {
        "loc": constraints.real,
        "scale": constraints.positive,
    }
    support = constraints.real_vector
    reparametrized_params: ClassVar[list[str]] = ["loc", "scale"]

    def __init__(
        self,
        loc: Any,
        scale: Any,
        levels: Sequence[int],
        *,
        validate_args: bool | None = None,
    ) -> None:
        self.levels = tuple(int(n) for n in levels)
        if not self.levels or min(self.levels) < 2:
            raise ValueError(
                f"SumToZeroNormal needs >= 2 levels per axis, got {levels}"
            )
        self.loc, self.scale = promote_shapes(loc, scale)
        if jnp.ndim(self.loc) or jnp.ndim(self.scale):
            raise ValueError("SumToZeroNormal takes a scalar loc and scale")
        self._free_shape = tuple(n - 1 for n in self.levels)
        self._r = [_qr(n)[1] for n in self.levels]
        self._r_inv = [_qr(n)[2] for n in self.levels]
        size = math.prod(self._free_shape)
        # |det(R1 kron R2)| = |det R1|^(n2-1) |det R2|^(n1-1)
        self._log_det = float(
            sum(
                np.log(np.abs(np.diag(r))).sum() * size / k
                for r, k in zip(self._r, self._free_shape)
            )
        )
        super().__init__(
            batch_shape=(), event_shape=(size,), validate_args=validate_args
        )

    def sample(self, key: jax.Array, sample_shape: tuple[int, ...] = ()) -> jax.Array:
        """Free levels from their Normal prior, mapped to contrasts."""
        size = self.event_shape[0]
        eps = jax.random.normal(key, tuple(sample_shape) + (size,))
        return _apply(self._r, self.loc + self.scale * eps, self._free_shape)

    def free_levels(self, value: Any) -> Any:
        """The effect-coded free levels (flattened) that contrasts ``value`` stand for."""
        return _apply(self._r_inv, value, self._free_shape)

    def log_prob(self, value: Any) -> Any:
        """Log density of the free levels' Normal prior, through the fixed Jacobian."""
        free = self.free_levels(value)
        terms = dist.Normal(self.loc, self.scale).log_prob(free)
        return jnp.sum(terms, axis=-1) - self._log_det

    @property
    def mean(self) -> Any:
        """``R @ (loc * 1)`` per axis."""
        ones = jnp.full((self.event_shape[0],), self.loc)
        return _apply(self._r, ones, self._free_shape)

    @property
    def variance(self) -> Any:
        """Diagonal of ``scale^2 (R1 R1' kron R2 R2')``."""
        diag = np.ones(())
        for r in self._r:
            diag = np.multiply.outer(diag, np.sum(r * r, axis=1))
        return self.scale**2 * jnp.asarray(diag.reshape(-1))
