"""The audit report of a run directory: `render(run_dir)` writes `report.html` and `summary.md`.

Everything comes from the files a run wrote (docs/run-directory.md), so an old run re-renders. A section
whose files are missing says "not run" (a run killed half way still renders). The HTML is self-contained:
styles, a few lines of script that make tables sortable, and figures as base64 PNG data URIs.

Privacy: the report shows aggregates, dataset filenames (gallery captions, rejects, crops) and the run's config;
it never shows the `patient_id` column of any table. It reads the pixels of a few source and COVIDx++ films
for full-resolution crops (reports.crops); no image header field is shown or kept.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd
import yaml

from datasets.atomic import write_text
from reports import crops, history
from reports.blocks import (
    Block,
    Code,
    Image,
    Run,
    Section,
    Table,
    Text,
    interval_cells,
    not_run,
    number,
    p_value,
    source_of,
    split_key,
    table_block,
    with_ci,
)
from reports.figures import Panel, confusion_png, distribution_png, panels_png
from reports.saliency_shift import ShareShift, empty_maps, share_shift

LOG = logging.getLogger(__name__)

ALPHA = 0.01  # McNemar p below this counts as a significant change
HEADLINE_METRICS = ("accuracy", "balanced_accuracy", "macro_f1")
N_PAIRS = 4  # cleaned COVIDx++ films shown before/after
N_BOXES = 3  # removed boxes per cleaned film shown at full resolution
N_UNCHANGED = 4  # films where detection found nothing, shown by their corners and bottom strip
N_REFUSED = 30  # rows of the refused-boxes table
STAGE_TIMES = (("train A", "models/a_history.csv"), ("train B", "models/b_history.csv"),
               ("text detection", "text/detections.csv"), ("explain A", "explain/a/index.csv"),
               ("explain B", "explain/b/index.csv"))
FEW_VALIDATION_IMAGES = 30  # as pipeline.train's (reports may not import pipeline; a test checks they agree)
SHORTCUTS_NOT_TESTED = (
    "Burned-in text is one shortcut among several: source-specific processing, borders and collimation, "
    "laterality markers, patient positioning (portable films) and devices are untouched by inpainting, "
    "which does not remove source identity. These results say nothing about those."
)


# ---------------------------------------------------------------- sections


def _section_run(run: Run, summary: Mapping) -> Section:
    section = Section(1, "What was run")
    if summary:
        seconds = summary.get("seconds")
        runner = summary.get("task_runner")
        section.blocks.append(Text(f"Run {summary.get('run_id', run.root.name)}; time taken: "
                                   f"{number(seconds, 0) + ' s' if seconds is not None else 'not recorded'}"
                                   + (f"; per-image work ran on {runner}." if runner else ".")))
    else:
        section.missing.append("summary.json")
    counts = [frame.assign(split=split, source=source_of(frame)).groupby(["split", "label", "source"]).size()
              for split, frame in run.predictions("a").items()]
    if counts:
        section.blocks.append(table_block("Test images per split, class and source",
                                          pd.concat(counts).rename("images").reset_index()))
    if summary.get("dataset"):
        flat = pd.json_normalize(summary["dataset"], sep=" / ").T.reset_index()
        section.blocks.append(table_block("Dataset counts (summary.json)", flat.set_axis(["count", "value"], axis=1)))
    section.blocks += _data_quality(run.json("data_quality.json"))
    metas = {m: meta for m in "ab" if (meta := run.json(f"models/{m}.json"))}
    if metas:
        rows = [{"model": m.upper(), **{k: v for k, v in meta.items() if not isinstance(v, (dict, list))},
                 "labels": ", ".join(meta.get("labels", []))} for m, meta in metas.items()]
        section.blocks.append(table_block("Classifiers (checkpoint metadata: seeds, sizes, training-data hash)",
                                          pd.DataFrame(rows)))
        section.blocks += [Text(line, kind="verdict") for m, meta in metas.items()
                           if (line := _few_validation_images(m, meta)) is not None]
    section.blocks.append(Text("Package versions: " + (", ".join(f"{k} {v}" for k, v in summary["versions"].items())
                                                      if summary.get("versions") else "not recorded by this run.")))
    timings = run.csv("timings.csv")
    if timings is not None:
        section.blocks.append(table_block("Time per stage of this run (s; a stage reused from an earlier run takes "
                                          "about 0 s; the total is summary.json's; the report is rendered after it)",
                                          timings))
    else:  # a run from before timings.csv: the stages' own tables
        times = {stage: frame["seconds"].sum() for stage, relative in STAGE_TIMES
                 if (frame := run.csv(relative)) is not None and "seconds" in frame}
        if times:
            section.blocks.append(table_block("Time per stage (s)",
                                              pd.DataFrame(times.items(), columns=["stage", "seconds"])))
    config = run.text("config.yaml")
    if config is None:
        section.missing.append("config.yaml")
    else:
        seeds = "; ".join(f"{key}: {value}" for key, value in seed_settings(yaml.safe_load(config) or {}))
        section.blocks.append(Text("Seeds: " + (seeds or "none in config.yaml") + "."))
        section.blocks.append(Code(config))
    return section


def _few_validation_images(model: str, meta: Mapping) -> str | None:
    """A warning when classifier `model`'s epoch was chosen on fewer than FEW_VALIDATION_IMAGES validation images."""
    images = meta.get("validation", {}).get("images")
    if images is None or images >= FEW_VALIDATION_IMAGES:
        return None
    return (f"Classifier {model.upper()}'s epoch was chosen on a validation split of {int(images)} images (of its "
            f"training split, by patient), fewer than {FEW_VALIDATION_IMAGES}: that choice and its validation metrics "
            "rest on too few images to mean much.")


