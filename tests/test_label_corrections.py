"""Label corrections (``--relabel``): the list format, what they change in training, and that the committed manifest
carries exactly the corrections of ``recipes/label_corrections.txt`` and no other departure from its folders."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import pytest

from maskwatch.data.corrections import apply_label_corrections, read_label_corrections
from maskwatch.data.index import Sample
from maskwatch.labels import canonical_label

REPO = Path(__file__).resolve().parents[1]
CORRECTIONS = REPO / "recipes" / "label_corrections.txt"
MANIFEST = REPO / "recipes" / "default_splits.csv.gz"


def test_a_list_reads_paths_with_spaces_aliases_and_reasons(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    listing = tmp_path / "lists" / "fixes.txt"
    listing.parent.mkdir()
    listing.write_text(
        "# a comment line\n\nfaces/with_mask/0_0 copy 2.jpg -> incorrect  # nose out\nnear.jpg->without_mask\n",
        encoding="utf-8",
    )
    first, second = read_label_corrections([listing])
    assert first.entry == "faces/with_mask/0_0 copy 2.jpg" and first.label == "mask_incorrect"
    assert (tmp_path / "faces/with_mask/0_0 copy 2.jpg").resolve() in first.paths  # relative to the working folder
    assert (listing.parent / "near.jpg").resolve() in second.paths and second.label == "without_mask"  # or the list's


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("faces/a.jpg mask_incorrect", "fixes.txt:2: expected 'PATH -> LABEL'"),
        ("-> mask_incorrect", "fixes.txt:2: expected 'PATH -> LABEL'"),
        ("faces/a.jpg -> ", "fixes.txt:2: expected 'PATH -> LABEL'"),
        ("faces/a.jpg -> masked_badly", "fixes.txt:2: unknown label 'masked_badly'"),
        ("faces/b.jpg -> without_mask", "fixes.txt:2: faces/b.jpg is corrected to mask_incorrect elsewhere"),
    ],
)
def test_a_malformed_line_is_refused_naming_file_and_line(tmp_path: Path, line: str, message: str):
    listing = tmp_path / "fixes.txt"
    listing.write_text(f"faces/b.jpg -> mask_incorrect\n{line}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_label_corrections([listing])


def test_an_unreadable_list_is_one_line(tmp_path: Path):
    with pytest.raises(ValueError, match=r"--relabel .*missing\.txt: cannot read"):
        read_label_corrections([tmp_path / "missing.txt"])


def test_only_whole_face_files_are_corrected_and_unused_entries_are_reported(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    listing = tmp_path / "fixes.txt"
    listing.write_text("faces/1.jpg -> mask_incorrect\nphoto.jpg -> without_mask\nfaces/gone.jpg -> with_mask\n")
    samples = [
        Sample(Path("faces/1.jpg"), "with_mask", "faces"),
        Sample(Path("faces/11.jpg"), "with_mask", "faces"),  # a suffix match would take this one too
        Sample(Path("photo.jpg"), "with_mask", "scenes", (0.0, 0.0, 10.0, 10.0)),  # a face in a photo: not one file
    ]
    corrected, unused = apply_label_corrections(samples, read_label_corrections([listing]))
    assert [s.label for s in corrected] == ["mask_incorrect", "with_mask", "with_mask"]
    assert corrected[0].path == samples[0].path and corrected[0].source == "faces"
    assert unused == ["photo.jpg", "faces/gone.jpg"]


def test_training_applies_the_corrections_when_indexing_and_when_reusing_a_manifest(tmp_path: Path, monkeypatch, caplog):
    pytest.importorskip("torch")
    from tests.conftest import write_class_tree

    from maskwatch.training.config import TrainConfig
    from maskwatch.training.train import prepare_data

    write_class_tree(tmp_path / "faces", per_class=4, size=32)
    monkeypatch.chdir(tmp_path)
    target = sorted((tmp_path / "faces" / "with_mask").iterdir())[0]
    listing = tmp_path / "fixes.txt"
    listing.write_text(f"faces/with_mask/{target.name} -> mask_incorrect  # nose out\nfaces/x.png -> with_mask\n")
    caplog.set_level(logging.INFO)
    fresh = TrainConfig(data=("faces",), out=str(tmp_path / "run"), input_size=16, relabel=(str(listing),))
    loaded, _, _ = prepare_data(fresh)
    labels = {s.path.name: s.label for s in loaded.samples if s.path.parent.name == "with_mask"}
    assert labels[target.name] == "mask_incorrect" and list(labels.values()).count("mask_incorrect") == 1
    assert "1 faces relabelled" in caplog.text and "faces/x.png matches no whole-face file" in caplog.text
    # The run's own manifest records the corrected label ...
    assert f"{target.name},mask_incorrect," in (tmp_path / "run" / "splits.csv").read_text()
    # ... and a manifest written before the correction gets it when reused with the list.
    plain = TrainConfig(data=("faces",), out=str(tmp_path / "plain"), input_size=16)
    prepare_data(plain)
    reused, _, _ = prepare_data(
        plain.replace(out=str(tmp_path / "again"), splits=str(tmp_path / "plain" / "splits.csv"), relabel=(str(listing),))
    )
    assert {s.path.name: s.label for s in reused.samples if s.path.parent.name == "with_mask"} == labels


def manifest_rows() -> list[list[str]]:
    import csv

    with gzip.open(MANIFEST, "rt", newline="") as handle:
        return list(csv.reader(handle))[1:]


def test_the_committed_manifest_carries_the_listed_corrections_and_no_other_relabel(monkeypatch):
    """A whole-face row's label is its folder's class unless recipes/label_corrections.txt corrects it, and then it is
    the corrected one: labels in the manifest cannot drift from the data without a listed reason."""
    monkeypatch.chdir(REPO)  # the manifest's and the list's paths are relative to the repository root
    corrections = read_label_corrections([CORRECTIONS])
    corrected = {path: c.label for c in corrections for path in c.paths}
    used = set()
    for path, label, _source, x1, *_ in manifest_rows():
        if x1:  # a face in a scene photo: its label comes from the annotation
            continue
        resolved = Path(path).resolve()
        expected = corrected.get(resolved, canonical_label(Path(path).parent.name))
        assert label == expected, path
        if resolved in corrected:
            used.add(resolved)
    assert all(c.paths & used for c in corrections), "a listed correction names no row of the manifest"
    assert len(corrections) == 70  # 16 from the screened audit, 54 from the blind one


def test_a_bom_and_two_spellings_of_one_file_are_read_as_meant(tmp_path: Path, monkeypatch):
    """Editors on Windows save UTF-8 with a byte-order mark and CRLF; two agreeing entries for one file both count as
    used (neither is reported as matching nothing)."""
    monkeypatch.chdir(tmp_path)
    listing = tmp_path / "fixes.txt"
    listing.write_bytes("faces/a.jpg -> mask_incorrect\r\n./faces/a.jpg -> incorrect  # again\r\n".encode("utf-8-sig"))
    corrections = read_label_corrections([listing])
    corrected, unused = apply_label_corrections([Sample(Path("faces/a.jpg"), "with_mask", "faces")], corrections)
    assert corrected[0].label == "mask_incorrect" and unused == []


def test_evaluate_scores_listed_files_under_their_corrected_label(tiny_model, tmp_path: Path, monkeypatch):
    """``maskwatch evaluate DIR --relabel LIST`` scores a class-folder tree as training sees it after the corrections;
    entries for files of other sources are one warning, not skipped files; a list naming no file at all (read from
    the wrong working folder) or a malformed one is one line, exit 2."""
    import json

    from tests.conftest import write_class_tree
    from tests.test_reliability_cli import invoke

    monkeypatch.chdir(tmp_path)
    write_class_tree(tmp_path / "faces", per_class=3, size=32)
    listing = tmp_path / "lists" / "fixes.txt"  # its paths are relative to the working folder, not to its own
    listing.parent.mkdir()
    listing.write_text("faces/with_mask/with_mask_0.png -> mask_incorrect  # nose out\nother/with_mask/x.jpg -> mask_incorrect\n")
    args = ["evaluate", "faces", "--model", str(tiny_model[1]), "--no-flip"]
    invoke([*args, "--json", "plain.json"], 0)
    output = invoke([*args, "--json", "fixed.json", "--relabel", str(listing)], 0).output
    support = {
        name: {label: row["support"] for label, row in json.loads(Path(name).read_text())["per_class"].items()}
        for name in ("plain.json", "fixed.json")
    }
    assert support["plain.json"] == {"with_mask": 3, "without_mask": 3, "mask_incorrect": 3}
    assert support["fixed.json"] == {"with_mask": 2, "without_mask": 3, "mask_incorrect": 4}
    assert "1 faces of faces carry a corrected label" in output
    assert "1 correction(s) name no whole-face file of faces (first: other/with_mask/x.jpg)" in output
    monkeypatch.chdir(tmp_path / "faces")  # the list's paths now resolve nowhere: scoring on folder labels would mislead
    result = invoke(["evaluate", ".", "--model", str(tiny_model[1]), "--relabel", str(listing)], 2)
    assert "none of the 2 corrections names a whole-face file of ." in result.output
    monkeypatch.chdir(tmp_path)
    listing.write_text("faces/with_mask/with_mask_0.png -> masked_badly\n")
    result = invoke([*args, "--relabel", str(listing)], 2)
    assert "fixes.txt:1: unknown label 'masked_badly'" in result.output


def test_a_manifest_is_relabelled_across_splits_before_one_split_is_kept(tmp_path: Path, monkeypatch, caplog):
    """A correction for a row of another split is not 'unmatched' (no warning), and only the asked split is kept."""
    from maskwatch.data.splits import ManifestRow, write_manifest
    from maskwatch.runtime.evaluate import samples_of

    monkeypatch.chdir(tmp_path)
    rows = [
        ManifestRow(Sample(Path("faces/with_mask/a.jpg"), "with_mask", "faces"), "faces/with_mask/a.jpg", "train"),
        ManifestRow(Sample(Path("faces/with_mask/b.jpg"), "with_mask", "faces"), "faces/with_mask/b.jpg", "test"),
    ]
    manifest = tmp_path / "splits.csv"
    write_manifest(rows, manifest)
    listing = tmp_path / "fixes.txt"
    listing.write_text("faces/with_mask/a.jpg -> mask_incorrect\nfaces/with_mask/b.jpg -> mask_incorrect\n")
    with caplog.at_level(logging.INFO):
        samples, problems = samples_of(manifest, "test", [listing])
    assert [(s.path.name, s.label) for s in samples] == [("b.jpg", "mask_incorrect")] and not problems
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert samples_of(manifest, "val", [listing]) == ([], [f"{manifest}: no rows in split 'val'"])
