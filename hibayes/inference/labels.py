"""Name the axes of posterior variables after the data's categories.

ArviZ labels an axis only when told its dimension name. Built-in and custom
models follow naming conventions (``z_group``, ``group_effects``,
``{a}_{b}_effects``...), so dims are inferred from a site's name and accepted
only when the site's shape matches the category sizes exactly: an axis is never
labelled with a category of another size, and nothing is labelled by guesswork
when two readings fit.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

__all__ = ["infer_dims", "coords_for_dims"]

_NESTED = ("group", "subgroup", "subsubgroup")


def _candidates(name: str, categories: Sequence[str]) -> list[list[str]]:
    """Possible dim lists for site ``name``, most specific first."""
    out: list[list[str]] = []
    for cat in categories:
        if name in (
            f"{cat}_effects",
            f"z_{cat}",
            f"{cat}_effects_raw",
            f"{cat}_effects_constrained",
        ):
            if cat in _NESTED:
                # Nested effects are dense over every level above them.
                depth = _NESTED.index(cat)
                if all(c in categories for c in _NESTED[: depth + 1]):
                    out.append(list(_NESTED[: depth + 1]))
            if name.endswith("_raw"):
                out.append([f"{cat}_raw"])
            elif name.endswith("_constrained"):
                out.append([f"{cat}_constrained"])
            else:
                out.append([cat])
    for a, b in itertools.permutations(categories, 2):
        if name == f"{a}_{b}_effects":
            out.append([a, b])
        elif name == f"{a}_{b}_effects_constrained":
            out.append([f"{a}_{b}_constrained"])
    for cat in categories:
        slope = name.startswith(f"{cat}_") or name.endswith(f"_{cat}_effects")
        if slope and name.endswith("_effects"):
            out.append([cat])  # categorical x continuous slopes
    if name == "cutpoints":
        out.append(["cutpoint"])
    elif name == "cutpoint_diffs":
        out.append(["cutpoint_diff"])
    return out


def coords_for_dims(coords: Mapping[str, Sequence], dims: Sequence[str]) -> dict:
    """Extra coordinate values for the derived dims used by :func:`infer_dims`."""
    extra: dict[str, list] = {}
    for dim in dims:
        if dim in coords:
            continue
        if dim.endswith("_raw") and dim[:-4] in coords:
            extra[dim] = list(coords[dim[:-4]])[1:]
        elif dim.endswith("_constrained"):
            base = dim[: -len("_constrained")]
            if base in coords:
                extra[dim] = list(coords[base])[:-1]
            else:
                for a in coords:
                    b = base[len(a) + 1 :]
                    if base.startswith(f"{a}_") and b in coords:
                        extra[dim] = [
                            f"{x}:{y}"
                            for x in list(coords[a])[:-1]
                            for y in list(coords[b])[:-1]
                        ]
    return extra


def infer_dims(
    shapes: Mapping[str, tuple[int, ...]],
    coords: Mapping[str, Sequence],
) -> tuple[dict[str, list[str]], dict[str, list]]:
    """Dims for every site whose shape matches a naming convention.

    :param shapes: site name -> shape of one draw.
    :param coords: category name -> level labels (from the data).
    :return: ``(dims, coords)`` ready for ArviZ, coords extended with derived dims.
    """
    categories = [c for c in coords if c != "observation"]
    dims: dict[str, list[str]] = {}
    all_coords: dict[str, list] = {k: list(v) for k, v in coords.items()}
    for name, shape in shapes.items():
        if not shape:
            continue
        for candidate in _candidates(name, categories):
            extra = coords_for_dims(all_coords, candidate)
            sizes = []
            for dim in candidate:
                values = all_coords.get(dim, extra.get(dim))
                sizes.append(len(values) if values is not None else None)
            if None in sizes and candidate[0].startswith("cutpoint"):
                sizes = [shape[0]]
                extra = {candidate[0]: list(range(shape[0]))}
            if tuple(sizes) == tuple(shape):
                dims[name] = candidate
                all_coords.update(extra)
                break
    return dims, all_coords