def seed_settings(config: Mapping, prefix: str = "") -> list[tuple[str, object]]:
    """Every setting of a run's config whose name holds "seed", by dotted key ("train.seed", ...)."""
    found: list[tuple[str, object]] = []
    for key, value in config.items():
        if isinstance(value, Mapping):
            found += seed_settings(value, f"{prefix}{key}.")
        elif "seed" in str(key):
            found.append((f"{prefix}{key}", value))
    return found


def _data_quality(quality: Mapping | None) -> list[Block]:
    """What reading the split files found (data_quality.json): repeated lines, conflicting duplicates, and
    patients in both training and a test split (accepted with `data.allow_patient_overlap`)."""
    if quality is None:
        return [Text("Data quality: not recorded by this run (data_quality.json missing).")]
    splits = quality.get("splits", {})
    rows = [{"split": name, "file": found["file"], "images read": found["records"],
             "lines repeated verbatim (read once)": found["repeated_lines"],
             "filenames listed again with other fields (first line kept)": len(found["conflicts"])}
            for name, found in splits.items()]
    blocks: list[Block] = [table_block("Data quality: split files as read", pd.DataFrame(rows))]
    conflicts = [{"split": name, **conflict, "differs": ", ".join(conflict["differs"])}
                 for name, found in splits.items() for conflict in found["conflicts"]]
    if conflicts:
        blocks.append(table_block("Data quality: filenames listed twice with other fields (the later line was not "
                                  "read)", pd.DataFrame(conflicts)))
    overlap = quality.get("patient_overlap", {})
    if overlap:
        blocks.append(table_block("Data quality: test images of patients also in training (allowed by the config; "
                                  "their results are optimistic)",
                                  pd.DataFrame([{"split": name, "patients": found["patients"], "images": len(
                                 found["filenames"]), "filenames": ", ".join(found["filenames"][:20])}
                                 for name, found in overlap.items()])))
    return blocks


