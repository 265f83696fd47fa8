"""pipeline.explain: chunked iGOS++ explanations on disk, resume by input hash, rejects, the index contract.

The model is hand-built (a SmallCNN whose weights only pass pixels brighter than 0.8), so its answer is
known: "COVID-19" exactly when a white marker is burned into the film, "normal" otherwise. Its saliency must
therefore lie on the marker. The helpers here are shared with test_audit.py.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from datasets.covidx import Record
from pipeline.checkpoint import INPUT_MEAN, INPUT_STD, CheckpointMeta, save_checkpoint
from pipeline.explain import (
    INDEX_COLUMNS,
    ExplainConfig,
    ExplainError,
    chunk_path,
    explain_split,
    load_saliency,
)
from pipeline.models import build_classifier
from pipeline.text import TextBox, box_mask

SIZE = 64
LABELS = ("normal", "pneumonia", "COVID-19")
BRIGHT = 0.8  # the marker model passes pixels above this
FAST = ExplainConfig(mask_size=16, iterations=3, ig_steps=2, batch_size=4, chunk_size=3)


def marker_film(seed: int, marker: bool) -> tuple[np.ndarray, list[TextBox]]:
    """A (SIZE, SIZE) float32 film in [0.2, 0.6] (smooth ramp + noise) and, if `marker`, a white "R"
    burned near the top-left corner; returns the image and the marker's tight box."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.2, 0.55, SIZE, dtype=np.float32)
    image = (ramp[None, :] * 0.5 + ramp[:, None] * 0.5 + rng.uniform(0, 0.05, (SIZE, SIZE))).astype(np.float32)
    if not marker:
        return image, []
    canvas = np.zeros((SIZE, SIZE), np.uint8)
    cv2.putText(canvas, "R", (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.55, 255, 2, cv2.LINE_AA)
    ink = canvas.astype(np.float32) / 255
    rows, cols = np.nonzero(canvas)
    box = TextBox(int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1, 1.0)
    return np.maximum(image, ink), [box]


def write_png(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.round(np.clip(image, 0, 1) * 255).astype(np.uint8))
    return path


def marker_dataset(folder: Path, markers: tuple[bool, ...]) -> tuple[list[Record], dict[str, list[TextBox]]]:
    """PNG films under folder/test/ (COVID-19 with a marker, normal without), their records and boxes."""
    records, boxes = [], {}
    for i, marker in enumerate(markers):
        image, found = marker_film(i, marker)
        filename = f"film_{i}.png"
        records.append(Record(f"p{i}", filename, "COVID-19" if marker else "normal", "ricord" if marker else "rsna",
                              write_png(folder / "test" / filename, image)))
        boxes[filename] = found
    return records, boxes


def marker_model() -> nn.Module:
    """The "small_cnn" classifier with hand-set weights that reads only pixels brighter than BRIGHT.

    Channel 0 of every stage carries 10·relu(x − bright) (the first convolution and batch norm) through the
    ReLUs and max pools, every other channel is zero; the head gives logit(COVID-19) = 40 × the mean of
    channel 0's pooled features, logit(normal) = 1, logit(pneumonia) = −5. Written against the layer types
    only, so it holds for any number of stages and any pooled head.
    """
    model = build_classifier("small_cnn", len(LABELS)).eval()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    linear = next(m for m in model.modules() if isinstance(m, nn.Linear))
    per_channel = linear.in_features // convs[-1].out_channels  # flattened features of channel 0 come first
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        for conv in convs:
            conv.weight[0, 0, 1, 1] = 1.0
        convs[0].weight[0, 0, 1, 1] = 10.0
        for norm in norms:
            norm.weight.fill_(1.0)
            norm.running_mean.zero_()
            norm.running_var.fill_(1.0)
        norms[0].bias[0] = -10.0 * (BRIGHT - INPUT_MEAN) / INPUT_STD
        linear.weight[2, :per_channel] = 40.0 / per_channel
        linear.bias.copy_(torch.tensor([1.0, -5.0, 0.0]))
    return model


def marker_checkpoint(folder: Path, name: str = "a") -> Path:
    meta = CheckpointMeta("small_cnn", LABELS, image_size=SIZE)
    return save_checkpoint(marker_model(), meta, folder / "models" / f"{name}.safetensors")


@pytest.fixture(scope="module")
def explained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One explanation run over 5 readable films (3 with a marker), a corrupt file and a missing one."""
    root = tmp_path_factory.mktemp("explain")
    records, boxes = marker_dataset(root / "data", (True, False, True, True, False))
    (root / "data" / "test" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    records.insert(2, Record("px", "corrupt.png", "normal", "rsna", root / "data" / "test" / "corrupt.png"))
    records.append(Record("py", "missing.png", "normal", "rsna", root / "data" / "test" / "missing.png"))
    checkpoint = marker_checkpoint(root)
    result = explain_split(checkpoint, records, root / "run", FAST, split="test")
    return {"root": root, "records": records, "boxes": boxes, "checkpoint": checkpoint, "result": result}


def test_config_is_validated() -> None:
    for bad in ({"method": "gradcam"}, {"target": "truth"}, {"mode": "quick"}, {"mask_size": 0},
                {"chunk_size": 0}, {"seed": -1}, {"iterations": 2.5}, {"precision": "fp16"}, {"precision": "bf16 "}):
        with pytest.raises(ExplainError, match=next(iter(bad))):
            ExplainConfig(**bad)


def test_outputs_follow_the_contract(explained: dict) -> None:
    result, run = explained["result"], explained["root"] / "run"
    explain_dir = run / "explain" / "a"
    assert result.explain_dir == explain_dir
    index = pd.read_csv(explain_dir / "index.csv")
    assert tuple(index.columns) == INDEX_COLUMNS
    assert list(index["filename"]) == ["film_0.png", "film_1.png", "film_2.png", "film_3.png", "film_4.png"]
    assert set(index["split"]) == {"test"}
    # 7 records in chunks of 3: the corrupt file is in chunk 0, the missing one alone in chunk 2.
    assert list(zip(index["chunk"], index["row"], strict=True)) == [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]
    assert sorted(p.name for p in explain_dir.glob("chunk_*.npz")) == ["chunk_0.npz", "chunk_1.npz", "chunk_2.npz"]
    expected = ["COVID-19", "normal", "COVID-19", "COVID-19", "normal"]
    assert list(index["target_label"]) == expected
    assert list(index["target"]) == [LABELS.index(label) for label in expected]
    assert index[["insertion_auc", "deletion_auc", "target_probability"]].stack().between(0, 1).all()
    with np.load(chunk_path(explain_dir, 1)) as chunk:
        assert chunk["saliency"].shape == (3, 16, 16) and chunk["saliency"].dtype == np.float32
        assert chunk["saliency"].min() >= 0 and chunk["saliency"].max() <= 1
        assert list(chunk["filenames"]) == ["film_2.png", "film_3.png", "film_4.png"]
    rejected = pd.read_csv(explain_dir / "rejected.csv")
    assert list(rejected.columns) == ["stage", "split", "filename", "reason"]
    assert list(rejected["filename"]) == ["corrupt.png", "missing.png"]
    assert set(rejected["stage"]) == {"explain"} and rejected["reason"].str.contains("ImageReadError").all()


def test_saliency_lies_on_the_marker(explained: dict) -> None:
    """The model reads only the marker: most of the map's mass is on it, far above its area."""
    maps = load_saliency(explained["result"].explain_dir)
    assert sorted(maps) == [f"film_{i}.png" for i in range(5)]
    for filename in ("film_0.png", "film_2.png", "film_3.png"):
        upsampled = torch.nn.functional.interpolate(torch.from_numpy(maps[filename])[None, None], size=(SIZE, SIZE),
                                                    mode="bilinear", align_corners=True)[0, 0].numpy()
        region = box_mask((SIZE, SIZE), explained["boxes"][filename], dilate=4)
        share = upsampled[region].sum() / upsampled.sum()
        assert share > 0.5 > 5 * region.mean(), (filename, share, region.mean())


def test_rerun_skips_done_chunks_and_redoes_a_changed_one(explained: dict) -> None:
    root, records, checkpoint = explained["root"], explained["records"], explained["checkpoint"]
    explain_dir = explained["result"].explain_dir
    before = {k: os.stat(chunk_path(explain_dir, k)).st_mtime_ns for k in range(3)}
    again = explain_split(checkpoint, records, root / "run", FAST, split="test")
    assert again.computed == 0
    assert {k: os.stat(chunk_path(explain_dir, k)).st_mtime_ns for k in range(3)} == before
    pd.testing.assert_frame_equal(again.index, explained["result"].index)

    write_png(records[3].path, marker_film(99, True)[0])  # film_2.png, in chunk 1, gets other pixels
    changed = explain_split(checkpoint, records, root / "run", FAST, split="test")
    assert [chunk.computed for chunk in changed.chunks] == [False, True, False]
    after = {k: os.stat(chunk_path(explain_dir, k)).st_mtime_ns for k in range(3)}
    assert after[0] == before[0] and after[2] == before[2] and after[1] != before[1]
    # Each image has its own seed: the unchanged films of the redone chunk get the very same maps.
    np.testing.assert_array_equal(load_saliency(explain_dir)["film_3.png"],
                                  np.load(chunk_path(explain_dir, 1))["saliency"][1])
    assert changed.index.loc[changed.index["filename"] == "film_3.png", "insertion_auc"].item() == \
        explained["result"].index.loc[explained["result"].index["filename"] == "film_3.png", "insertion_auc"].item()


def test_corrupt_chunk_and_new_config_are_recomputed(tmp_path: Path) -> None:
    records, _ = marker_dataset(tmp_path / "data", (True, False))
    checkpoint = marker_checkpoint(tmp_path)
    config = ExplainConfig(mask_size=8, iterations=2, ig_steps=2, chunk_size=1, target="label")
    first = explain_split(checkpoint, records, tmp_path / "run", config, split="test")
    assert list(first.index["target_label"]) == ["COVID-19", "normal"]
    chunk_path(first.explain_dir, 0).write_bytes(b"truncated")
    assert [c.computed for c in explain_split(checkpoint, records, tmp_path / "run", config, split="test").chunks] \
        == [True, False]
    other = ExplainConfig(mask_size=8, iterations=3, ig_steps=2, chunk_size=1, target="label")
    assert explain_split(checkpoint, records, tmp_path / "run", other, split="test").computed == 2
    # Fewer chunks now: the stale chunk file goes, and the index lists only the current ones.
    shorter = explain_split(checkpoint, records[:1], tmp_path / "run", other, split="test")
    assert shorter.computed == 0 and not chunk_path(first.explain_dir, 1).exists()
    assert list(load_saliency(first.explain_dir)) == ["film_0.png"]


def test_load_saliency_without_index_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ExplainError, match="explain the split first"):
        load_saliency(tmp_path)


