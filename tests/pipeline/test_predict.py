"""pipeline.predict on real files: the contract's table, probabilities, rejects, refusals."""

from dataclasses import replace

import pandas as pd
import pytest
import torch

from datasets.images import read_image
from datasets.synthetic import generate, split_records
from datasets.torch_dataset import LABEL_ORDER
from pipeline.checkpoint import CheckpointError, CheckpointMeta, load_checkpoint, model_input, save_checkpoint
from pipeline.models import build_classifier
from pipeline.predict import predict_split

COLUMNS = ["filename", "patient_id", "source", "label", "predicted", "correct", "prob_normal", "prob_pneumonia",
           "prob_COVID-19"]


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """The 15 test records of a synthetic COVIDx folder (64 px images)."""
    root = generate(tmp_path_factory.mktemp("synthetic") / "covidx", n_train=3, n_test=15, image_size=64, seed=1)
    return split_records(root, "test")


def checkpoint(path, labels=LABEL_ORDER, *, poison=False):
    """A seeded small_cnn for 32 px input (trained in effect: BN statistics set), saved at `path`."""
    torch.manual_seed(0)
    model = build_classifier("small_cnn", len(labels))
    with torch.no_grad():
        model.train()(torch.randn(16, 1, 32, 32))  # non-trivial BatchNorm running statistics
        if poison:
            model.features[0].weight[0, 0, 1, 1] = float("nan")
    return save_checkpoint(model, CheckpointMeta("small_cnn", tuple(labels), 32), path)


def test_table_follows_the_contract_and_matches_the_model(records, tmp_path):
    path = checkpoint(tmp_path / "a.safetensors")
    out = tmp_path / "predictions" / "a_test.csv"
    result = predict_split(path, records, out, batch_size=4)
    table = result.table
    assert result.rejected == []
    assert list(table.columns) == COLUMNS
    assert table["filename"].tolist() == [record.filename for record in records]
    assert table["source"].tolist() == [record.source for record in records]
    probabilities = table[COLUMNS[-3:]].to_numpy()
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    assert probabilities.sum(axis=1) == pytest.approx(1.0, abs=1e-9)
    assert table["predicted"].tolist() == [LABEL_ORDER[i] for i in probabilities.argmax(axis=1)]
    assert table["correct"].tolist() == (table["label"] == table["predicted"]).tolist()
    # Reference: the model on model_input(read_image(...)), one image at a time.
    model, meta = load_checkpoint(path)
    with torch.no_grad():
        expected = torch.cat([model(model_input(torch.from_numpy(read_image(record.path))[None], meta)).softmax(1)
                              for record in records])
    assert torch.allclose(torch.tensor(probabilities, dtype=torch.float32), expected, atol=1e-5)
    written = pd.read_csv(out, keep_default_na=False)
    assert list(written.columns) == COLUMNS and written["filename"].tolist() == table["filename"].tolist()
    assert written[COLUMNS[-3:]].to_numpy() == pytest.approx(probabilities)
    assert predict_split(path, records, tmp_path / "b.csv", batch_size=64).table.equals(table)  # any batch size


def test_unreadable_images_are_rejected_and_the_rest_predicted(records, tmp_path):
    records = list(records)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    records[2] = replace(records[2], path=corrupt)
    records[9] = replace(records[9], path=tmp_path / "gone.png")
    result = predict_split(checkpoint(tmp_path / "a"), records, tmp_path / "a_test.csv", batch_size=4)
    assert [reject.filename for reject in result.rejected] == [records[2].filename, records[9].filename]
    assert all(reject.reason.startswith("ImageReadError") for reject in result.rejected)
    assert result.table["filename"].tolist() == [r.filename for i, r in enumerate(records) if i not in (2, 9)]


def test_a_checkpoint_for_other_classes_is_refused(records, tmp_path):
    path = checkpoint(tmp_path / "a", labels=tuple(reversed(LABEL_ORDER)))
    with pytest.raises(CheckpointError, match="class order"):
        predict_split(path, records, tmp_path / "a_test.csv")
    assert not (tmp_path / "a_test.csv").exists()


def test_a_model_that_outputs_nan_is_an_error_naming_the_checkpoint(records, tmp_path):
    path = checkpoint(tmp_path / "poisoned.safetensors", poison=True)
    with pytest.raises(CheckpointError, match="NaN or inf") as error:
        predict_split(path, records, tmp_path / "a_test.csv")
    assert str(path) in str(error.value)
    assert not (tmp_path / "a_test.csv").exists()
