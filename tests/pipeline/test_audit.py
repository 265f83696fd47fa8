"""pipeline.audit: text shares against hand-computed values, the text-removal counterfactual on a model that
reads a burned-in marker, the output contract, rejects, ground-truth columns on synthetic data, flag quality."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from datasets.covidx import Record
from datasets.synthetic import generate, read_truth, split_records
from pipeline.audit import (
    COLUMNS,
    SUMMARY_COLUMNS,
    TRUTH_COLUMNS,
    AuditConfig,
    AuditError,
    SyntheticTruth,
    audit_split,
    choose_threshold,
    flag_quality,
    saliency_shares,
    truth_prediction_changed,
    upsample_saliency,
)
from pipeline.text import TextBox
from tests.pipeline.test_explain import SIZE, marker_checkpoint, marker_dataset, marker_film, write_png

NO_SAMPLE = AuditConfig(flag_by="share", threshold=0.3, dilate=1, cf_unflagged_fraction=0.0, gallery_size=2,
                        gallery_side=32)


def block_map(box: TextBox, inside: float, outside: float, dilate: int) -> np.ndarray:
    """A (SIZE, SIZE) map: `inside` on the box grown by `dilate`, `outside` elsewhere."""
    saliency = np.full((SIZE, SIZE), outside, np.float32)
    saliency[box.y0 - dilate:box.y1 + dilate, box.x0 - dilate:box.x1 + dilate] = inside
    return saliency


@pytest.fixture(scope="module")
def marker_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Four films (COVID-19 with a marker: 0, 2; normal: 1, 3) audited with hand-made maps:
    film 0's map is on its marker, film 2's is away from it (so film 2 is not flagged), films 1, 3 have no text."""
    root = tmp_path_factory.mktemp("audit")
    records, boxes = marker_dataset(root / "data", (True, False, True, False))
    box = boxes["film_0.png"][0]
    on_marker = block_map(box, 1.0, 0.05, 1)
    saliency = {"film_0.png": on_marker, "film_1.png": np.ones((8, 8), np.float32),
                "film_2.png": np.flipud(on_marker).copy(), "film_3.png": np.zeros((8, 8), np.float32)}
    checkpoint = marker_checkpoint(root)
    result = audit_split(checkpoint, records, saliency, boxes, root / "run", NO_SAMPLE, split="test")
    return {"root": root, "records": records, "boxes": boxes, "saliency": saliency, "box": box,
            "checkpoint": checkpoint, "result": result}


def test_shares_on_a_hand_computed_case() -> None:
    saliency = np.array([[4, 0, 0, 0],
                         [0, 2, 1, 0],
                         [0, 1, 0, 0],
                         [0, 0, 0, 2]], np.float64)
    region = np.zeros((4, 4), bool)
    region[0:2, 0:2] = True  # holds 4 + 2 of the total 10
    share, top = saliency_shares(saliency, region, top_fraction=2 / 16)  # top 2 pixels: the 4 and a tie of 2s
    assert share == pytest.approx(0.6)
    assert top == pytest.approx((1 + 0.5) / 2)  # the 4 is inside; of the tied 2s (1,1) and (3,3), one is
    assert saliency_shares(saliency, region, top_fraction=4 / 16)[1] == pytest.approx(2 / 4)  # 4, 2, 2, a 1: 2 inside
    assert saliency_shares(saliency, region, top_fraction=1.0)[1] == pytest.approx(4 / 16)  # every pixel: the area
    assert saliency_shares(np.zeros((4, 4)), region) == (0.25, 0.25)  # no evidence: uniform, the area


def test_upsampling_is_bilinear_and_corner_aligned() -> None:
    upsampled = upsample_saliency(np.array([[0.0, 1.0], [1.0, 0.0]]), (3, 3))
    np.testing.assert_allclose(upsampled, [[0, 0.5, 1], [0.5, 0.5, 0.5], [1, 0.5, 0]])
    identity = np.random.default_rng(0).uniform(size=(5, 7))
    np.testing.assert_array_equal(upsample_saliency(identity, (5, 7)), identity)


