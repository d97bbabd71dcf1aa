"""common/files.py: files and folders are published whole or not at all, and tables."""

from __future__ import annotations

import csv
import os

import pytest

from common.files import (
    ASIDE_PREFIX,
    HOST,
    STAGING_PREFIX,
    atomic_path,
    clean_orphans,
    csv_text,
    discard,
    exchange,
    long_csv_fields,
    markdown_table,
    publish,
    staging_path,
    write_atomically,
    writer_of,
)
from tests.helpers import dead_pid


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(STAGING_PREFIX))


def test_a_file_is_replaced_whole_and_nothing_is_left_beside_it(tmp_path):
    path = tmp_path / "deep" / "results.json"
    write_atomically(path, "first")
    write_atomically(path, "second")
    assert path.read_text() == "second"
    assert leftovers(path.parent) == []


def test_a_failed_write_leaves_the_old_file_and_no_staged_copy(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(path) as staged:
        staged.write_text("half")
        raise RuntimeError("the disk is full")
    assert path.read_text() == "old" and leftovers(tmp_path) == []


def test_a_folder_is_replaced_by_its_new_version_and_the_old_one_goes(tmp_path):
    folder = tmp_path / "final"
    for version in ("v1", "v2"):
        with atomic_path(folder) as staged:
            staged.mkdir()
            (staged / "model.safetensors").write_text(version)
            if version == "v1":
                (staged / "only_in_v1").write_text("x")
            assert not (folder / "model.safetensors").exists() or version == "v2"  # not published yet
    assert (folder / "model.safetensors").read_text() == "v2"
    assert not (folder / "only_in_v1").exists()
    assert leftovers(tmp_path) == []


def test_staging_names_are_hidden_siblings_naming_their_writer_unique_unless_shared(tmp_path):
    path = tmp_path / "step-00000010"
    first, second = staging_path(path), staging_path(path)
    assert first.parent == tmp_path and first.name.startswith(f"{STAGING_PREFIX}step-00000010.{HOST}.{os.getpid()}.")
    assert first != second  # two jobs building one cache entry never share a folder
    assert writer_of(first) == (HOST, os.getpid())
    assert staging_path(path, shared=True) == tmp_path / f"{STAGING_PREFIX}step-00000010"  # every rank's name
    assert writer_of(staging_path(path, shared=True)) is None


def test_a_dead_writers_leftovers_go_and_a_folder_moved_aside_comes_back(tmp_path):
    gone = dead_pid()
    (tmp_path / f"{STAGING_PREFIX}tokens.{HOST}.{gone}.ab12").mkdir()  # a cache entry half built
    (tmp_path / f"{STAGING_PREFIX}results.json.{HOST}.{gone}.cd34").write_text("half")
    aside = tmp_path / f"{ASIDE_PREFIX}final.{HOST}.{gone}.ef56"  # killed between publish's two renames
    aside.mkdir()
    (aside / "model.safetensors").write_text("the only complete copy")
    alive = tmp_path / f"{STAGING_PREFIX}other.{HOST}.{os.getpid()}.0000"  # a live writer's: left alone
    alive.mkdir()
    elsewhere = tmp_path / f"{STAGING_PREFIX}remote.otherhost.{gone}.1111"  # another host's: left alone
    elsewhere.mkdir()
    shared = tmp_path / f"{STAGING_PREFIX}step-00000010"  # no writer named: only the lock holder may judge
    shared.mkdir()
    done = clean_orphans(tmp_path)
    assert len(done) == 3 and (tmp_path / "final" / "model.safetensors").read_text() == "the only complete copy"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["final", alive.name, elsewhere.name, shared.name])
    clean_orphans(tmp_path, owned=True)  # the run lock's holder: nobody else writes here
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]


def test_an_aside_copy_goes_when_its_replacement_made_it(tmp_path):
    (tmp_path / "final").mkdir()
    (tmp_path / f"{ASIDE_PREFIX}final.{HOST}.{dead_pid()}.0000").mkdir()
    clean_orphans(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]


def test_two_folders_swap_in_one_step(tmp_path):
    for name in ("new", "old"):
        (tmp_path / name).mkdir()
        (tmp_path / name / f"{name}.txt").write_text(name)
    assert exchange(tmp_path / "new", tmp_path / "old")  # ext4, tmpfs, xfs, btrfs: yes
    assert [p.name for p in (tmp_path / "old").iterdir()] == ["new.txt"]
    assert [p.name for p in (tmp_path / "new").iterdir()] == ["old.txt"]


def test_publish_and_discard_files_and_folders(tmp_path):
    staged = staging_path(tmp_path / "a.txt")
    staged.write_text("new")
    publish(staged, tmp_path / "a.txt")
    assert (tmp_path / "a.txt").read_text() == "new" and not staged.exists()
    folder = staging_path(tmp_path / "f")
    (folder / "sub").mkdir(parents=True)
    discard(folder)
    discard(folder)  # already gone: nothing to do
    discard(staging_path(tmp_path / "never-written"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_long_csv_fields_are_read_and_the_limit_comes_back(tmp_path):
    path = tmp_path / "long.tsv"
    path.write_text("text\tlabel\n" + "x" * 200_000 + "\t1\n")
    before = csv.field_size_limit()
    with long_csv_fields(), open(path, newline="") as lines:
        rows = list(csv.DictReader(lines, delimiter="\t"))
    assert len(rows[0]["text"]) == 200_000
    assert csv.field_size_limit() == before


def test_tables():
    rows = [{"model": "a", "score": 81.234, "tasks": 2}, {"model": "b", "score": None, "tasks": 1}]
    assert csv_text(rows, ["model", "score", "tasks"]) == "model,score,tasks\na,81.234,2\nb,,1\n"
    assert markdown_table(rows, ["model", "score", "tasks"]).splitlines() == [
        "| model | score | tasks |",
        "|---|---|---|",
        "| a | 81.23 | 2 |",
        "| b |  | 1 |",
    ]
