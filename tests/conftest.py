"""Shared test fixtures."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's small models on one intra-op thread (restored afterwards): tiny matrices gain
    nothing from two threads, and on a busy 2-core machine the threads' spin-waiting made a 1 s test
    take 30 s."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
