"""Output folders owned by one process: claimed exclusively, explicit ones refused unless empty."""

from __future__ import annotations

import threading

import pytest

from hibayes.errors import InputError
from hibayes.system.output_dir import claim_dir, claim_explicit_dir


def test_claim_dir_takes_the_name_then_suffixes(tmp_path):
    wanted = tmp_path / "outputs" / "2026-01-01" / "12-00-00"
    assert claim_dir(wanted) == wanted
    assert claim_dir(wanted) == wanted.with_name("12-00-00_1")
    assert claim_dir(wanted) == wanted.with_name("12-00-00_2")


def test_claim_dir_gives_racing_threads_distinct_folders(tmp_path):
    wanted = tmp_path / "same"
    claimed: list = []
    threads = [
        threading.Thread(target=lambda: claimed.append(claim_dir(wanted)))
        for _ in range(16)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(claimed)) == 16


def test_explicit_dir_refused_when_it_holds_files(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "metrics.json").write_text("{}")
    with pytest.raises(
        InputError, match=r"hydra.run.dir=.*out: the folder is not empty"
    ):
        claim_explicit_dir(tmp_path / "out", "hydra.run.dir", reuse=False)
    assert (tmp_path / "out" / "metrics.json").read_text() == "{}"


def test_explicit_dir_emptied_on_request_only_if_hibayes_wrote_it(tmp_path):
    ours = tmp_path / "ours"
    (ours / ".hydra").mkdir(parents=True)
    (ours / "idata.nc").write_text("old")
    claim_explicit_dir(ours, "hydra.run.dir", reuse=True)
    assert list(ours.iterdir()) == []
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "thesis.tex").write_text("keep me")
    with pytest.raises(InputError, match="files hibayes did not write; not emptying"):
        claim_explicit_dir(theirs, "hydra.sweep.dir", reuse=True)
    assert (theirs / "thesis.tex").read_text() == "keep me"


def test_explicit_dir_that_is_a_file_refused(tmp_path):
    (tmp_path / "out").write_text("")
    with pytest.raises(InputError, match="is a file, not a folder"):
        claim_explicit_dir(tmp_path / "out", "hydra.run.dir", reuse=True)


def test_release_removes_only_an_unused_folder_this_process_made(tmp_path):
    """A refused command's own empty folder goes; a used one, or one it did not
    make, stays."""
    from hibayes.system.output_dir import release_if_unused

    made = claim_dir(tmp_path / "sweep")
    release_if_unused(made)
    assert not made.exists()
    used = claim_explicit_dir(tmp_path / "named", "hydra.sweep.dir", reuse=False)
    (used / "multirun.yaml").write_text("x")
    release_if_unused(used)
    assert used.exists()
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    claim_explicit_dir(theirs, "hydra.sweep.dir", reuse=False)  # empty: accepted
    release_if_unused(theirs)
    assert theirs.exists()
