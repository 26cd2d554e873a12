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
