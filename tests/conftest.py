"""Test-session settings shared by every package's tests."""

import torch


def pytest_configure(config) -> None:
    # Tests use tiny models: one thread avoids scheduling overhead (and oversubscription on 2 cores).
    torch.set_num_threads(1)
