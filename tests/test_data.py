from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.conftest import synthetic_face, write_class_tree

from maskwatch.data.index import index_class_folders, index_source, index_sources, parse_voc
from maskwatch.data.loading import assign_splits, load_samples
from maskwatch.data.splits import near_duplicate_groups, read_manifest, split_of, write_manifest


def test_class_folders_accept_aliases_and_report_problems(tmp_path: Path):
    root = write_class_tree(
        tmp_path / "d", per_class=2, folder_names={"with_mask": "mask", "without_mask": "no_mask", "mask_incorrect": "incorrect"}
    )
    (root / "helmets").mkdir()
    (root / "helmets" / "a.png").write_bytes(b"x")
    (root / "correct").mkdir()  # empty class folder
    (root / "mask" / "notes.txt").write_text("hi")
    report = index_class_folders(root)
    assert sorted({s.label for s in report.samples}) == ["mask_incorrect", "with_mask", "without_mask"]
    assert len(report.samples) == 6
    text = "\n".join(report.problems)
    assert "helmets" in text and "unknown label" in text
    assert "empty class folder" in text and "notes.txt" in text


def test_voc_scenes_become_box_samples_and_tiny_boxes_are_counted(voc_scenes: Path):
    report = index_source(voc_scenes, min_face=10)
    assert len(report.samples) == 6 and report.skipped_small == 2
    assert {s.label for s in report.samples} == {"with_mask", "without_mask", "mask_incorrect"}
    assert all(s.path.suffix == ".jpg" and s.box is not None for s in report.samples)


def test_parse_voc_rejects_broken_xml(tmp_path: Path):
    bad = tmp_path / "bad.xml"
    bad.write_text("<annotation><object>")
    with pytest.raises(ValueError, match="bad.xml"):
        parse_voc(bad)


def test_near_duplicates_share_a_group_and_a_split(tmp_path: Path):
    root = write_class_tree(tmp_path / "d", per_class=4, size=96)
    face = synthetic_face("with_mask", 96, seed=0)
    Image.fromarray(face).resize((64, 64)).save(root / "with_mask" / "copy_small.png")  # resized copy
    Image.fromarray(np.clip(face.astype(int) + 6, 0, 255).astype(np.uint8)).save(root / "with_mask" / "copy_bright.png")
    loaded = load_samples(index_sources([root]).samples, size=32)
    rows = assign_splits(loaded, root=tmp_path)
    by_name = {row.sample.path.name: row for row in rows}
    original = by_name["with_mask_0.png"]
    for copy in ("copy_small.png", "copy_bright.png"):
        assert by_name[copy].group == original.group
        assert by_name[copy].split == original.split
    groups_per_split = {}
    for row in rows:
        groups_per_split.setdefault(row.group, set()).add(row.split)
    assert all(len(s) == 1 for s in groups_per_split.values())  # no group crosses splits


def test_splits_are_deterministic_and_roughly_proportional():
    keys = [f"file{i}.jpg" for i in range(4000)]
    splits = [split_of(k) for k in keys]
    assert splits == [split_of(k) for k in keys]
    assert 0.12 < splits.count("test") / len(keys) < 0.18
    assert 0.12 < splits.count("val") / len(keys) < 0.18


def test_grouping_does_not_depend_on_order():
    keys = ["b", "a", "c"]
    hashes = np.array([0b1111, 0b1110, 2**63], dtype=np.uint64)
    assert near_duplicate_groups(keys, hashes, 2) == ["a", "a", "c"]
    assert near_duplicate_groups(keys[::-1], hashes[::-1], 2) == ["c", "a", "a"]


def test_manifest_round_trip(tmp_path: Path, voc_scenes: Path):
    loaded = load_samples(index_source(voc_scenes).samples, size=32)
    rows = assign_splits(loaded, root=tmp_path)
    write_manifest(rows, tmp_path / "splits.csv")
    assert read_manifest(tmp_path / "splits.csv") == rows


def test_unreadable_files_are_skipped_with_a_reason(tmp_path: Path):
    root = write_class_tree(tmp_path / "d", per_class=2)
    (root / "with_mask" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    loaded = load_samples(index_class_folders(root).samples, size=32)
    assert len(loaded.samples) == 6
    assert len(loaded.problems) == 1 and "broken.jpg" in loaded.problems[0]
