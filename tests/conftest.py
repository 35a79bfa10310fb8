import os
import tempfile

import pytest
import torch
from hypothesis import HealthCheck, settings

# Property-based tests (Hypothesis): "ci", the default, is deterministic (derandomize: the same
# examples on every run, no example database) and bounded so the property suites stay fast;
# HYPOTHESIS_PROFILE=long runs many more random examples by hand.
settings.register_profile(
    "ci", derandomize=True, database=None, max_examples=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)  # fmt: skip
settings.register_profile(
    "long", max_examples=2000, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)  # fmt: skip
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# txl's own cache (the record of prepared folders already verified) starts empty in every test
# session, so that no test depends on what an earlier session left there
os.environ["TXL_CACHE"] = tempfile.mkdtemp(prefix="txl-test-cache-")

# Without a GPU the Triton kernels run in Triton's interpreter; the flag must be set before
# anything imports triton, so it is set here, before any test module is collected.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _transformers_major() -> int:
    try:
        import transformers
    except ImportError:
        return 0
    return int(transformers.__version__.split(".")[0])


# tests/hf5 needs transformers 5 (`.ci/hf5` runs it in its own environment); the main
# environment keeps transformers 4.37.2, the oracle of the conformance tests
collect_ignore = ["hf5"] if _transformers_major() < 5 else []
