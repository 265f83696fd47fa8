"""Sections 3, 4 and 6 of the report: "Audit of A" (text shares, flags, counterfactuals, gallery, lesion hits),
"COVIDx++" (what the build cleaned, refused and rejected, with full-resolution crops of the films) and
"Re-audit of B" (did B's saliency leave the text?)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from reports import crops
from reports.blocks import Block, Image, Run, Section, Text, not_run, number, source_of, table_block
from reports.figures import Panel, distribution_png, panels_png
from reports.saliency_shift import empty_maps, share_shift

N_PAIRS = 4  # cleaned COVIDx++ films shown before/after
N_BOXES = 3  # removed boxes per cleaned film shown at full resolution
N_UNCHANGED = 4  # films where detection found nothing, shown by their corners and bottom strip
N_REFUSED = 30  # rows of the refused-boxes table


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


def audit_a_section(run: Run, summary: Mapping) -> Section:
    """Section 3 from audit/a*.csv and audit/a_gallery.npz; `summary`: summary.json (the flag-quality numbers)."""
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


def covidx_pp_section(run: Run) -> Section:
    """Section 4 from covidx_pp/manifest.csv, with crops of the source films (when found) and the cleaned ones."""
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


def reaudit_section(run: Run) -> Section:
    """Section 6 from audit/b*.csv, against audit/a*.csv when A's audit is there."""
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
