"""Source probes, the cleaning-leakage probe and label-from-source on the synthetic benchmark (pipeline.probes).

Generates a synthetic COVIDx folder (datasets.synthetic) in which, by default (--shortcut 0), a film's
hospital is drawn independently of its label, so the hospitals differ only in their burned-in text. Then:

    source probes      a small CNN trained on train to predict the hospital, scored on test (one-vs-rest ROC AUC,
                       mean over hospitals, patient-cluster bootstrap 95 % interval), from four views:
                       whole (the film), text_only (the generator's true text boxes, the rest the blur baseline),
                       lungs_masked (the generator's lung fields filled), cleaned (COVIDx++: here the generator's
                       text-free copies, a perfect cleaning; with --run-dir the run's covidx_pp/ films)
    leakage probe      patients split at random into two groups: the first group's films with their true boxes
                       inpainted (pipeline.inpaint, COVIDx++'s default method and dilation; with --run-dir the
                       run's cleaned covidx_pp films), against the second group's never-texted copies
    label from source  how well the hospital alone predicts the label in train, test and test_decorrelated
    detector coverage  with --run-dir: per kind of burned-in item (the generator's truth, train and test), how many
                       the run's detected boxes, grown by the cleaning dilation, cover at least COVERED of

Expected on this benchmark: whole and text_only AUC >= 0.9, cleaned <= 0.6 (text-free copies: nothing left),
lungs_masked high (the text lies outside the lungs); leakage 0.5 where the inpainting leaves no trace a small
CNN finds (the quick run's patch probe does find one: benchmarks/results/probes.md).

    python -m benchmarks.probes --quick             # ~2.5 min of CPU (5 min on 2 busy cores): 120 / 60 films at 128 px
    python -m benchmarks.probes                     # 600 / 200 films at 256 px
    python -m benchmarks.probes --run-dir runs/demo # a finished synthetic audit: its detections and covidx_pp/
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import (
    RESULTS,
    command_line,
    environment,
    load_average,
    load_note,
    markdown_table,
    png_bytes,
    program,
    write_results,
)
from benchmarks.real_text import grown
from datasets import synthetic
from datasets.atomic import write_bytes
from datasets.images import read_image
from pipeline.inpaint import METHODS, inpaint
from pipeline.probes import (
    VIEWS,
    ProbeConfig,
    ProbeFilm,
    films_from_records,
    generator_lungs,
    label_from_source,
    leakage_probe,
    source_probes,
)
from pipeline.text import TextBox, box_mask, coverage, read_detections

QUICK = {"n_train": 120, "n_test": 60, "image_size": 128, "epochs": 10, "n_resamples": 200}
FULL = {"n_train": 600, "n_test": 200, "image_size": 256, "epochs": 12, "n_resamples": 1000}
CLEAN_DILATE = 2  # pipeline.clean.CleanConfig's default dilation
COVERED = 0.9  # an item counts as covered when the grown detected boxes cover this share of its box


def leakage_films(films: Sequence[ProbeFilm], clean_of: dict[str, Path], out: Path, seed: int,
                  cleaned_of: dict[str, tuple[Path, tuple]] | None = None, method: str | None = "patch"
                  ) -> tuple[list[ProbeFilm], list[ProbeFilm]]:
    """(cleaned, untouched): patients drawn into two groups; the first's films cleaned (`cleaned_of`: filename →
    (cleaned film, its boxes) from a run; else the true boxes inpainted here into `out` by `method`; method None:
    the text-free copy stands for a perfect fill, the probe's own floor), the second's never-texted copies
    (`clean_of`). Films of the first group without a box are left out (nothing was cleaned)."""
    rng = np.random.default_rng(seed)
    patients = sorted({film.patient_id for film in films})
    first = {patient for patient, draw in zip(patients, rng.random(len(patients)), strict=True) if draw < 0.5}
    cleaned, untouched = [], []
    for film in films:
        if film.patient_id not in first:
            untouched.append(ProbeFilm(film.filename, film.patient_id, film.label, film.source, film.split,
                                       clean_of[film.filename]))
            continue
        if cleaned_of is not None:
            if film.filename not in cleaned_of or not cleaned_of[film.filename][1]:
                continue
            path, boxes = cleaned_of[film.filename]
        else:
            if not film.boxes:
                continue
            if method is None:
                cleaned.append(ProbeFilm(film.filename, film.patient_id, film.label, film.source, film.split,
                                         clean_of[film.filename], film.boxes))
                continue
            image = read_image(film.path)
            mask = box_mask(image.shape, [TextBox(*box, 1.0) for box in film.boxes], CLEAN_DILATE)
            path, boxes = out / film.split / film.filename, film.boxes
            write_bytes(path, png_bytes(inpaint(image, mask, method)))
        cleaned.append(ProbeFilm(film.filename, film.patient_id, film.label, film.source, film.split, path, boxes))
    return cleaned, untouched


def true_box_leakage(methods: Sequence[str | None], seed: int, scratch: Path, epochs: int = 10
                     ) -> dict[str | None, float]:
    """Method → the leakage probe's patch AUC on a small synthetic set (QUICK's 120 / 60 films at 128 px, `seed`)
    whose true text boxes are filled by that method (None: the text-free copies, the probe's floor)."""
    root = synthetic.generate(scratch / f"data-{seed}", n_train=QUICK["n_train"], n_test=QUICK["n_test"],
                              image_size=QUICK["image_size"], seed=seed, shortcut=0.0)
    films, clean_of = [], {}
    for split in ("train", "test"):
        truths = synthetic.read_truth(root, split)
        films += films_from_records(synthetic.split_records(root, split), split,
                                    boxes={truth.filename: truth.text_boxes for truth in truths})
        clean_of.update({truth.filename: root / truth.clean for truth in truths})
    config = ProbeConfig(image_size=64, work_size=QUICK["image_size"], epochs=epochs, n_resamples=0, seed=seed)
    out = {}
    for method in methods:
        cleaned, untouched = leakage_films(films, clean_of, scratch / f"leak-{seed}-{method}", seed, method=method)
        out[method] = leakage_probe(cleaned, untouched, config, variants=("patches",)).auc("patches")
    return out


def run_manifest(run_dir: Path) -> dict[str, tuple[Path, tuple]]:
    """filename → (its covidx_pp film, the boxes removed) of the run's cleaned films (covidx_pp/manifest.csv)."""
    out = {}
    with (run_dir / "covidx_pp" / "manifest.csv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["status"] == "cleaned":
                boxes = tuple((b["x0"], b["y0"], b["x1"], b["y1"]) for b in json.loads(row["boxes"] or "[]"))
                out[Path(row["source"]).name] = (run_dir / "covidx_pp" / (row["output"] or row["source"]), boxes)
    return out


def measure(root: Path, scratch: Path, args: argparse.Namespace, settings: dict, run_dir: Path | None) -> dict:
    """Every number of the benchmark on the synthetic folder `root` (of a run, when `run_dir`)."""
    manifest = json.loads((root / synthetic.MANIFEST).read_text())
    films, clean_of, records, covered = [], {}, {}, []
    for split in ("train", "test"):
        split_records = synthetic.split_records(root, split)
        records[split] = split_records
        truths = synthetic.read_truth(root, split)
        if run_dir is None:
            boxes = {truth.filename: truth.text_boxes for truth in truths}
        else:
            boxes = read_detections(run_dir / "text" / "detections.csv", split=split)
            covered += item_coverage(truths, boxes)
        lungs = generator_lungs(root, truths)
        cleaned_root = root / "clean" / split if run_dir is None else run_dir / "covidx_pp" / split
        films += films_from_records(split_records, split, boxes=boxes, lungs=lungs, cleaned_root=cleaned_root)
        clean_of.update({truth.filename: root / truth.clean for truth in truths})
    records["test_decorrelated"] = synthetic.split_records(root, "test_decorrelated")
    config = ProbeConfig(image_size=64, work_size=min(256, manifest["image_size"]), epochs=settings["epochs"],
                         n_resamples=settings["n_resamples"], seed=args.seed)
    started = time.perf_counter()
    probes = source_probes(films, VIEWS, config)
    cleaned, untouched = leakage_films(films, clean_of, scratch / "leak", args.seed,
                                       None if run_dir is None else run_manifest(run_dir), args.inpaint)
    leakage = leakage_probe(cleaned, untouched, config)
    from_source = label_from_source(records, n_resamples=settings["n_resamples"], seed=args.seed)
    return {"settings": settings | {"shortcut": manifest["shortcut"], "seed": args.seed, "inpaint": args.inpaint,
                                    "run_dir": None if run_dir is None else str(run_dir)},
            "lung_masks_from_generator": sum(film.lungs is not None for film in films), "films": len(films),
            "source_probes": _records(probes.table), "sources": list(probes.sources),
            "leakage": _records(leakage.table), "leakage_films": {"cleaned": len(cleaned), "untouched": len(untouched)},
            "leakage_label_correlation": _records(leakage.correlation),
            "label_from_source": _records(from_source), "detector_coverage": coverage_table(covered),
            "seconds": round(time.perf_counter() - started, 1)}


def item_coverage(truths: Sequence[synthetic.ImageTruth], detected: dict[str, list[TextBox]]
                  ) -> list[tuple[str, float]]:
    """(kind, share of its box covered) of every true text item, by the film's detected boxes grown by
    CLEAN_DILATE (the pixels a run inpaints)."""
    out = []
    for truth in truths:
        inpainted = [grown(box, CLEAN_DILATE) for box in detected.get(truth.filename, ())]
        out += [(item.kind, coverage((item.x0, item.y0, item.x1, item.y1), inpainted)) for item in truth.text_boxes]
    return out


def coverage_table(covered: Sequence[tuple[str, float]]) -> list[dict]:
    """Per kind and for all items: items, items covered >= COVERED, mean share covered (empty without items)."""
    groups = {kind: [share for k, share in covered if k == kind] for kind in sorted({k for k, _ in covered})}
    if covered:
        groups["all"] = [share for _, share in covered]
    return [{"kind": kind, "items": len(shares), "covered": sum(share >= COVERED for share in shares),
             "mean_share": round(float(np.mean(shares)), 3)} for kind, shares in groups.items()]


def _records(table: pd.DataFrame) -> list[dict]:
    """Rows as dicts, floats rounded to 4 places, NaN as None (JSON has no NaN)."""
    return [{key: (None if isinstance(value, float) and math.isnan(value) else
                   round(value, 4) if isinstance(value, float) else value) for key, value in row.items()}
            for row in table.astype(object).to_dict(orient="records")]


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _interval(row: dict) -> str:
    return "no interval (n < 10)" if row["ci_low"] is None else f"{_number(row['ci_low'])}–{_number(row['ci_high'])}"


def markdown(numbers: dict, command: str, env: dict) -> str:
    settings = numbers["settings"]
    probes = [row for row in numbers["source_probes"] if row["stratum"] == "all"]
    lines = [
        "# Source probes, cleaning leakage and label from source (synthetic)", "",
        f"`{command}`", "", f"- {env['date']}, {env['machine']}", load_note(env),
        f"- {settings['n_train']} train / {settings['n_test']} test films at {settings['image_size']} px, shortcut "
        f"{settings['shortcut']} (0: hospitals independent of the label), seed {settings['seed']}; probe: small CNN at "
        f"64 px, {settings['epochs']} epochs; {settings['n_resamples']} patient-cluster bootstrap resamples; "
        f"{numbers['lung_masks_from_generator']} of {numbers['films']} films with the generator's lung mask; "
        f"{numbers['seconds']} s; leakage films cleaned "
        + ("by the run (covidx_pp/)" if settings["run_dir"] else f"here: true boxes, inpaint {settings['inpaint']!r}"),
        "",
        "## Source probes (mean one-vs-rest AUC over the hospitals, test split)", "",
        markdown_table([(row["view"], str(row["n"]), _number(row["auc"]), _interval(row)) for row in probes],
                       ("view", "films", "AUC", "95 % interval")), "",
        "Per hospital:", "",
        markdown_table([(row["view"], row["stratum"], str(row["positives"]), _number(row["auc"]), _interval(row))
                        for row in numbers["source_probes"] if row["stratum"] != "all"],
                       ("view", "hospital", "films", "AUC", "95 % interval")), "",
        f"## Cleaning leakage ({numbers['leakage_films']['cleaned']} cleaned vs "
        f"{numbers['leakage_films']['untouched']} never-texted films)", "",
        markdown_table([(row["variant"], str(row["positives"]), str(row["negatives"]), _number(row["auc"]),
                         _interval(row)) for row in numbers["leakage"]],
                       ("variant", "cleaned", "untouched", "AUC", "95 % interval")), "",
        markdown_table([(row["variant"], row["label"], str(row["films"]), _number(row["cleaned_share"]),
                         _number(row["correlation"]), _interval(row)) for row in numbers["leakage_label_correlation"]],
                       ("variant", "label", "films", "cleaned share", "correlation of score and label",
                        "95 % interval")), "",
        "## Label from source", "",
        markdown_table([(row["split"], row["fitted_on"], row["metric"], str(row["n"]), _number(row["value"]),
                         _interval(row)) for row in numbers["label_from_source"]
                        if row["metric"] in ("accuracy", "majority_rate", "macro_auc")],
                       ("split", "fitted on", "metric", "n", "value", "95 % interval")),
    ]
    if numbers["detector_coverage"]:
        lines += ["", f"## Detector coverage (the run's detected boxes grown by {CLEAN_DILATE} px against the "
                  f"generator's text items, train and test; covered: at least {COVERED:.0%} of the item)", "",
                  markdown_table([(row["kind"], str(row["items"]), str(row["covered"]), f"{row['mean_share']:.3f}")
                                  for row in numbers["detector_coverage"]],
                                 ("kind", "items", "covered", "mean share covered"))]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=program(__file__), description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"small settings {QUICK}")
    parser.add_argument("--run-dir", type=Path, help="a finished synthetic audit (data/, text/detections.csv, "
                                                     "covidx_pp/) instead of generating a dataset")
    parser.add_argument("--shortcut", type=float, default=0.0, help="the generator's shortcut (default 0)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--inpaint", choices=METHODS, default="patch",
                        help="without --run-dir: how the leakage probe's films are cleaned (default: COVIDx++'s)")
    parser.add_argument("--out", type=Path, default=RESULTS / "probes.md")
    args = parser.parse_args(argv)
    settings = dict(QUICK if args.quick else FULL)
    start_load = load_average()
    with tempfile.TemporaryDirectory() as scratch:
        if args.run_dir is None:
            root = synthetic.generate(Path(scratch) / "data", n_train=settings["n_train"], n_test=settings["n_test"],
                                      image_size=settings["image_size"], seed=args.seed, shortcut=args.shortcut)
        else:
            root = args.run_dir / "data"
            manifest = json.loads((root / synthetic.MANIFEST).read_text())
            settings |= {key: manifest[key] for key in ("n_train", "n_test", "image_size")}
        numbers = measure(root, Path(scratch), args, settings, args.run_dir)
    env = environment((start_load, load_average()))
    numbers["environment"] = env
    write_results(args.out, numbers, markdown(numbers, command_line(__file__, argv), env))


if __name__ == "__main__":
    main()
