"""bench/authors.py: the authors' code as a peer, exercised on the tests' rewrite of their
module (same module path, class and API) laid out as a clone; the real clone is not needed."""

import shutil
from pathlib import Path

import pytest
import torch

from transformer_xl.bench.authors import AuthorsRunner, bool_masks, load_authors
from transformer_xl.bench.runner import Case, Variant

REF = Path(__file__).parent / "authors_ref"


@pytest.fixture
def clone(tmp_path):
    root = tmp_path / "transformer-xl" / "pytorch"
    (root / "utils").mkdir(parents=True)
    shutil.copy(REF / "mem_transformer.py", root / "mem_transformer.py")
    for name in ("proj_adaptive_softmax.py", "log_uniform_sampler.py"):
        shutil.copy(REF / name, root / "utils" / name)
    return root.parent


def test_bool_masks_is_scoped():
    t = torch.ones(2, 2)
    with bool_masks():
        assert t.byte().dtype == torch.bool
    assert t.byte().dtype == torch.uint8


def test_not_a_clone(tmp_path):
    with pytest.raises(ValueError, match="no pytorch/mem_transformer.py"):
        load_authors(tmp_path)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_runner_steps_and_fills_its_memory(clone, mode):
    r = AuthorsRunner(Case("wt103_small", mode, Variant("sdpa"), batch=2), clone)
    assert r.tokens_per_step == 2 * 64
    for _ in range(r.fill_steps + 1):
        r.step()
    assert torch.isfinite(torch.as_tensor(r.last_loss))
    assert r.mems[0].shape[0] == 64  # [mem_len, B, D]: full after the fill steps
    if mode == "train":
        assert all(p.grad is not None for p in r.model.parameters() if p.requires_grad)


def _side_by_side_script():
    import importlib.util

    path = Path(__file__).parents[1] / "benchmarks" / "authors_side_by_side.py"
    spec = importlib.util.spec_from_file_location("authors_side_by_side", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_authors_side_by_side_cases_take_any_preset_and_refuse_bad_ones(capsys):
    sbs = _side_by_side_script()
    assert sbs.parse_cases(None)[0] == ("tiny256", "train") and len(sbs.parse_cases(None)) == 5
    assert sbs.parse_cases("wt_small:eval, tiny:train") == [("wt_small", "eval"), ("tiny", "train")]
    assert sbs._label("wt_small").startswith("wt_small (")  # the preset's own note
    for bad, says in (("wt_small:trian", "PRESET:train"), ("wt_small", "PRESET:train"),
                      ("nope:train", "unknown bench preset 'nope'")):  # fmt: skip
        with pytest.raises(SystemExit) as e:
            sbs.main(["--authors", "/nonexistent", "--cases", bad])
        assert e.value.code == 2
        assert says in capsys.readouterr().err
