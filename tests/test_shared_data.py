"""Checks on the real data in ../shared/data (skipped when it is absent, as in a fresh clone)."""

from pathlib import Path

import pytest
from tests.conftest import SHARED_DATA

from maskwatch.data.index import index_source
from maskwatch.data.splits import read_manifest

pytestmark = pytest.mark.shared_data
REPO = Path(__file__).resolve().parents[1]
SPLITS = REPO / "recipes" / "default_splits.csv.gz"


@pytest.fixture(autouse=True)
def _run_from_repo_root(monkeypatch):
    monkeypatch.chdir(REPO)  # the manifest's paths are relative to the repository root (../shared/data/...)


def test_sources_index_with_the_documented_counts():
    chandrika = index_source(SHARED_DATA / "chandrika")
    assert len(chandrika.samples) == 3475 and not chandrika.problems
    masked = index_source(SHARED_DATA / "maskedface-net")
    assert len(masked.samples) == 767
    scenes = index_source(SHARED_DATA / "scenes", min_face=0)
    assert len(scenes.samples) == 1883 and len({s.path for s in scenes.samples}) == 428
    ilc = index_source(SHARED_DATA / "scenes-ilc", min_face=0)
    assert len(ilc.samples) == 3401 and len({s.path for s in ilc.samples}) == 1353


def test_extended_split_kept_every_earlier_assignment():
    """Adding scenes-ilc (issue 9) moved no row of the three earlier sources: 927 test faces as before."""
    rows = read_manifest(SPLITS)
    earlier = [r for r in rows if r.sample.source != "scenes-ilc"]
    assert len(earlier) == 5972 and sum(r.split == "test" for r in earlier) == 927
    assert {r.sample.source for r in rows} == {"chandrika", "maskedface-net", "scenes", "scenes-ilc"}


def test_committed_split_is_leak_free():
    rows = read_manifest(SPLITS)
    split_of_group: dict[str, str] = {}
    split_of_scene: dict[Path, str] = {}
    for row in rows:
        assert split_of_group.setdefault(row.group, row.split) == row.split
        if row.sample.box is not None:
            assert split_of_scene.setdefault(row.sample.path, row.split) == row.split


@pytest.mark.slow
def test_shipped_model_reproduces_its_recorded_test_scores():
    """The int8 file in the package scores what its model card says on the committed test split, per source."""
    import json

    from maskwatch.runtime.assets import asset_path
    from maskwatch.runtime.classifier import OnnxMaskClassifier
    from maskwatch.runtime.evaluate import by_source, evaluate_source

    recorded = json.loads(asset_path("test_metrics.json").read_text())["int8"]
    result, _, problems = evaluate_source(SPLITS, OnnxMaskClassifier(), split="test")
    assert not problems
    assert result["n"] == sum(1 for r in read_manifest(SPLITS) if r.split == "test")
    reports = by_source(result)
    assert set(reports) == set(recorded)
    for source, expected in recorded.items():
        report = reports[source]
        assert report["n"] == expected["n"]
        assert report["accuracy"] == pytest.approx(expected["accuracy"], abs=0.0025), source
        assert report["macro_f1"] == pytest.approx(expected["macro_f1"], abs=0.005), source


@pytest.mark.slow
def test_shipped_model_looks_at_the_lower_face():
    """Median Grad-CAM focus of the shipped model stays >= 0.6 for masked classes on every source (every 4th test face)."""
    pytest.importorskip("pytorch_grad_cam")
    from maskwatch.explain.gradcam import Explainer
    from maskwatch.explain.report import focus_report, summarise
    from maskwatch.runtime.detectors import make_detector
    from maskwatch.training.checkpoint import load_checkpoint, resolve_checkpoint

    net, meta = load_checkpoint(resolve_checkpoint("default"))
    samples = [r.sample for r in read_manifest(SPLITS) if r.split == "test"][::4]
    detector = make_detector("centerface", input_size=0, threshold=0.3)
    records, _ = focus_report(
        samples, Explainer(net, meta["labels"], meta["temperature"], meta.get("logit_offsets")), meta, detector=detector
    )
    per_source = summarise(records)["per_source"]
    for source, per_class in per_source.items():
        for label in ("with_mask", "mask_incorrect"):
            if label in per_class and per_class[label]["n"] >= 3:
                assert per_class[label]["median_focus"] >= 0.6, (source, label, per_class[label])
