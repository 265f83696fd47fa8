"""pipeline.checkpoint and pipeline.models: round trip, every refusal names the file, architectures build offline."""

import json
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file

from datasets.covidx import LABELS_BINARY
from datasets.torch_dataset import LABEL_ORDER
from pipeline.checkpoint import CheckpointError, CheckpointMeta, load_checkpoint, model_input, save_checkpoint
from pipeline.models import ARCHITECTURES, SmallCNN, build_classifier


@pytest.fixture
def saved(tmp_path):
    """A seeded small_cnn saved as tmp_path/m.safetensors, its metadata, and the model."""
    torch.manual_seed(3)
    model = build_classifier("small_cnn", 3).eval()
    meta = CheckpointMeta("small_cnn", LABEL_ORDER, 32, seed=3, train_sha256="ab" * 32,
                          validation={"macro_f1": 0.5}, epoch=4)
    return save_checkpoint(model, meta, tmp_path / "m.safetensors"), meta, model


def test_round_trip_restores_weights_metadata_and_outputs(saved):
    path, meta, model = saved
    loaded, loaded_meta = load_checkpoint(path, labels=LABEL_ORDER, architecture="small_cnn")
    assert loaded_meta == meta
    assert not loaded.training
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert load_checkpoint(path.with_suffix(".json"))[1] == meta  # either file names the checkpoint


def test_class_order_mismatch_is_refused(saved):
    path = saved[0]
    with pytest.raises(CheckpointError, match="class order") as error:
        load_checkpoint(path, labels=tuple(reversed(LABEL_ORDER)))
    assert str(path) in str(error.value)
    with pytest.raises(CheckpointError, match="class order"):
        load_checkpoint(path, labels=LABELS_BINARY)


def test_other_architecture_is_refused(saved):
    with pytest.raises(CheckpointError, match="architecture 'small_cnn' is not the expected 'resnet18'") as error:
        load_checkpoint(saved[0], architecture="resnet18")
    assert str(saved[0]) in str(error.value) and "pass a checkpoint of a resnet18" in str(error.value)


def test_corrupt_weights_are_refused(saved):
    path = saved[0]
    path.write_bytes(b"\x00" * 7 + b"not a safetensors file")
    with pytest.raises(CheckpointError, match="unreadable weights") as error:
        load_checkpoint(path)
    assert str(path) in str(error.value)


def test_truncated_or_bit_flipped_weights_are_refused(saved):
    path = saved[0]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"unreadable weights .*retrain, or restore the file") as error:
        load_checkpoint(path)
    assert str(path) in str(error.value)
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 0x01]))  # one bit of the last tensor: still a valid file
    with pytest.raises(CheckpointError, match="do not match the sha256 recorded") as error:
        load_checkpoint(path)
    assert str(path) in str(error.value)


def test_weights_without_a_recorded_sha256_still_load(saved):
    path, meta, model = saved
    save_file(model.state_dict(), str(path), metadata={"architecture": meta.architecture})
    loaded, _ = load_checkpoint(path)
    assert all(torch.equal(loaded.state_dict()[name], t) for name, t in model.state_dict().items())


class CreatesFileWhenUnpickled:
    def __init__(self, sentinel):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return open, (self.sentinel, "w")


def test_a_pickle_is_never_unpickled(saved, tmp_path, monkeypatch):
    """Weights-only: a pickled state dict under the checkpoint's name is refused, its code never runs."""
    path, sentinel = saved[0], tmp_path / "unpickled"
    torch.save({"features.0.weight": CreatesFileWhenUnpickled(sentinel)}, path)

    def refuse(*args, **kwargs):
        raise AssertionError("the checkpoint was unpickled")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    with pytest.raises(CheckpointError, match="unreadable weights") as error:
        load_checkpoint(path)
    assert str(path) in str(error.value) and not sentinel.exists()


def test_weights_of_another_model_are_refused(saved):
    path, meta, _ = saved
    path.with_suffix(".json").write_text(json.dumps({**json.loads(meta.to_json()), "architecture": "resnet18"}))
    with pytest.raises(CheckpointError, match="do not fit a resnet18"):
        load_checkpoint(path)


def test_missing_weights_are_refused(saved):
    path = saved[0]
    path.unlink()
    with pytest.raises(CheckpointError, match="weights not found"):
        load_checkpoint(path)


@pytest.mark.parametrize(("edit", "message"), [
    (None, "metadata not found"),
    ("{", "malformed"),
    (json.dumps({"architecture": "small_cnn", "image_size": 32}), "malformed"),
    (json.dumps({"architecture": "vgg11", "labels": list(LABEL_ORDER), "image_size": 32}), "unknown architecture"),
])
def test_missing_or_bad_metadata_is_refused(saved, edit, message):
    meta_path = saved[0].with_suffix(".json")
    if edit is None:
        meta_path.unlink()
    else:
        meta_path.write_text(edit)
    with pytest.raises(CheckpointError, match=message) as error:
        load_checkpoint(saved[0])
    assert str(meta_path) in str(error.value)


def test_save_writes_only_the_two_files(saved, tmp_path):
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]
    assert set(load_file(str(saved[0]))) == set(saved[2].state_dict())


def test_model_input_resizes_and_normalises():
    meta = CheckpointMeta("small_cnn", LABEL_ORDER, 8)
    gray = torch.full((2, 20, 30), 0.5)
    assert torch.allclose(model_input(gray, meta), torch.zeros(2, 1, 8, 8), atol=1e-6)
    white = model_input(torch.ones(1, 1, 8, 8), meta)
    assert torch.allclose(white, torch.full((1, 1, 8, 8), 0.5 / 0.225))


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_every_architecture_builds_offline_with_a_one_channel_stem(architecture):
    torch.manual_seed(0)
    model = build_classifier(architecture, 3).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 1, 64, 64)).shape == (2, 3)


def test_small_cnn_keeps_a_three_by_three_map_before_its_head():
    model = SmallCNN(3).eval()
    features = model.features(torch.rand(1, 1, 96, 96))
    assert features.shape == (1, 64, 6, 6)
    assert model.head[-1].in_features == 64 * 9
    with torch.no_grad():  # any input of 16 px or more
        assert model(torch.rand(1, 1, 16, 16)).shape == (1, 3)


def test_unknown_architecture_is_refused():
    with pytest.raises(ValueError, match="unknown architecture 'vgg11'"):
        build_classifier("vgg11", 3)
