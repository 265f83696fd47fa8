"""pipeline.train on real files: validation by patient, history, determinism, rejects, a known answer."""

import hashlib
from dataclasses import replace

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

import pipeline.train
from datasets.covidx import LABELS_BINARY, Record, patient_overlap, read_split, split_by_patient, write_split
from datasets.synthetic import SPLIT_FILES, generate, split_records
from datasets.torch_dataset import LABEL_ORDER
from pipeline.checkpoint import CheckpointError, CheckpointMeta, load_checkpoint, save_checkpoint
from pipeline.models import build_classifier
from pipeline.predict import predict_split
from pipeline.train import (
    FEW_VALIDATION_IMAGES,
    HISTORY_COLUMNS,
    TrainConfig,
    augment,
    class_weights,
    preload,
    scores,
    train_classifier,
)

TINY = TrainConfig(architecture="small_cnn", image_size=32, epochs=2, batch_size=8, val_fraction=0.25, patience=10)
CONTRACT_COLUMNS = ["epoch", "train_loss", "val_loss", "val_accuracy", "val_macro_f1", "val_covid_recall",
                    "learning_rate", "seconds"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A synthetic COVIDx folder: 36 training images (30 patients), 12 test images, 64 px."""
    return generate(tmp_path_factory.mktemp("synthetic") / "covidx", n_train=36, n_test=12, image_size=64, seed=0)


@pytest.fixture(scope="module")
def trained(root, tmp_path_factory):
    """TINY trained on the synthetic train split: (records, result)."""
    records = split_records(root, "train")
    return records, train_classifier(records, tmp_path_factory.mktemp("models") / "a.safetensors", TINY)


def brightness_split(folder, name, per_class, seed):
    """Real PNGs whose class is their brightness (normal dark, pneumonia mid, COVID-19 bright), one per patient."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for label, level in zip(LABEL_ORDER, (50, 128, 205), strict=True):
        for k in range(per_class):
            filename = f"{name}-{label}-{k}.png"
            pixels = np.clip(level + rng.normal(0, 20, (40, 40)), 0, 255).astype(np.uint8)
            assert cv2.imwrite(str(folder / filename), pixels)
            records.append(Record(f"{name}-{label}-{k}", filename, label, "rsna"))
    write_split(records, folder.parent / f"{name}.txt")
    return read_split(folder.parent / f"{name}.txt", folder)


@pytest.mark.parametrize(("change", "field"), [
    ({"architecture": "vgg11"}, "architecture"), ({"class_weighting": "inverse"}, "class_weighting"),
    ({"val_fraction": 0.0}, "val_fraction"), ({"val_fraction": 0.7}, "val_fraction"),
    ({"epochs": 0}, "epochs"), ({"batch_size": 1}, "batch_size"), ({"learning_rate": -1.0}, "learning_rate"),
    ({"learning_rate": float("nan")}, "learning_rate"), ({"weight_decay": -0.1}, "weight_decay"),
    ({"image_size": 8}, "image_size"), ({"schedule": "cosine"}, "schedule"),
    ({"init_checkpoint": "https://example.org/resnet18.pth"}, "init_checkpoint"),
    ({"mixed_precision": 1}, "mixed_precision"), ({"mixed_precision": "bf16"}, "mixed_precision"),
])
def test_config_rejects_bad_values_with_the_field_name(change, field):
    with pytest.raises(ValueError, match=field):
        replace(TINY, **change)


def test_checkpoint_metadata_and_history_follow_the_contract(root, trained):
    result = trained[1]
    _, meta = load_checkpoint(result.checkpoint, labels=LABEL_ORDER, architecture="small_cnn")
    assert meta.image_size == 32 and meta.seed == 0
    lines = (root / SPLIT_FILES["train"]).read_text().splitlines()
    images = [hashlib.sha256((root / "train" / line.split()[1]).read_bytes()).hexdigest() for line in lines]
    expected = "".join(f"{line}\t{image}\n" for line, image in zip(lines, images, strict=True))
    assert meta.train_sha256 == hashlib.sha256(expected.encode()).hexdigest()
    assert result.history_csv == result.checkpoint.with_name("a_history.csv")
    history = pd.read_csv(result.history_csv)
    assert list(history.columns) == CONTRACT_COLUMNS == list(HISTORY_COLUMNS)
    assert history["epoch"].tolist() == [1, 2]
    assert history[["val_accuracy", "val_macro_f1", "val_covid_recall"]].stack().between(0, 1).all()
    assert (history["seconds"] > 0).all() and (history["learning_rate"] > 0).all()
    # The selected epoch: best validation macro-F1, ties broken by the lower validation loss.
    best = history.sort_values(["val_macro_f1", "val_loss"], ascending=[False, True]).iloc[0]
    assert meta.epoch == result.epoch == best["epoch"]
    assert meta.validation["macro_f1"] == pytest.approx(best["val_macro_f1"])
    assert meta.validation["loss"] == pytest.approx(best["val_loss"])


def test_validation_is_carved_from_train_by_patient(trained):
    records, result = trained
    validation = [record for record in records if record.filename in result.validation_filenames]
    training = [record for record in records if record.filename not in result.validation_filenames]
    assert validation and len(training) == result.n_train
    assert not patient_overlap(training, validation)
    expected = split_by_patient(records, fraction=TINY.val_fraction, seed=TINY.seed)[1]
    assert [record.filename for record in expected] == list(result.validation_filenames)
    assert {record.label for record in validation} == set(LABEL_ORDER)  # stratified by label
    assert result.validation["images"] == len(validation)  # recorded: the report flags a small one


def test_an_epoch_chosen_on_few_validation_images_is_logged(trained, caplog):
    records, result = trained
    assert len(result.validation_filenames) < FEW_VALIDATION_IMAGES  # the tiny training set's split
    config = replace(TINY, epochs=1)
    with caplog.at_level("WARNING", logger="pipeline.train"):
        train_classifier(records, result.checkpoint.with_name("few.safetensors"), config)
    assert f"validation split of {len(result.validation_filenames)} images" in caplog.text


def test_same_seed_gives_identical_weights_and_another_seed_does_not(root, tmp_path):
    records = split_records(root, "train")
    config = replace(TINY, class_weighting="sampler", augment=True)
    weights = []
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        result = train_classifier(records, tmp_path / f"{name}.safetensors", replace(config, seed=seed))
        weights.append(load_file(str(result.checkpoint)))
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])
    assert not all(torch.equal(weights[0][name], weights[2][name]) for name in weights[0])


