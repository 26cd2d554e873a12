"""The suite runs on the CPU even where a GPU exists: exact-equality tests (resume, fused against
looped peers) hold in fp32 on the CPU, and notebooks started by the tests inherit this."""
import os

os.environ["CUDA_VISIBLE_DEVICES"] = ""

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

#: Examples per reader of the fuzz suite (tests/test_fuzz_readers.py): a small fixed number in
#: CI; ``SDML_FUZZ_EXAMPLES=10000`` runs the extended setting.
FUZZ_EXAMPLES = int(os.environ.get("SDML_FUZZ_EXAMPLES", "50"))

# Property tests are deterministic: the same examples on every run (derandomize), no example
# database carried between runs, and no deadline (a loaded machine is not a failure).
settings.register_profile("sdml", derandomize=True, database=None, deadline=None,
                          max_examples=FUZZ_EXAMPLES, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile("sdml")


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
