"""The flow that deployments run: prefect.yaml's (`flows/deploy.py:scheduled_audit`) and `cxr-audit serve`'s.

Its parameters name a config instead of holding one: `config_file` (a YAML config; a relative path is read
from the working directory, which prefect.yaml's pull step sets to $CXR_AUDIT_HOME) and `settings`, dotted
keys applied over it as the CLI's options are, e.g. {"run_dir": "runs/nightly", "data.root": "/data/covidx"}.
The config is loaded and validated when the run starts, and the audit runs as a subflow configured by
`flows.audit.build_flow` (the task runner its `runner` section asks for, results in its run folder), as
`cxr-audit demo` and `run` do.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.audit import run_audit
from flows.config import RunConfig, load_config


def deployment_config(config_file: str | None = None, settings: dict[str, Any] | None = None) -> RunConfig:
    """The validated config that `scheduled_audit` runs with these parameters (ConfigError on a bad one)."""
    return load_config(config_file, **(settings or {}))


@flow(name="scheduled-dataset-audit")
def scheduled_audit(config_file: str | None = None, settings: dict[str, Any] | None = None) -> dict:
    """Load the config (`config_file` with `settings`, dotted keys, over it), then run the audit as it asks
    (`build_flow`); returns the headline numbers (summary.json)."""
    return run_audit(deployment_config(config_file, settings))