def test_unreadable_images_are_rejected_and_the_rest_trained(root, tmp_path):
    records = split_records(root, "train")
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(records[3].path.read_bytes()[:100])  # a truncated PNG
    records[3] = replace(records[3], path=corrupt)
    records[7] = replace(records[7], path=tmp_path / "missing.png")
    result = train_classifier(records, tmp_path / "a.safetensors", TINY)
    assert [(reject.filename, reject.reason.split(":")[0]) for reject in result.rejected] == [
        (records[3].filename, "ImageReadError"), (records[7].filename, "ImageReadError")]
    assert "not found" in result.rejected[1].reason
    assert result.n_train + len(result.validation_filenames) == len(records) - 2
    assert not {records[3].filename, records[7].filename} & set(result.validation_filenames)


def test_preload_keeps_readable_images_as_uint8(root, tmp_path):
    records = split_records(root, "test")[:4]
    records[1] = replace(records[1], path=tmp_path / "missing.png")
    images, kept, rejected = preload(records, 24)
    assert images.shape == (3, 24, 24) and images.dtype == torch.uint8
    assert kept == [0, 2, 3] and [reject.filename for reject in rejected] == [records[1].filename]


def test_a_learnable_task_is_learned_and_predicted(tmp_path):
    """Known answer: classes separated by brightness alone are learned within a few epochs."""
    train = brightness_split(tmp_path / "train", "train", 16, seed=0)
    test = brightness_split(tmp_path / "test", "test", 6, seed=1)
    config = replace(TINY, epochs=6, learning_rate=3e-3, schedule="onecycle", val_fraction=0.2)
    result = train_classifier(train, tmp_path / "m.safetensors", config)
    assert result.validation["accuracy"] == 1.0
    table = predict_split(result.checkpoint, test, tmp_path / "p.csv").table
    assert table["correct"].mean() >= 0.9


def test_init_checkpoint_must_have_the_data_labels(root, tmp_path):
    init = save_checkpoint(build_classifier("small_cnn", 2), CheckpointMeta("small_cnn", LABELS_BINARY, 32),
                           tmp_path / "init.safetensors")
    with pytest.raises(CheckpointError, match="class order"):
        train_classifier(split_records(root, "train"), tmp_path / "a", replace(TINY, init_checkpoint=str(init)))


def test_init_checkpoint_is_the_starting_point(trained, root, tmp_path):
    _, first = trained
    config = replace(TINY, epochs=1, learning_rate=1e-9, augment=False, init_checkpoint=str(first.checkpoint))
    again = train_classifier(split_records(root, "train"), tmp_path / "b", config)
    start, continued = load_file(str(first.checkpoint)), load_file(str(again.checkpoint))
    conv = "features.0.weight"
    assert torch.allclose(start[conv], continued[conv], atol=1e-6)  # a negligible step from the given weights


