"""Section 1 of the report, "What was run": the run's time, test images per split, class and source, dataset
counts, data quality of the split files, the classifiers' checkpoint metadata, package versions, time per
stage, seeds and the config."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import yaml

from reports.blocks import Block, Code, Run, Section, Text, number, source_of, table_block

STAGE_TIMES = (("train A", "models/a_history.csv"), ("train B", "models/b_history.csv"),
               ("text detection", "text/detections.csv"), ("explain A", "explain/a/index.csv"),
               ("explain B", "explain/b/index.csv"))
FEW_VALIDATION_IMAGES = 30  # as pipeline.train's (reports may not import pipeline; a test checks they agree)


def run_section(run: Run, summary: Mapping) -> Section:
    """Section 1 from `summary` (summary.json, {} when missing), data_quality.json, models/*.json, timings.csv
    (or the stages' own tables of an older run) and config.yaml."""
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


