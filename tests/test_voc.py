"""One VOC reader: the training index and the runtime's scene scoring read the same faces from the same files."""

from pathlib import Path

import numpy as np

from maskwatch import voc
from maskwatch.runtime.scenes import load_ground_truth


def test_training_index_and_scene_scoring_share_the_reader(voc_scenes: Path):
    from maskwatch.data import index

    assert index.parse_voc is voc.parse_voc and index.find_scene_image is voc.find_scene_image  # old imports work
    report = index.index_voc_scenes(voc_scenes, min_face=0)
    truth, problems = load_ground_truth(voc_scenes / "images", voc_scenes / "annotations")
    assert not problems and not report.problems
    from_index = sorted((s.path.stem, s.label, s.box) for s in report.samples)
    from_truth = sorted((stem, label, tuple(box.tolist())) for stem, (_, faces) in truth.items() for label, box in faces)
    assert from_index == from_truth and len(from_index) == 8  # 2 scenes x (3 faces + 1 tiny box)
    assert all(isinstance(box, np.ndarray) for _, faces in truth.values() for _, box in faces)


def test_unusable_files_are_problem_lines_not_exceptions(voc_scenes: Path):
    (voc_scenes / "annotations" / "broken.xml").write_text("<annotation><object>")
    (voc_scenes / "annotations" / "orphan.xml").write_text("<annotation><filename>none.jpg</filename></annotation>")
    (voc_scenes / "annotations" / "odd.xml").write_text(
        "<annotation><object><name>hat</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax>"
        "</bndbox></object></annotation>"
    )
    (voc_scenes / "images" / "odd.jpg").write_bytes((voc_scenes / "images" / "scene0.jpg").read_bytes())
    folder = voc.read_voc_folder(voc_scenes / "images", voc_scenes / "annotations")
    assert len(folder.scenes) == 3 and len(folder.problems) == 3
    assert any("broken.xml: not a readable VOC XML file" in p for p in folder.problems)
    assert any("orphan.xml: no image named orphan.*" in p for p in folder.problems)
    assert any("odd.xml: skipped object" in p and "hat" in p for p in folder.problems)
    assert voc.read_voc_folder(voc_scenes / "images", voc_scenes / "nope").problems == [
        f"{voc_scenes / 'nope'}: no annotations folder"
    ]


def test_pooled_scene_sets_keep_photos_of_the_same_name_apart(tmp_path: Path):
    from tests.conftest import write_voc_scene

    from maskwatch.runtime.scenes import pooled_ground_truth

    roots = [write_voc_scene(tmp_path / "a"), write_voc_scene(tmp_path / "b")]  # same file names in both
    pooled = pooled_ground_truth(roots, tmp_path / "unused.csv", "all")
    assert len(pooled) == 4 and {key.split(":")[0] for key in pooled} == {"0", "1"}
    assert len({path for path, _ in pooled.values()}) == 4
    # with a manifest, only the photos whose faces it puts in the split, from every folder
    manifest = tmp_path / "splits.csv"
    rows = ["path,label,source,x1,y1,x2,y2,group,split"]
    for root, split in zip(roots, ("val", "test")):
        for n, image in enumerate(sorted((root / "images").iterdir())):
            chosen = split if n == 0 else "train"
            rows.append(f"{image},with_mask,scenes,10,30,74,94,{root.name}/{image.stem},{chosen}")
    manifest.write_text("\n".join(rows) + "\n")
    val = pooled_ground_truth(roots, manifest, "val")
    assert [(key, path.name) for key, (path, _) in val.items()] == [("0:scene0", "scene0.jpg")]


def test_an_annotation_keeps_the_image_it_had_before_jfif_files_were_read(tmp_path: Path):
    """.jfif/.jpe became image suffixes later; beside another image of the same stem they are tried last, and the
    older choice between the other suffixes (by name) does not change."""
    (tmp_path / "x.jfif").write_bytes(b"")
    (tmp_path / "x.jpg").write_bytes(b"")
    assert voc.find_scene_image(tmp_path, tmp_path / "x.xml", "x.jpg").name == "x.jpg"
    (tmp_path / "x.bmp").write_bytes(b"")
    assert voc.find_scene_image(tmp_path, tmp_path / "x.xml", "x.jpg").name == "x.bmp"
    (tmp_path / "y.jfif").write_bytes(b"")
    assert voc.find_scene_image(tmp_path, tmp_path / "y.xml", "y.jfif").name == "y.jfif"
