"""The audit report of a run directory: `render(run_dir)` writes report.html and summary.md."""

from reports.render import render

__all__ = ["render"]