def _confusion(frame: pd.DataFrame, title: str) -> list[Block]:
    labels = list(dict.fromkeys([*frame["label"], *frame["predicted"]]))
    counts = pd.crosstab(frame["label"], frame["predicted"]).reindex(index=labels, columns=labels, fill_value=0)
    table = counts.rename_axis(index="true \\ predicted", columns=None).reset_index()
    return [Image(title, confusion_png(counts.to_numpy(), labels, title)), table_block(title, table)]


def _metric_table(metrics: pd.DataFrame, model: str) -> pd.DataFrame:
    """metric × split cells "value [ci_low, ci_high]" of one model on all images."""
    rows = metrics[(metrics["model"] == model) & (metrics["stratum_kind"] == "all")]
    shown = rows.assign(cell=interval_cells(rows))
    return shown.pivot(index="metric", columns="split", values="cell").reset_index().rename_axis(columns=None)


def _section_model_a(run: Run, metrics: pd.DataFrame | None) -> Section:
    section = Section(2, "Classifier A")
    predictions = run.predictions("a")
    if not predictions:
        section.missing.append("predictions/a_<split>.csv")
        return section
    if metrics is not None:
        section.blocks.append(Table("Metrics of A on each test split (95 % paired-bootstrap interval)",
                                    _metric_table(metrics, "a")))
    else:
        section.blocks.append(not_run("Intervals", "compare/metrics.csv"))
    for split, frame in predictions.items():
        section.blocks.append(Text(f"{split}: {len(frame)} images, accuracy {number(frame['correct'].mean())}."))
        section.blocks.extend(_confusion(frame, f"A on {split}: confusion matrix"))
    return section


def _share_plot(frames: Mapping[str, pd.DataFrame], by: Callable[[pd.DataFrame], pd.Series], what: str) -> Image:
    """Distribution of text_share per group (and per model when there are several frames)."""
    groups, chance = {}, {}
    for model, frame in frames.items():
        for group, rows in frame.groupby(by(frame), sort=True):
            name = f"{model} · {group}" if len(frames) > 1 else str(group)
            groups[name], chance[name] = rows["text_share"].to_numpy(), float(rows["text_area"].mean())
    title = f"Share of saliency on detected text per {what} (red: mean text area = chance level)"
    return Image(title, distribution_png(groups, "text_share", title, chance))


def _lesion_hits(audit: pd.DataFrame) -> Block:
    if "lesion_share" not in audit:
        return Text("Lesion-hit rate: not applicable (no lesion ground truth: real data).")
    lesions = audit[audit["label"].astype(str).str.lower() != "normal"]
    hits = lesions.assign(hit=lesions["lesion_share"] > lesions["text_share"]).groupby("label").agg(
        images=("hit", "size"), mean_lesion_share=("lesion_share", "mean"), mean_text_share=("text_share", "mean"),
        lesion_hit_rate=("hit", "mean")).reset_index()
    return table_block("Lesion-hit rate on synthetic data (an image with a lesion is a hit when more saliency lies on "
                       "the lesion than on the text)", hits)


def _gallery(gallery: Mapping[str, np.ndarray]) -> list[Block]:
    boxes = json.loads(str(gallery["boxes"]))
    blocks: list[Block] = []
    for i, name in enumerate(gallery["filenames"]):
        image = gallery["images"][i]
        title = (f"{name}: {gallery['labels'][i]} predicted {gallery['predicted'][i]}, "
                 f"text share {number(float(gallery['text_share'][i]))}")
        panels = [Panel("image", image), Panel("iGOS++ overlay", image, gallery["saliency"][i]),
                  Panel("detected text", image, boxes=boxes[i]), Panel("inpainted", gallery["inpainted"][i])]
        blocks.append(Image(title, panels_png(panels, title)))
    return blocks