def test_text_share_in_the_table_is_the_hand_computed_one(marker_run: dict) -> None:
    table, box = marker_run["result"].table, marker_run["box"]
    grown = (box.width + 2) * (box.height + 2)  # dilate 1: the map's block is exactly the measured region
    expected = grown * 1.0 / (grown * 1.0 + (SIZE * SIZE - grown) * 0.05)
    row = table.set_index("filename").loc["film_0.png"]
    assert row["text_share"] == pytest.approx(expected, abs=1e-6)
    assert row["text_area"] == pytest.approx(grown / SIZE**2, abs=1e-6)
    # the top 5 % (205 px): the whole block, and the rest from the tied background, all outside
    assert row["text_top5_share"] == pytest.approx(grown / math.ceil(0.05 * SIZE**2), abs=1e-6)
    assert row["n_text_boxes"] == 1 and bool(row["flagged"])


def test_counterfactual_changes_the_prediction_of_a_model_that_reads_text(marker_run: dict) -> None:
    table = marker_run["result"].table.set_index("filename")
    assert list(table["predicted"]) == ["COVID-19", "normal", "COVID-19", "normal"]
    flagged = table.loc["film_0.png"]
    assert bool(flagged["counterfactual"]) and bool(flagged["cf_prediction_changed"])
    assert flagged["cf_predicted"] == "normal" and flagged["cf_probability_drop"] > 0.5
    assert flagged["cf_target_probability"] < 0.5
    # Film 2 reads text too but its map looks elsewhere: not flagged, and no sample was asked for.
    assert not table.loc["film_2.png", "flagged"] and not table.loc["film_2.png", "counterfactual"]
    # No text: shares are 0 (uniform map: the area, 0) and there is nothing to inpaint.
    assert (table.loc[["film_1.png", "film_3.png"], ["text_share", "text_area", "n_text_boxes"]] == 0).all().all()
    assert not table.loc[["film_1.png", "film_3.png"], "counterfactual"].any()
    assert table["map_empty"].to_dict() == {name: name == "film_3.png" for name in table.index}  # its map is 0


def test_unflagged_sample_gets_counterfactuals(marker_run: dict, tmp_path: Path) -> None:
    run = marker_run
    everything = AuditConfig(flag_by="share", threshold=0.3, cf_unflagged_fraction=1.0, gallery_size=0)
    table = audit_split(run["checkpoint"], run["records"], run["saliency"], run["boxes"], tmp_path, everything).table
    assert list(table["counterfactual"]) == [True, False, True, False]  # every image with text
    assert table.loc[table["filename"] == "film_2.png", "cf_prediction_changed"].item()


def test_counterfactual_flags_are_the_images_whose_prediction_changes_without_text(marker_run: dict,
                                                                                    tmp_path: Path) -> None:
    run = marker_run
    by_counterfactual = AuditConfig(threshold=0.3, dilate=1, cf_unflagged_fraction=0.0, gallery_size=0)
    assert by_counterfactual.flag_by == "counterfactual"  # the default
    table = audit_split(run["checkpoint"], run["records"], run["saliency"], run["boxes"], tmp_path,
                        by_counterfactual).table.set_index("filename")
    # Film 2's map looks away from its marker (share flag: no), yet removing the marker flips it: flagged.
    share_table = run["result"].table.set_index("filename")
    assert not share_table.loc["film_2.png", "flagged"]
    assert list(table["counterfactual"]) == [True, False, True, False]  # every image with text, whatever the fraction
    assert table["flagged"].tolist() == table["cf_prediction_changed"].eq(True).tolist() == [True, False, True, False]
    assert table["text_share"].tolist() == share_table["text_share"].tolist()  # the shares do not depend on the rule


