import os

import pytest
import torch

# Without a GPU the Triton kernels run in Triton's interpreter; the flag must be set before
# anything imports triton, so it is set here, before any test module is collected.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
