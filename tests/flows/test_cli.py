"""The command line: help, exit codes, and the single-image commands on real files (real CRAFT, real iGOS++)."""

import pandas as pd
import pytest
from typer.testing import CliRunner

from datasets.synthetic import generate
from flows.cli import app
from pipeline.checkpoint import CheckpointMeta, save_checkpoint
from pipeline.models import build_classifier
from tests.pipeline import burn, film

RUNNER = CliRunner()
LABELS = ("normal", "pneumonia", "COVID-19")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    import torch

    torch.manual_seed(0)
    return save_checkpoint(build_classifier("small_cnn", 3), CheckpointMeta("small_cnn", LABELS, 48),
                           tmp_path_factory.mktemp("ckpt") / "a.safetensors")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("data") / "covidx", n_train=6, n_test=3, image_size=64, seed=0)


def test_help_lists_every_command():
    result = RUNNER.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("demo", "run", "synth", "explain", "detect-text", "clean", "report", "review", "serve"):
        assert command in result.output


def test_explain_writes_a_heatmap(tmp_path, dataset, checkpoint):
    image = next((dataset / "test").iterdir())
    out = tmp_path / "heat.png"
    result = RUNNER.invoke(app, ["explain", str(image), "--checkpoint", str(checkpoint), "--out", str(out),
                                 "--mask-size", "7", "--iterations", "2"])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "heatmap" in result.output


def test_explain_errors_name_the_file_and_exit_1(tmp_path, dataset, checkpoint):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    result = RUNNER.invoke(app, ["explain", str(broken), "--checkpoint", str(checkpoint)])
    assert result.exit_code == 1 and "broken.png" in result.output
    image = next((dataset / "test").iterdir())
    result = RUNNER.invoke(app, ["explain", str(image), "--checkpoint", str(tmp_path / "missing.safetensors")])
    assert result.exit_code == 1 and "missing" in result.output
    result = RUNNER.invoke(app, ["explain", str(image), "--checkpoint", str(checkpoint), "--target", "flu"])
    assert result.exit_code == 1 and "'flu' is not one of" in result.output


def test_detect_text_finds_a_word_and_records_an_unreadable_file(tmp_path):
    import cv2

    image, _ = burn(film(), "PORTABLE", 120, 10, 18)
    folder = tmp_path / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), (image * 255).astype("uint8"))
    (folder / "b.png").write_bytes(b"")
    out = tmp_path / "boxes.csv"
    result = RUNNER.invoke(app, ["detect-text", str(folder), "--out", str(out), "--canvas", "512"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out).set_index("path")
    assert table.loc[str(folder / "a.png"), "n_boxes"] >= 1
    assert table.loc[str(folder / "b.png"), "status"] == "rejected"


def test_clean_refuses_a_destination_inside_the_source(dataset):
    result = RUNNER.invoke(app, ["clean", str(dataset), str(dataset / "pp"), "--split", "test_synthetic.txt"])
    assert result.exit_code == 2 and "inside the source root" in result.output
    assert not (dataset / "pp").exists()


def test_bad_config_and_missing_run_exit_2_before_any_work(tmp_path):
    config = tmp_path / "cfg.yaml"
    config.write_text("train: {epochs: 0}\n")
    result = RUNNER.invoke(app, ["demo", "--out", str(tmp_path / "run"), "--config", str(config)])
    assert result.exit_code == 2 and "epochs" in result.output
    assert not (tmp_path / "run").exists()
    result = RUNNER.invoke(app, ["report", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "no such run folder" in result.output