def test_bf16_maps_are_close_to_fp32_and_get_their_own_chunks(explained: dict) -> None:
    """precision="bf16" reaches igos (the maps change, a little, and stay on the marker) and is part of the chunks'
    input hash; "fp32" hashes as before the field existed, so chunks written then stay valid."""
    root, checkpoint, boxes = explained["root"], explained["checkpoint"], explained["boxes"]
    films = ("film_0.png", "film_3.png")  # with a marker
    records = [record for record in explained["records"] if record.filename in films]
    fp32_config = replace(FAST, mode="faithful")  # faithful: the published Riemann sum, a map on this model
    fp32 = explain_split(checkpoint, records, root / "precision", fp32_config, split="test")
    fp32_maps = load_saliency(fp32.explain_dir)
    bf16_config = replace(fp32_config, precision="bf16")
    bf16 = explain_split(checkpoint, records, root / "precision", bf16_config, split="test")
    assert bf16.computed == 1  # the same folder, but not reused: another input hash
    bf16_maps = load_saliency(bf16.explain_dir)
    assert fp32_maps.keys() == bf16_maps.keys() == set(films)
    differences = np.stack([np.abs(bf16_maps[name] - fp32_maps[name]) for name in films])
    assert 0 < differences.max() and differences.mean() < 0.02, (differences.max(), differences.mean())
    assert list(bf16.index["target_label"]) == list(fp32.index["target_label"]) == ["COVID-19", "COVID-19"]
    for name in films:
        upsampled = torch.nn.functional.interpolate(torch.from_numpy(bf16_maps[name])[None, None], size=(SIZE, SIZE),
                                                    mode="bilinear", align_corners=True)[0, 0].numpy()
        region = box_mask((SIZE, SIZE), boxes[name], dilate=4)
        assert upsampled[region].sum() > 0.5 * upsampled.sum() > 0, name
    legacy = {key: value for key, value in asdict(FAST).items() if key not in ("batch_size", "chunk_size", "precision")}
    assert FAST.digest() == hashlib.sha256(json.dumps(legacy, sort_keys=True).encode()).hexdigest()
    assert bf16_config.digest() != fp32_config.digest()