def _section_audit_a(run: Run, summary: Mapping) -> Section:
    section = Section(3, "Audit of A")
    audit = run.csv("audit/a.csv")
    if audit is None:
        section.missing.append("audit/a.csv")
        return section
    counterfactual = audit[audit["counterfactual"].astype(bool)]
    section.blocks.append(Text(
        f"{len(audit)} images audited; {int(audit['flagged'].sum())} flagged as text-reliant "
        f"(flagged rate {number(audit['flagged'].mean())}); mean text share {number(audit['text_share'].mean())} "
        f"on a mean text area of {number(audit['text_area'].mean())}. Counterfactuals (text inpainted, A re-run): "
        f"{len(counterfactual)}, prediction changed in {int(counterfactual['cf_prediction_changed'].eq(True).sum())}, "
        f"mean drop of the target probability {number(counterfactual['cf_probability_drop'].mean())}."))
    quality = {k: summary[k] for k in ("flag_by", "flag_precision", "flag_recall", "share_flag_precision",
                                       "share_flag_recall", "confirmed_precision", "confirmed_recall",
                                       "counterfactual_precision", "counterfactual_recall", "share_roc_auc",
                                       "truth_share_roc_auc", "flag_threshold") if summary.get(k) is not None}
    if quality:
        reference = summary.get("flag_reference", "ground truth")
        section.blocks.append(table_block(f"Flag quality against {reference}: did the prediction change when the text "
                                          "alone was removed? The run's flags (flag_by), flags from the saliency share "
                                          "alone (share ≥ flag_threshold), the share confirmed by the counterfactual, "
                                          "and the counterfactual alone", pd.DataFrame([quality])))
    section.blocks.append(_share_plot({"A": audit}, lambda f: f["label"], "class"))
    section.blocks.append(_share_plot({"A": audit}, source_of, "source"))
    for what in ("class", "source"):
        table = run.csv(f"audit/a_by_{what}.csv")
        section.blocks.append(table_block(f"Audit of A per {what}: flagged rate and counterfactual results", table)
                              if table is not None else not_run(f"Per-{what} summary", f"audit/a_by_{what}.csv"))
    gallery = run.npz("audit/a_gallery.npz")
    section.blocks.extend(_gallery(gallery) if gallery is not None else [not_run("Gallery", "audit/a_gallery.npz")])
    section.blocks.append(_lesion_hits(audit))
    return section


def _refused_boxes(manifest: pd.DataFrame) -> Block:
    """The boxes the text guard left in the films, with the reason (at most N_REFUSED rows)."""
    if "refused_boxes" not in manifest:
        return Text("Refused boxes: not recorded by this run (its manifest has no refused_boxes column).")
    rows = [{"source": row.source, "status": row.status, **{k: box.get(k) for k in ("x0", "y0", "x1", "y1", "score")},
             "reason": box.get("reason", "")}
            for row in manifest.itertuples() for box in crops.parse_boxes(row.refused_boxes)]
    if not rows:
        return Text("No detected box was refused by the text guard.")
    return table_block(f"Boxes the text guard refused (left in the film): {min(len(rows), N_REFUSED)} shown of "
                       f"{len(rows)}", pd.DataFrame(rows[:N_REFUSED]))


def _shown(shown: crops.Shown, what: str) -> list[Block]:
    blocks: list[Block] = [Image(item.caption, item.png, item.full_resolution) for item in shown.items]
    if shown.skipped:
        blocks.append(table_block(f"{what}: films not shown", pd.DataFrame(shown.skipped, columns=["source", "why"])))
    return blocks


def _shares_by_source(run: Run, sources: pd.Series) -> dict[str, float] | None:
    """A's text share of each manifest source (the audit names a film relative to its split folder)."""
    audit = run.csv("audit/a.csv")
    if audit is None or not {"filename", "text_share"} <= set(audit):
        return None
    share = audit.groupby(audit["filename"].astype(str))["text_share"].max()
    found = {source: share.get(source, share.get(source.split("/", 1)[-1])) for source in sources.astype(str)}
    return {source: float(value) for source, value in found.items() if value is not None and not pd.isna(value)}


