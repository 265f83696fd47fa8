"""The synthetic text shortcut is real: a small CNN trained on `train` leans on the burned-in text.

Trained on the images with text, its COVID-19 recall falls on `test_decorrelated` (the same
radiographs with the hospital, hence the text, drawn independently of the label); trained on the
ground-truth clean images it learns the lesions instead, and the text no longer moves it.

The CNN is pipeline.models' small_cnn, which keeps a coarse 3×3 spatial map before its linear head: a
globally pooled CNN trained this briefly cannot tell a lung opacity from the heart (about 45% on clean
images), so it would show nothing about lesions either way. Marked slow: it trains two CNNs.
"""

import pytest
import torch
from torch import nn

from datasets.synthetic import generate, split_records
from datasets.torch_dataset import LABEL_ORDER, CXRDataset
from pipeline.models import build_classifier

N_TRAIN, N_TEST, SIZE, EPOCHS, BATCH, LEARNING_RATE = 300, 90, 96, 12, 32, 3e-3
COVID = LABEL_ORDER.index("COVID-19")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("shortcut") / "covidx", n_train=N_TRAIN, n_test=N_TEST, image_size=SIZE,
                    seed=0, shortcut=0.9)


def load(root, split, *, clean=False):
    """All images of a split as ((n, 1, H, W) normalised float32, (n,) label indices)."""
    dataset = CXRDataset(split_records(root, split, clean=clean))
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    return (images - 0.5) / 0.225, torch.tensor(dataset.targets)


def train(images, labels, seed=0):
    """Adam with a one-cycle schedule on cross-entropy (as pipeline.quick_audit), deterministic by seed."""
    torch.manual_seed(seed)
    model = build_classifier("small_cnn", len(LABEL_ORDER))
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    steps = EPOCHS * -(-len(images) // BATCH)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, LEARNING_RATE, total_steps=steps)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(EPOCHS):
        for batch in torch.randperm(len(images), generator=generator).split(BATCH):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(images[batch]), labels[batch]).backward()
            optimizer.step()
            schedule.step()
    return model.eval()


def predict(model, images):
    with torch.no_grad():
        return model(images).argmax(dim=1)


def scores(predicted, labels):
    """(accuracy, COVID-19 recall) in percent."""
    accuracy = float((predicted == labels).float().mean()) * 100
    recall = float((predicted[labels == COVID] == COVID).float().mean()) * 100
    return accuracy, recall


@pytest.mark.slow
def test_a_cnn_trained_with_text_loses_covid_recall_when_the_text_is_decorrelated(root):
    model = train(*load(root, "train"))
    test_images, labels = load(root, "test")
    decorrelated_images, decorrelated_labels = load(root, "test_decorrelated")
    assert torch.equal(labels, decorrelated_labels)
    accuracy, recall = scores(predict(model, test_images), labels)
    decorrelated_accuracy, decorrelated_recall = scores(predict(model, decorrelated_images), labels)
    print(f"\ntext-trained: test accuracy {accuracy:.1f}%, COVID-19 recall {recall:.1f}%; test_decorrelated "
          f"accuracy {decorrelated_accuracy:.1f}%, COVID-19 recall {decorrelated_recall:.1f}%")
    assert recall >= 70
    assert recall - decorrelated_recall >= 15
    assert accuracy - decorrelated_accuracy >= 10

    clean = train(*load(root, "train", clean=True))
    clean_test, _ = load(root, "test", clean=True)
    clean_decorrelated, _ = load(root, "test_decorrelated", clean=True)
    on_clean = predict(clean, clean_test)
    assert torch.equal(on_clean, predict(clean, clean_decorrelated))  # the same radiographs: no drop at all
    clean_accuracy, clean_recall = scores(on_clean, labels)
    text_accuracy, text_recall = scores(predict(clean, test_images), labels)
    text_decorrelated_accuracy, text_decorrelated_recall = scores(predict(clean, decorrelated_images), labels)
    print(f"clean-trained: clean test accuracy {clean_accuracy:.1f}%, COVID-19 recall {clean_recall:.1f}%; with "
          f"text: test recall {text_recall:.1f}%, test_decorrelated recall {text_decorrelated_recall:.1f}% "
          f"(accuracy {text_accuracy:.1f}% / {text_decorrelated_accuracy:.1f}%)")
    assert clean_accuracy >= 65 and clean_recall >= 60  # it learned the lesions, not chance
    assert abs(text_recall - text_decorrelated_recall) < 15  # the text no longer moves it ...
    assert abs(text_recall - text_decorrelated_recall) <= (recall - decorrelated_recall) - 15  # ... as it did