def test_class_weights_known_answers():
    targets = torch.tensor([0, 0, 1, 2])
    assert torch.allclose(class_weights(targets, LABEL_ORDER, "balanced"), torch.tensor([2 / 3, 4 / 3, 4 / 3]))
    assert torch.equal(class_weights(torch.tensor([0, 0, 1]), LABEL_ORDER, "balanced")[2], torch.tensor(0.0))
    assert torch.equal(class_weights(targets, LABEL_ORDER, "covidnext"), torch.tensor([0.05, 0.05, 1.0]))
    assert class_weights(targets, LABEL_ORDER, "none") is None
    assert class_weights(targets, LABEL_ORDER, "sampler") is None
    with pytest.raises(ValueError, match="3-class"):
        class_weights(torch.tensor([0, 1]), LABELS_BINARY, "covidnext")


def test_scores_known_answer():
    # Targets 0 0 1 2, predictions 0 1 1 1: F1 = 2·1/(2+1), 2·1/(1+3), 0; COVID-19 recall 0.
    logits = torch.eye(3)[[0, 1, 1, 1]] * 5
    result = scores(logits, torch.tensor([0, 0, 1, 2]), LABEL_ORDER)
    assert result["accuracy"] == 0.5
    assert result["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert result["covid_recall"] == 0.0


def test_augmentation_is_mild_and_never_flips():
    image = torch.zeros(64, 1, 32, 32)
    image[..., :, :12] = 1.0  # a bright left side (a laterality marker, the heart)
    generator = torch.Generator().manual_seed(0)
    out = augment(image, generator)
    assert out.shape == image.shape and out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out, image)
    left, right = out[..., :, :12].mean(dim=(1, 2, 3)), out[..., :, 20:].mean(dim=(1, 2, 3))
    assert (left > 0.7).all() and (right < 0.1).all()
    assert torch.equal(out, augment(image, torch.Generator().manual_seed(0)))


def test_a_last_batch_of_one_image_does_not_break_batch_norm(tmp_path):
    """39 training images in batches of 38: resnet18 at 32 px ends on a 1×1 map, where one image cannot train."""
    records = brightness_split(tmp_path / "train", "train", 16, seed=0)
    config = replace(TINY, architecture="resnet18", epochs=1, batch_size=38, val_fraction=0.2)
    result = train_classifier(records, tmp_path / "r.safetensors", config)
    assert result.n_train == 39 and len(result.validation_filenames) == 9
    assert np.isfinite(result.history["train_loss"]).all()


def test_mixed_precision_autocasts_the_forward_and_writes_a_finite_float32_checkpoint(root, trained, tmp_path,
                                                                                     monkeypatch):
    """bf16 autocast on the CPU: the convolutions run in bfloat16 (training and validation), the losses stay close
    to the fp32 run's with the same seed, and the weights written are finite float32."""
    output_dtypes: set[torch.dtype] = set()

    def recorded(architecture, classes):
        model = build_classifier(architecture, classes)
        first = next(module for module in model.modules() if isinstance(module, torch.nn.Conv2d))
        first.register_forward_hook(lambda _module, _inputs, output: output_dtypes.add(output.dtype))
        return model

    monkeypatch.setattr(pipeline.train, "build_classifier", recorded)
    records, fp32 = trained
    result = train_classifier(records, tmp_path / "bf16.safetensors", replace(TINY, mixed_precision=True),
                              device="cpu")
    assert output_dtypes == {torch.bfloat16}
    history = result.history
    assert len(history) == TINY.epochs and list(history.columns) == CONTRACT_COLUMNS
    assert np.isfinite(history[["train_loss", "val_loss"]].to_numpy()).all()
    assert history["train_loss"].iloc[0] == pytest.approx(fp32.history["train_loss"].iloc[0], rel=0.05)
    assert pd.read_csv(result.history_csv)["train_loss"].tolist() == pytest.approx(history["train_loss"].tolist())
    weights = load_file(str(result.checkpoint))
    floats = {name: tensor for name, tensor in weights.items() if tensor.is_floating_point()}
    assert floats and {tensor.dtype for tensor in floats.values()} == {torch.float32}
    assert all(torch.isfinite(tensor).all() for tensor in floats.values())
    model, meta = load_checkpoint(result.checkpoint, labels=LABEL_ORDER, architecture="small_cnn")
    assert meta.validation["macro_f1"] == pytest.approx(result.validation["macro_f1"])
    assert next(model.parameters()).dtype == torch.float32
