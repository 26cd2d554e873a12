"""The suite runs on the CPU even where a GPU exists: exact-equality tests (resume, fused against
looped peers) hold in fp32 on the CPU, and notebooks started by the tests inherit this."""
import os

os.environ["CUDA_VISIBLE_DEVICES"] = ""

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A data folder holding the tiny synthetic dataset of ``tests/tiny_run.py``, made once."""
    from sdml.data.synthetic import ensure_synthetic

    root = tmp_path_factory.mktemp("tiny-data")
    ensure_synthetic(root, n_train_per_class=4, n_test_per_class=2, seed=0)
    return root


@pytest.fixture(scope="module")
def one_thread():
    """One CPU thread for a module: on a small shared machine, more threads wait on each other."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