def test_outputs_follow_the_contract(marker_run: dict) -> None:
    audit = marker_run["root"] / "run" / "audit"
    table = pd.read_csv(audit / "a.csv")
    assert tuple(table.columns) == COLUMNS
    assert table.loc[table["filename"] == "film_1.png", list(COLUMNS[-4:])].isna().all().all()  # cf_* empty
    for name, groups in (("a_by_class.csv", ["COVID-19", "normal"]), ("a_by_source.csv", ["ricord", "rsna"])):
        summary = pd.read_csv(audit / name)
        assert tuple(summary.columns) == SUMMARY_COLUMNS and list(summary["group"]) == groups
    by_class = pd.read_csv(audit / "a_by_class.csv").set_index("group")
    assert by_class.loc["COVID-19", ["images", "flagged", "counterfactuals"]].tolist() == [2, 1, 1]
    assert by_class.loc["COVID-19", "cf_changed_rate"] == 1.0 and math.isnan(by_class.loc["normal", "cf_changed_rate"])
    with np.load(audit / "a_gallery.npz") as gallery:
        assert list(gallery["filenames"]) == ["film_0.png", "film_2.png"]  # highest text_share first
        assert list(gallery["labels"]) == ["COVID-19", "COVID-19"]
        for key in ("images", "saliency", "inpainted"):
            assert gallery[key].shape == (2, 32, 32) and gallery[key].dtype == np.float32
        boxes = json.loads(str(gallery["boxes"]))
        box = marker_run["box"]
        assert boxes[0] == [[box.x0 // 2, box.y0 // 2, -(-box.x1 // 2), -(-box.y1 // 2)]]
        # the inpainted picture lost the white marker, the original has it
        assert gallery["images"][0].max() > 0.9 > gallery["inpainted"][0].max()


def test_missing_or_corrupt_inputs_are_recorded_rejects(marker_run: dict, tmp_path: Path) -> None:
    run = marker_run
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\ngarbage")
    records = [*run["records"][:2],
               Record("px", "corrupt.png", "normal", "rsna", corrupt),
               Record("py", "gone.png", "normal", "rsna", tmp_path / "gone.png"),
               Record("pz", "unexplained.png", "normal", "rsna", run["records"][0].path)]
    saliency = {**run["saliency"], "corrupt.png": np.ones((4, 4)), "gone.png": np.ones((4, 4))}
    boxes = {**run["boxes"], "corrupt.png": [], "gone.png": [], "unexplained.png": []}
    result = audit_split(run["checkpoint"], records, saliency, boxes, tmp_path / "run", NO_SAMPLE, split="test")
    assert list(result.table["filename"]) == ["film_0.png", "film_1.png"]
    rejected = pd.read_csv(tmp_path / "run" / "audit" / "a_rejected.csv")
    assert list(rejected.columns) == ["stage", "split", "filename", "reason"]
    assert list(rejected["filename"]) == ["corrupt.png", "gone.png", "unexplained.png"]
    assert rejected["reason"].str.contains("ImageReadError").sum() == 2
    assert "no saliency map" in rejected["reason"].iloc[2]


def test_ground_truth_columns_on_synthetic_data(marker_run: dict, tmp_path: Path) -> None:
    root = generate(tmp_path / "synthetic", n_train=3, n_test=6, image_size=SIZE)
    records, truth = split_records(root, "test"), read_truth(root, "test")
    boxes = {t.filename: [TextBox(b.x0, b.y0, b.x1, b.y1, 1.0) for b in t.text_boxes] for t in truth}
    rng = np.random.default_rng(0)
    saliency = {record.filename: rng.uniform(size=(8, 8)).astype(np.float32) for record in records}
    result = audit_split(marker_run["checkpoint"], records, saliency, boxes, tmp_path / "run",
                         AuditConfig(gallery_size=1), truth=(truth, root))
    table = result.table
    assert tuple(table.columns) == COLUMNS + TRUTH_COLUMNS and len(table) == len(records)
    # detections = the ground-truth boxes, so both shares measure the same region
    np.testing.assert_allclose(table["truth_text_share"], table["text_share"])
    normal = table["label"] == "normal"
    assert (table.loc[normal, "lesion_share"] == 0).all() and (table.loc[~normal, "lesion_share"] > 0).all()
    assert "mean_lesion_share" in result.by_class.columns
    partial = audit_split(marker_run["checkpoint"], records, saliency, boxes, tmp_path / "run2",
                          AuditConfig(gallery_size=0), truth=SyntheticTruth(truth[:-1], root))
    assert list(partial.rejected["filename"]) == [truth[-1].filename]
    assert partial.rejected["reason"].item() == "no ground truth for this image"


def test_truth_prediction_changed_compares_with_the_clean_film(marker_run: dict, tmp_path: Path) -> None:
    records = []
    for i, marker in enumerate((True, False, True)):
        film, _ = marker_film(i, marker)
        clean, _ = marker_film(i, False)
        write_png(tmp_path / "clean" / "test" / f"f{i}.png", clean)
        records.append(Record(f"p{i}", f"f{i}.png", "normal", None, write_png(tmp_path / "test" / f"f{i}.png", film)))
    records.append(Record("p9", "nowhere.png", "normal", None, tmp_path / "test" / "nowhere.png"))
    changed = truth_prediction_changed(marker_run["checkpoint"], records, tmp_path)
    assert changed == {"f0.png": True, "f1.png": False, "f2.png": True}


def test_flag_quality_on_hand_made_numbers() -> None:
    table = pd.DataFrame({"filename": list("abcdef"), "text_share": [0.9, 0.8, 0.3, 0.2, 0.1, 0.5],
                          "flagged": [True, True, False, False, False, True]})
    truth = {"a": True, "b": True, "c": False, "d": True, "e": False}  # f has no ground truth: left out
    quality = flag_quality(table, truth)
    assert quality["flag_precision"] == 1.0 and quality["flag_recall"] == pytest.approx(2 / 3)
    assert quality["share_roc_auc"] == pytest.approx(5 / 6)  # positives .9 .8 .2 vs negatives .3 .1: 5 of 6 pairs
    assert (quality["images"], quality["positives"], quality["flagged"]) == (5, 3, 2)
    none_flagged = flag_quality(table.assign(flagged=False), {"a": True, "c": True})
    assert math.isnan(none_flagged["flag_precision"]) and math.isnan(none_flagged["share_roc_auc"])
    assert "top5_share_roc_auc" not in quality and "truth_share_roc_auc" not in quality  # columns absent
    # Every share is scored the same way: top-5 % share ranks the positives perfectly, the truth share inverts them.
    shares = table.assign(text_top5_share=[0.7, 0.6, 0.1, 0.5, 0.2, 0.0], truth_text_share=[0.1, 0.2, 0.6, 0.3, 0.9, 0])
    scored = flag_quality(shares, truth)
    assert scored["top5_share_roc_auc"] == 1.0 and scored["truth_share_roc_auc"] == 0.0


def test_choose_threshold_on_hand_made_numbers() -> None:
    shares, changed = [0.9, 0.8, 0.3, 0.2, 0.1], [True, True, False, True, False]
    # F1 of "flag share >= t": t=.9 → .5, .8 → .8, .3 → .667, .2 → .857, .1 → .75
    assert choose_threshold(shares, changed) == 0.2
    # Youden J = TPR − FPR: t=.8 → 2/3, t=.2 → 1 − 1/2
    assert choose_threshold(shares, changed, criterion="youden") == 0.8
    assert choose_threshold([0.5, 0.5, 0.1], [True, True, False]) == 0.5
    with pytest.raises(AuditError, match="changed and images whose did not"):
        choose_threshold([0.1, 0.2], [True, True])


def test_config_is_validated() -> None:
    for bad in ({"threshold": 1.5}, {"flag_by": "saliency"}, {"top_fraction": 0}, {"target": "x"}, {"dilate": -1},
                {"cf_unflagged_fraction": 2}, {"gallery_side": 4}):
        with pytest.raises(AuditError, match=next(iter(bad))):
            AuditConfig(**bad)