def _crops(run: Run, manifest: pd.DataFrame) -> list[Block]:
    """Full-resolution crops of the removed text and of the corners of films where nothing was found."""
    root, how = crops.source_root(run.root)
    if not root.is_dir():
        return [Text(f"Crops not shown: the source folder {root}, {how}, is not found on this machine.")]
    blocks: list[Block] = [Text(f"Source films read from {root}, {how}; COVIDx++ films from the run's covidx_pp/. "
                                "Crops are the films' own pixels (8-bit films as stored; 16-bit PNG and DICOM "
                                "min–max stretched), never resampled.")]
    cleaned = manifest[manifest["status"] == "cleaned"]
    shown = crops.cleaned_crops(cleaned, root, run.root / "covidx_pp", N_PAIRS, N_BOXES)
    blocks.append(Text(f"Removed text: {shown.films} of {len(cleaned)} cleaned films shown (largest masked area "
                       f"first), each whole (downsampled) and then at full resolution around at most {N_BOXES} of its "
                       "removed boxes (largest first)."))
    blocks += _shown(shown, "Removed text")
    shares = _shares_by_source(run, manifest["source"])
    picked = crops.pick_unchanged(manifest, shares, N_UNCHANGED)
    nothing = crops.pick_unchanged(manifest, None, len(manifest))
    order = "highest text share of A first, then by name" if shares else "first by name"
    blocks.append(Text(f"Films where detection found nothing: {len(picked)} of {len(nothing)} shown ({order}): the "
                       "corners and the bottom strip, where burned-in text usually sits, at full resolution, so a "
                       "reviewer can check that no text was missed."))
    blocks += _shown(crops.unchanged_crops(picked, root), "Nothing detected")
    return blocks


def _section_covidx_pp(run: Run) -> Section:
    section = Section(4, "COVIDx++")
    manifest = run.csv("covidx_pp/manifest.csv")
    if manifest is None:
        section.missing.append("covidx_pp/manifest.csv")
        return section
    manifest["source"] = manifest["source"].fillna("").astype(str)
    counts = manifest["status"].value_counts().reindex(["cleaned", "unchanged", "rejected"], fill_value=0)
    section.blocks.append(table_block("Images per status", counts.rename("images").reset_index()))
    cleaned = manifest[manifest["status"] == "cleaned"]
    fraction = cleaned["masked_fraction"]
    area = pd.DataFrame([{"images": len(cleaned), "mean": fraction.mean(), "median": fraction.median(),
                          "max": fraction.max()}])
    section.blocks.append(table_block("Masked area of the cleaned images (fraction of the image)", area))
    rejected = manifest[manifest["status"] == "rejected"][["source", "reason"]]
    section.blocks.append(table_block("Rejected images", rejected) if len(rejected) else Text("No image was rejected."))
    section.blocks.append(_refused_boxes(manifest))
    section.blocks.extend(_crops(run, manifest))
    return section


