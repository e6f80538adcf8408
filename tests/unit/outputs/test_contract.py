"""The contract of a FINISHED fit: which files, and the check before FINISHED."""

from __future__ import annotations

import pytest

from hibayes.outputs.contract import (
    ALWAYS,
    IncompleteOutputs,
    check_outputs,
    fit_contract,
    missing_outputs,
)

GROUPS = ("posterior", "posterior_predictive", "log_likelihood", "observed_data")


def test_contract_follows_what_the_fit_computed():
    plain = fit_contract(loo=False, folds=False, sensitivity=False, groups=())
    assert plain == list(ALWAYS)
    full = fit_contract(
        loo=True,
        folds=True,
        sensitivity=True,
        groups=(*GROUPS, "cross_validation"),
    )
    assert set(full) - set(ALWAYS) == {
        "loo_pointwise.csv",
        "cv_folds.csv",
        "sensitivity.csv",
        "plots/trace.png",
        "plots/forest.png",
        "plots/ppc.png",
        "plots/pareto_k.png",
        "plots/loo_pit.png",
    }


def test_missing_and_empty_files_fail_the_check(tmp_path):
    contract = fit_contract(loo=True, folds=False, sensitivity=False, groups=GROUPS)
    for name in contract:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    check_outputs(tmp_path, contract)  # complete: no error
    (tmp_path / "plots" / "trace.png").unlink()
    (tmp_path / "idata.nc").write_text("")  # an empty file is not an output
    assert missing_outputs(tmp_path, contract) == ["idata.nc", "plots/trace.png"]
    with pytest.raises(IncompleteOutputs, match="missing idata.nc, plots/trace.png"):
        check_outputs(tmp_path, contract)
