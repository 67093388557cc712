"""Fixtures the agent tests share: one torch thread (opt-in), and a log with a pattern to learn."""

import numpy as np
import pytest
import torch

from recsim_env.logs import Sequences


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small models: threads only add overhead, and the machine is shared
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cycles() -> Sequences:
    """A deterministic pattern: every user walks a cycle over 20 items, item i followed by i + 1."""
    rng = np.random.default_rng(0)
    starts, lengths = rng.integers(0, 20, 200), rng.integers(6, 15, 200)
    users = np.repeat(np.arange(200), lengths)
    items = (np.repeat(starts, lengths) + np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths))
    return Sequences.from_interactions(users, items % 20 + 1)