def _verdict(metrics: pd.DataFrame, mcnemar: pd.DataFrame, shift: ShareShift | None = None) -> list[str]:
    """Plain-language reading of the comparison, conditional on the numbers; `shift`: the saliency's move off
    the text between the audits of A and B, when both ran."""
    all_rows = metrics[metrics["stratum_kind"] == "all"]
    covid = next((m for m in ("recall_COVID-19", "recall_positive") if m in set(all_rows["metric"])), "macro_recall")
    tests = mcnemar[mcnemar["stratum_kind"] == "all"].set_index("split")["p_value"]
    lines = []
    for split in sorted(set(all_rows["split"]), key=split_key):
        values = all_rows[(all_rows["split"] == split) & (all_rows["metric"] == covid)].set_index("model")
        if not {"a", "b", "b-a"} <= set(values.index):
            continue
        diff, low, high = values.loc["b-a", ["value", "ci_low", "ci_high"]]
        n = values.loc["b-a"].get("n", float("nan"))
        p = tests.get(split, float("nan"))
        if not math.isnan(n) and math.isnan(low) and not math.isnan(diff):  # too few images for an interval
            lines.append(f"On {split}, {covid} rests on {int(n)} image(s) (A {number(values.loc['a', 'value'])}, "
                         f"B {number(values.loc['b', 'value'])}): too few for an interval or a verdict.")
            continue
        line = (f"On {split}, {covid} is {number(values.loc['a', 'value'])} for A and "
                f"{number(values.loc['b', 'value'])} for B: difference {with_ci(diff, low, high, n)}, "
                f"McNemar p = {p_value(p) or 'not computed'}.")
        if not p < ALPHA:
            line += (f" Not significant at p < {ALPHA}: the numbers do not show that removing the text changed "
                     "the classifier here.")
        elif diff == 0:
            line += f" A and B err on different images (McNemar), but {covid} did not change."
        elif split == "test_decorrelated":
            line += (" On this split text and label are independent, so the text shortcut was real and removing "
                     "it helped." if diff > 0 else " On this split text and label are independent: removing the "
                     "text made B worse, so the inpainting removed signal or added artefacts.")
            if low <= 0 <= high:
                line += f" The interval of the {covid} difference includes 0: the size of the effect is uncertain."
        elif split.endswith("_pp"):
            line += (" On this split the detected text was inpainted, as in B's training data: A's score here shows "
                     "how much A needed that text, and the comparison favours B by construction; it does not show "
                     "that B reads the lungs (other source cues remain).")
        else:
            line += (" Text and label are confounded with the source on this split: a model that recognises the "
                     "source scores well either way, so a change here proves little about shortcuts.")
        lines.append(line)
    if "test_decorrelated" not in set(all_rows["split"]):
        lines.append("This run has no test split where text and label are independent; a gain on a confounded "
                     "test split proves little, so read the per-source strata below.")
    if shift is not None:
        lines.append(shift.statement() + " (Section 6.)")
    lines.append(SHORTCUTS_NOT_TESTED)
    return lines


def _section_compare(run: Run, metrics: pd.DataFrame | None) -> Section:
    section = Section(5, "Classifier B vs A")
    mcnemar = run.csv("compare/mcnemar.csv")
    section.missing = [p for p, f in (("compare/metrics.csv", metrics), ("compare/mcnemar.csv", mcnemar)) if f is None]
    if section.missing:
        return section
    audits = [run.csv(f"audit/{m}.csv") for m in "ab"]
    shift = share_shift(*audits) if all(table is not None for table in audits) else None
    section.blocks.extend(Text(line, kind="verdict") for line in _verdict(metrics, mcnemar, shift))
    shown = metrics.assign(cell=interval_cells(metrics))
    wide = shown.pivot_table(index=["split", "stratum_kind", "stratum", "metric"], columns="model", values="cell",
                             aggfunc="first").reindex(columns=["a", "b", "b-a"]).reset_index()
    wide = wide.rename(columns={"a": "A", "b": "B", "b-a": "B − A"}).rename_axis(columns=None)
    overall = wide["stratum_kind"] == "all"
    section.blocks.append(Table("Paired comparison on all images (95 % paired-bootstrap intervals)", wide[overall]))
    headline = wide["metric"].isin(HEADLINE_METRICS) | wide["metric"].str.startswith("recall_")
    per_stratum = wide[~overall & headline]
    section.blocks.append(Table("Per stratum (source; flagged by the audit of A)", per_stratum))
    section.blocks.append(table_block("McNemar's exact test on correctness (a_only: A right, B wrong)", mcnemar))
    seeds = run.csv("compare/seeds.csv")
    if seeds is not None:
        shown = seeds[(seeds["stratum_kind"] == "all") & (seeds["metric"].isin(HEADLINE_METRICS)
                                                          | seeds["metric"].str.startswith("recall_"))]
        section.blocks.append(table_block("Across training seeds: mean ± sd of each arm (all images)", shown))
    for split, frame in run.predictions("b").items():
        section.blocks.extend(_confusion(frame, f"B on {split}: confusion matrix"))
    return section


