"""Focus guidance: the training-time focus equals what `maskwatch explain` measures, and masks follow augmentation."""

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

import torch  # noqa: E402
from tests.conftest import synthetic_face, write_class_tree  # noqa: E402
from torchvision.transforms import v2  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from maskwatch.cli import app  # noqa: E402
from maskwatch.data.transforms import eval_transform  # noqa: E402
from maskwatch.explain.focus import focus_score, lower_face_region, region_mask  # noqa: E402
from maskwatch.explain.gradcam import Explainer  # noqa: E402
from maskwatch.training.focus_guidance import cam_focus, focus_penalty, pool_masks  # noqa: E402
from maskwatch.training.models import build_model, resplit  # noqa: E402
from maskwatch.training.train import augment_batch  # noqa: E402

LABELS = ["with_mask", "without_mask", "mask_incorrect"]


def test_explainer_probabilities_carry_the_models_prior_correction():
    torch.manual_seed(0)
    model = build_model("mobilenet_v2", 3, pretrained=False, trainable_blocks=2).eval()
    crops = [synthetic_face(label, 64, seed=i) for i, label in enumerate(LABELS)]
    plain = Explainer(model, LABELS, 2.0).predict(crops)
    corrected = Explainer(model, LABELS, 2.0, [0.0, 0.0, -30.0]).predict(crops)
    assert corrected[:, 2].max() < 1e-9 and plain[:, 2].min() > 1e-6
    ratio = plain[:, 0] / plain[:, 1]
    assert np.allclose(corrected[:, 0] / corrected[:, 1], ratio, rtol=1e-4)  # the other classes keep their odds


def test_region_mask_counts_pixels_as_the_focus_score_does():
    region = np.array([10.2, 30.0, 50.7, 64.0])
    cam = np.random.default_rng(0).random((64, 64))
    mask = region_mask(region, 64)
    assert (cam * mask).sum() / cam.sum() == pytest.approx(focus_score(cam, region))


def test_cam_focus_matches_grad_cam_from_the_package():
    """The differentiable score used in training is the reported one (pytorch-grad-cam), to rounding."""
    torch.manual_seed(0)
    model = build_model("mobilenet_v2", 3, pretrained=False, trainable_blocks=4).eval()
    crops = np.stack([synthetic_face(label, 64, seed=i) for i, label in enumerate(LABELS * 2)])
    cams, probs = Explainer(model, LABELS)(list(crops))
    regions = [lower_face_region(np.array([4.0, 4.0, 60.0, 60.0]))] * len(crops)
    expected = [focus_score(cam, region) for cam, region in zip(cams, regions)]
    with torch.no_grad():
        activations = model.top(model.trunk(torch.stack([eval_transform()(c) for c in crops])))
        masks = torch.from_numpy(np.stack([region_mask(r, 64) for r in regions]))
        got = cam_focus(activations, model.head[-1], torch.from_numpy(probs.argmax(1)), pool_masks(masks))
    np.testing.assert_allclose(got.numpy(), expected, atol=0.01)


def test_cam_focus_has_a_gradient_that_raises_it():
    torch.manual_seed(0)
    activations = torch.rand(2, 8, 4, 4, requires_grad=True)
    head = torch.nn.Linear(8, 3)
    masks = torch.zeros(2, 8, 8)
    masks[:, 4:, :] = 1  # lower half
    focus = cam_focus(activations, head, torch.tensor([0, 1]), masks)
    focus.sum().backward()
    with torch.no_grad():
        raised = cam_focus(activations + 0.1 * activations.grad.sign(), head, torch.tensor([0, 1]), masks)
    assert (raised >= focus.detach()).all()


def test_penalty_has_no_way_out_through_an_empty_map():
    """A map negative everywhere has no Grad-CAM (focus 0, no gradient from the focus term); the evidence term still pulls."""
    maps = torch.full((1, 4, 4), -2.0, requires_grad=True)
    masks = torch.zeros(1, 8, 8)
    masks[:, 4:, :] = 1
    loss, focus = focus_penalty(maps, masks, goal=0.8, min_evidence=1.0)
    assert focus.item() == 0.0 and loss.item() == pytest.approx(0.8 + 3.0)
    loss.backward()
    assert (maps.grad[0, 2:] < 0).all()  # descending raises the lower half's evidence
    good = torch.full((1, 4, 4), -1.0)
    good[0, 2:] = 5.0
    loss, focus = focus_penalty(good, masks, goal=0.8, min_evidence=1.0)
    assert focus.item() > 0.8 and loss.item() == 0.0


