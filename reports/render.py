"""The audit report of a run directory: `render(run_dir)` writes `report.html` and `summary.md`.

Everything comes from the files a run wrote (docs/run-directory.md), so an old run re-renders. A section
whose files are missing says "not run" (a run killed half way still renders). The HTML is self-contained:
styles, a few lines of script that make tables sortable, and figures as base64 PNG data URIs.

Privacy: the report shows aggregates, dataset filenames (gallery captions, rejects, crops) and the run's config;
it never shows the `patient_id` column of any table. It reads the pixels of a few source and COVIDx++ films
for full-resolution crops (reports.crops); no image header field is shown or kept.

The sections are built by reports.summary_section (the summary), reports.run_section (1),
reports.classifier_sections (2, 5), reports.audit_sections (3, 4, 6), reports.probes_section ("Did cleaning
remove the shortcut?", when the run has probes/) and reports.history (the sections after them); this module
orders and numbers them and writes both files.
"""

from __future__ import annotations

from pathlib import Path

import jinja2

from datasets.atomic import write_text
from reports import history
from reports.audit_sections import audit_a_section, covidx_pp_section, reaudit_section
from reports.blocks import Code, Run, Section, Table, Text
from reports.classifier_sections import classifier_a_section, comparison_section
from reports.probes_section import probes_section
from reports.run_section import run_section
from reports.summary_section import summary_section


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
    sections = [summary_section(run, metrics), run_section(run, summary), classifier_a_section(run, metrics),
                audit_a_section(run, summary), covidx_pp_section(run), comparison_section(run, metrics),
                reaudit_section(run)]
    later = [section for section in (probes_section(run, metrics), history.changes_section(run),
                                     history.review_section(run)) if section is not None]
    for position, section in enumerate(later, start=len(sections)):
        section.number = position
    sections += later
    title = f"cxr-audit report: run {summary.get('run_id', run.root.name)}"
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                                     autoescape=True, undefined=jinja2.StrictUndefined)
    html = environment.get_template("report.html.j2").render(title=title, summary=sections[0], sections=sections[1:])
    write_text(run.root / "summary.md", _markdown(sections, title))
    return write_text(run.root / "report.html", html)

