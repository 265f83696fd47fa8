"""prefect.yaml's deployments as Prefect loads them: the entrypoint's flow, the deployment's parameters
validated against it, and the config they resolve to (no flow run)."""

from pathlib import Path

import pytest
import yaml
from prefect.flows import load_flow_from_entrypoint

from flows.config import load_config
from flows.deploy import deployment_config

ROOT = Path(__file__).parents[2]
DOCUMENT = yaml.safe_load((ROOT / "prefect.yaml").read_text())
DEPLOYMENTS = {item["name"]: item for item in DOCUMENT["deployments"]}


@pytest.fixture
def resolve(monkeypatch):
    """Deployment name → the config its flow run would audit, read as a worker would: in the checkout (the
    pull step enters $CXR_AUDIT_HOME), the flow loaded from the entrypoint, the parameters validated by it."""
    assert DOCUMENT["pull"] == [{"prefect.deployments.steps.set_working_directory": {
        "directory": "{{ $CXR_AUDIT_HOME }}"}}]
    monkeypatch.chdir(ROOT)

    def resolve(name: str):
        deployment = DEPLOYMENTS[name]
        flow = load_flow_from_entrypoint(deployment["entrypoint"], use_placeholder_flow=False)
        assert flow.name == "scheduled-dataset-audit"
        return deployment_config(**flow.validate_parameters(deployment.get("parameters", {})))

    return resolve


def test_the_synthetic_demo_deployment_runs_the_demo_config(resolve):
    assert resolve("synthetic-demo") == load_config(ROOT / "configs" / "demo.yaml", run_dir="runs/demo")


def test_the_nightly_deployment_audits_the_covidx_folder_at_two(resolve):
    config = resolve("nightly-dataset-audit")
    assert config.run_dir == Path("runs/nightly") and config.data.root == Path("/data/covidx")
    assert (config.data.train_split, config.data.test_splits) == ("train_COVIDx9A.txt", {"test": "test_COVIDx9A.txt"})
    assert DEPLOYMENTS["nightly-dataset-audit"]["schedules"] == [{"cron": "0 2 * * *", "timezone": "UTC"}]