def _section_reaudit(run: Run) -> Section:
    section = Section(6, "Re-audit of B")
    audits = {m.upper(): frame for m in "ab" if (frame := run.csv(f"audit/{m}.csv")) is not None}
    if "B" not in audits:
        section.missing.append("audit/b.csv")
        return section
    if "A" in audits:
        section.blocks.append(Text(share_shift(audits["A"], audits["B"]).statement()))
    else:
        section.blocks.append(Text(f"Mean text share of B: {number(audits['B']['text_share'].mean())}, against a "
                                   f"chance level (the mean text area) of {number(audits['B']['text_area'].mean())}"
                                   f" (n = {len(audits['B'])} images); A's audit is missing, so no comparison."))
    if (empty := empty_maps(audits)) is not None:
        section.blocks.append(Text(empty))
    section.blocks.append(_share_plot(audits, lambda f: f["label"], "class"))
    for what in ("class", "source"):
        tables = {m: run.csv(f"audit/{m}_by_{what}.csv") for m in "ab"}
        if any(t is None for t in tables.values()):
            section.blocks.append(not_run(f"Share before vs after per {what}", f"audit/<m>_by_{what}.csv"))
            continue
        merged = tables["a"][["group", "mean_text_share", "flagged_rate"]].merge(
            tables["b"][["group", "mean_text_share", "flagged_rate"]], on="group", how="outer", suffixes=("_a", "_b"))
        merged["share_change"] = merged["mean_text_share_b"] - merged["mean_text_share_a"]
        section.blocks.append(table_block(f"Text share before (A) and after (B) per {what}", merged))
    return section


def _reliance(audit: pd.DataFrame, by: str) -> pd.DataFrame:
    """Per class or source of the audited images: how many, how many with detected text (a counterfactual
    was run), in how many of those the prediction changed when the text alone was inpainted, and the mean
    text share against its chance level (the mean text area)."""
    table = audit.assign(group=audit[by].fillna("").astype(str).replace("", "(none)"),
                         tried=audit["counterfactual"].astype(bool),
                         changed=audit["cf_prediction_changed"].eq(True))
    grouped = table.groupby("group", sort=True).agg(images=("filename", "size"), with_text=("tried", "sum"),
                                                    prediction_changed=("changed", "sum"),
                                                    mean_text_share=("text_share", "mean"),
                                                    chance_level=("text_area", "mean")).reset_index()
    grouped["changed_rate"] = [_rate(k, n) for k, n in zip(grouped["prediction_changed"], grouped["with_text"],
                                                            strict=True)]
    return grouped.rename(columns={"group": by})[[by, "images", "with_text", "prediction_changed", "changed_rate",
                                                  "mean_text_share", "chance_level"]]


def _rate(k: int, n: int) -> str:
    """"k/n (rate)"; marked when n is below 10 (too few for the rate to mean much), "no images" for n = 0."""
    if n == 0:
        return "no images"
    return f"{k}/{n} ({k / n:.0%})" + (" (n < 10)" if n < 10 else "")


def _most_reliant(audit: pd.DataFrame, count: int = 6) -> pd.DataFrame:
    """The `count` films whose prediction rests most on the text: the largest drop of the target probability
    when the text alone was inpainted, then the highest text share."""
    ranked = audit.assign(drop=pd.to_numeric(audit["cf_probability_drop"], errors="coerce").fillna(-1.0))
    ranked = ranked.sort_values(["drop", "text_share", "filename"], ascending=[False, False, True]).head(count)
    return pd.DataFrame({"film": ranked["filename"], "class": ranked["label"], "source": source_of(ranked),
                         "prediction": ranked["predicted"], "after text removed": ranked["cf_predicted"].fillna("–"),
                         "probability drop": ranked["cf_probability_drop"], "text share": ranked["text_share"]})