def test_augmentation_moves_the_mask_with_the_image():
    crop = synthetic_face("with_mask", 32)
    mask = np.zeros((32, 32), np.uint8)
    mask[:, :8] = 1  # left strip
    flip = v2.Compose([v2.ToImage(), v2.RandomHorizontalFlip(1.0), v2.ToDtype(torch.float32, scale=True)])
    images, masks = augment_batch(crop[None], mask[None], flip)
    assert torch.allclose(images[0], torch.from_numpy(crop[:, ::-1].copy()).permute(2, 0, 1).float() / 255)
    pooled = masks[0].float()
    assert pooled[:, -8:].min() == 1 and pooled[:, :-8].max() == 0  # the strip is now on the right


def test_occlusion_hides_the_lower_face_or_the_band_above_it():
    from maskwatch.explain.report import OCCLUDER_RGB, hide, upper_face_region

    lower = np.array([10.0, 30.0, 50.0, 60.0])
    assert upper_face_region(lower).tolist() == [10.0, 0.0, 50.0, 30.0]
    crop = np.zeros((64, 64, 3), np.uint8)
    covered = hide(crop, lower)
    assert (covered[45, 20] == OCCLUDER_RGB).all() and (covered[10, 20] == 0).all() and (crop == 0).all()


def test_resplit_keeps_the_function_and_moves_the_cut():
    torch.manual_seed(0)
    model = build_model("mobilenet_v2", 3, pretrained=False, trainable_blocks=19).eval()
    images = torch.rand(2, 3, 32, 32)
    before = model(images)
    resplit(model, 4)
    model.eval()
    assert len(model.top) == 4 and not any(p.requires_grad for p in model.trunk.parameters())
    assert all(p.requires_grad for p in model.top.parameters())
    assert torch.allclose(model(images), before, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("cache_views", ["1", "0"])  # cached trunk features, and online augmentation of the whole net
def test_focus_guided_fine_tune_logs_focus_each_epoch(tmp_path: Path, cache_views: str):
    faces = write_class_tree(tmp_path / "faces", per_class=8, size=48)
    init = tmp_path / "init.safetensors"
    from maskwatch.training.checkpoint import save_checkpoint

    model = build_model("mobilenet_v2", 3, pretrained=False, trainable_blocks=19)
    meta = {"model": "mobilenet_v2", "labels": LABELS, "input_size": 32, "margin": 0.15, "trainable_blocks": 19}
    save_checkpoint(model, {**meta, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "temperature": 1.0}, init)
    out = tmp_path / "run"
    options = ["--input-size", "32", "--cache-views", cache_views, "--batch-size", "16"]
    result = CliRunner().invoke(
        app,
        ["train", "--data", str(faces), "--init", str(init), "--trainable-blocks", "3", "--epochs", "2", "--out", str(out)]
        + ["--focus-weight", "1.0", *options],
    )
    assert result.exit_code == 0, result.output
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 2 and all(0 <= row["val_median_focus"] <= 1 for row in history)
    assert "train_mean_focus" in (out / "metrics.csv").read_text().splitlines()[0]
    assert json.loads((out / "report.json").read_text())["test_focus"]["all"]  # whichever classes the tiny test split holds


def test_training_runs_with_deterministic_kernels_and_restores_the_setting():
    """Two processes training with the focus loss drifted apart (weights differing by 2e-4 after two epochs) until
    training ran with deterministic kernels; the setting must not leak into the caller."""
    from maskwatch.training.train import deterministic_algorithms

    assert not torch.are_deterministic_algorithms_enabled()
    with deterministic_algorithms():
        assert torch.are_deterministic_algorithms_enabled()
    assert not torch.are_deterministic_algorithms_enabled()
