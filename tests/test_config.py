"""The training config is defined once: YAML, `maskwatch train` flags and the saved config.json all come from it."""

import dataclasses
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("yaml")

from maskwatch import cli_train  # noqa: E402
from maskwatch.cli import app  # noqa: E402
from maskwatch.training.config import ConfigError, TrainConfig, load_config, option_specs  # noqa: E402

runner = CliRunner()
RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_yaml_scientific_notation_loads_as_a_float(tmp_path: Path):
    # PyYAML (YAML 1.1) reads 1e-3 as the string "1e-3"; the model must still give a float.
    config = load_config(write(tmp_path, "lr: 1e-3\nweight_decay: 5e-5\n"))
    assert config.lr == 0.001 and isinstance(config.lr, float)
    assert config.weight_decay == 5e-5


def test_a_wrong_type_is_one_line_naming_file_key_and_type(tmp_path: Path):
    path = write(tmp_path, "epochs: ten\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value) == f"{path}: epochs must be an integer, got 'ten'"
    result = runner.invoke(app, ["train", "--config", str(path)])
    assert result.exit_code == 2  # 2: nothing could run (README, Reliability)
    assert "Traceback" not in result.output
    assert "epochs must be an integer" in result.output and str(path) in result.output
    assert "Traceback" not in str(result.exception or "")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("class_weighting: squared\n", "class_weighting must be one of none, inverse, sqrt_inverse"),
        ("pretrained: maybe\n", "pretrained must be true or false"),
        ("margin: wide\n", "margin must be a number"),
        ("epochs: 2.5\n", "epochs must be an integer"),
        ("model: 5\n", "model must be a string"),
        ("- a list\n", "expected a mapping"),
    ],
)
def test_other_wrong_values_are_refused(tmp_path: Path, text: str, expected: str):
    with pytest.raises(ConfigError, match=expected):
        load_config(write(tmp_path, text))


def test_unknown_key_suggests_the_close_match(tmp_path: Path):
    with pytest.raises(ConfigError, match="unknown key 'learning_rat'"):
        load_config(write(tmp_path, "learning_rat: 0.1\n"))
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        load_config(write(tmp_path, "epoch: 3\n"))


def test_a_single_path_and_numbers_in_paths_are_kept_as_text(tmp_path: Path):
    config = load_config(write(tmp_path, "data: some/folder\nexclude: [2024, x.txt]\nrelabel: fixes.txt\n"))
    assert config.data == ("some/folder",) and config.exclude == ("2024", "x.txt") and config.relabel == ("fixes.txt",)


def test_replace_validates_and_keeps_unchanged_fields():
    config = TrainConfig().replace(epochs=3, lr=None)
    assert config.epochs == 3 and config.lr == TrainConfig().lr
    with pytest.raises(ValueError):
        TrainConfig().replace(epochs="ten")


def test_every_field_is_a_flag_and_every_old_flag_still_exists():
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    flags = [spec.flag for spec in option_specs()]
    assert len(flags) == len(dataclasses.fields(TrainConfig))
    old = (
        "--config --data --out --model --init --epochs --lr --batch-size --input-size --margin --trainable-blocks "
        "--cache-views --pretrained --no-pretrained --exclude --scene-oversample --focus-weight --focus-goal "
        "--focus-min-evidence --class-weighting --label-smoothing --weight-decay --patience --min-face --splits "
        "--seed --device --threads"
    ).split()
    for flag in {*flags, *old}:
        assert flag in result.output, flag


def test_cli_flags_override_the_yaml_file(tmp_path: Path, monkeypatch):
    seen = []
    monkeypatch.setattr(cli_train, "run_train_command", lambda cfg, fail: seen.append(cfg))
    path = write(tmp_path, "data: [a, b]\nepochs: 4\nlr: 1e-3\nclass_weighting: none\n")
    args = ["train", "--config", str(path), "--epochs", "9", "--data", "c", "--class-weighting", "inverse", "--no-pretrained"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    (config,) = seen
    assert (config.epochs, config.data, config.class_weighting, config.pretrained) == (9, ("c",), "inverse", False)
    assert config.lr == 0.001  # from the file, untouched by flags that were not given


def test_a_bad_flag_value_is_refused_before_training(monkeypatch):
    monkeypatch.setattr(cli_train, "run_train_command", lambda cfg, fail: pytest.fail("should not train"))
    assert runner.invoke(app, ["train", "--epochs", "ten"]).exit_code != 0
    assert runner.invoke(app, ["train", "--class-weighting", "squared"]).exit_code != 0
    result = runner.invoke(app, ["train", "--val-fraction", "-"])
    assert result.exit_code != 0 and "Traceback" not in result.output


def test_saved_config_json_round_trips(tmp_path: Path):
    config = TrainConfig(data=("faces", "scenes"), lr=3e-4, trainable_blocks=8, exclude=("x.txt",), class_weighting="none")
    saved = tmp_path / "config.json"
    saved.write_text(json.dumps(dataclasses.asdict(config), indent=2))  # what training writes into the run folder
    assert load_config(saved) == config


@pytest.mark.parametrize("recipe", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_recipe_loads(recipe: Path):
    assert isinstance(load_config(recipe), TrainConfig)