def _section_summary(run: Run, metrics: pd.DataFrame | None) -> Section:
    """The first screen: does A rely on the text, for which classes and sources, how sure, what cleaning
    changed (the verdict), and the most text-reliant films; the sections below hold the detail."""
    section = Section(0, "Summary")
    audit = run.csv("audit/a.csv")
    if audit is None:
        section.missing.append("audit/a.csv")
        return section
    tried = audit["counterfactual"].astype(bool)
    changed = int(audit["cf_prediction_changed"].eq(True).sum())
    if not tried.any():
        answer = (f"No burned-in text was detected in the {len(audit)} audited images, so reliance on it could not "
                  "be tested.")
    else:
        answer = (f"Does classifier A rely on burned-in text? Its prediction changed when only the detected text "
                  f"was inpainted in {_rate(changed, int(tried.sum()))} of the audited images with text "
                  f"({len(audit)} audited).")
    section.blocks.append(Text(answer, kind="verdict"))
    section.blocks.append(table_block("Reliance on text per class (audit of A)", _reliance(audit, "label")))
    mcnemar = run.csv("compare/mcnemar.csv")
    audit_b = run.csv("audit/b.csv")
    shift = share_shift(audit, audit_b) if audit_b is not None else None
    if metrics is not None and mcnemar is not None:
        section.blocks.extend(Text(line, kind="verdict") for line in _verdict(metrics, mcnemar, shift)[:-1])
    section.blocks.append(table_block("Reliance on text per source (audit of A)", _reliance(audit, "source")))
    drops = pd.to_numeric(audit["cf_probability_drop"], errors="coerce")
    if (drops > 0).any():
        section.blocks.append(table_block("The most text-reliant films (largest drop of A's probability when the text "
                                          "alone was inpainted)", _most_reliant(audit[drops > 0])))
    else:
        section.blocks.append(Text("No film's predicted probability dropped when its text alone was inpainted, so no "
                                   "film is listed as text-reliant."))
    if (since := run.json("changes.json")) is not None:
        section.blocks.append(Text(f"{history.since_line(since)} (Section “{history.CHANGES_TITLE}”.)"))
    if (reviewed := history.review_line(run)) is not None:
        section.blocks.append(Text(f"{reviewed} (Section “{history.REVIEW_TITLE}”.)"))
    return section


# ---------------------------------------------------------------- output


def _markdown(sections: list[Section], title: str) -> str:
    lines = [f"# {title}", ""]
    for section in sections:
        lines += [f"## {section.number}. {section.title}", ""]
        if section.missing:
            lines += [f"Not run ({', '.join(section.missing)} missing).", ""]
        for block in section.blocks:
            if isinstance(block, Table):
                lines += [f"**{block.caption}**", "", block.frame.to_markdown(index=False, disable_numparse=True), ""]
            elif isinstance(block, Code):
                lines += ["```yaml", block.text.rstrip(), "```", ""]
            elif isinstance(block, Text):
                lines += [block.text, ""]
    return "\n".join(lines)


def render(run_dir: str | Path) -> Path:
    """Write `report.html` and `summary.md` into the run directory from its files; returns the HTML path."""
    run = Run(Path(run_dir))
    if not run.root.is_dir():
        raise FileNotFoundError(f"{run.root}: run directory not found")
    summary = run.json("summary.json") or {}
    metrics = run.csv("compare/metrics.csv")
    sections = [_section_summary(run, metrics), _section_run(run, summary), _section_model_a(run, metrics),
                _section_audit_a(run, summary), _section_covidx_pp(run), _section_compare(run, metrics),
                _section_reaudit(run)]
    later = [section for section in (history.changes_section(run), history.review_section(run)) if section is not None]
    for position, section in enumerate(later, start=len(sections)):
        section.number = position
    sections += later
    title = f"cxr-audit report: run {summary.get('run_id', run.root.name)}"
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                                     autoescape=True, undefined=jinja2.StrictUndefined)
    html = environment.get_template("report.html.j2").render(title=title, summary=sections[0], sections=sections[1:])
    write_text(run.root / "summary.md", _markdown(sections, title))
    return write_text(run.root / "report.html", html)

