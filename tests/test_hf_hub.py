"""A Hub repo id as a model source, offline, against a cache in the Hub's own layout."""

import pytest
import torch

from transformer_xl.cli import main
from transformer_xl.config import TransformerXLConfig
from transformer_xl.hub import is_repo_id, snapshot
from transformer_xl.model.transformer import TransformerXLLM
from transformer_xl.segment import SegmentSettings

pytest.importorskip("huggingface_hub")
REV = "0123456789abcdef0123456789abcdef01234567"


def hub_cache(root, repo="someone/tiny-txl", rev=REV, branch="main"):
    """``models--owner--name/{refs/<branch>, snapshots/<rev>/...}`` holding one model."""
    torch.manual_seed(0)
    cfg = TransformerXLConfig(
        vocab_size=12,
        n_layer=1,
        n_head=2,
        d_model=8,
        d_head=4,
        d_inner=16,
        dropout=0.0,
        segment=SegmentSettings(tgt_len=4, mem_len=4),
    )
    model = TransformerXLLM(cfg).eval()
    folder = root / ("models--" + repo.replace("/", "--"))
    model.save_pretrained(folder / "snapshots" / rev)
    (folder / "refs").mkdir()
    (folder / "refs" / branch).write_text(rev)
    return model


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_repo_ids_and_paths(tmp_path, monkeypatch):
    assert is_repo_id("owner/name") and not is_repo_id(tmp_path)
    assert not is_repo_id("a/b/c") and not is_repo_id("../x")
    assert snapshot(tmp_path / "missing") == tmp_path / "missing"
    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path)
    assert not is_repo_id("runs/missing")  # a typo in a local path stays a local error


def test_from_pretrained_reads_a_cached_repo_offline(tmp_path, offline):
    model = hub_cache(tmp_path)
    got = TransformerXLLM.from_pretrained("someone/tiny-txl", cache_dir=tmp_path)
    ids = torch.randint(0, 12, (1, 6))
    assert torch.equal(got(ids).hidden, model(ids).hidden)
    pinned = snapshot("someone/tiny-txl", revision=REV, cache_dir=tmp_path)
    assert pinned == tmp_path / "models--someone--tiny-txl" / "snapshots" / REV


def test_a_branch_revision_reads_its_ref(tmp_path, offline):
    hub_cache(tmp_path, rev="f" * 40, branch="v2")
    path = snapshot("someone/tiny-txl", revision="v2", cache_dir=tmp_path)
    assert path.name == "f" * 40


def test_offline_and_not_cached_is_one_clear_line(tmp_path, offline, capsys, monkeypatch):
    with pytest.raises(ValueError, match="not in the Hub cache") as e:
        snapshot("someone/absent", cache_dir=tmp_path)
    assert "\n" not in str(e.value) and "someone/absent" in str(e.value)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    assert main(["convert", "--to", "hf", "someone/absent", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "someone/absent" in err and "not in the Hub cache" in err and "\n" not in err


def test_txl_commands_take_a_cached_repo_offline(tmp_path, offline, monkeypatch, capsys):
    hub_cache(tmp_path / "cache")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    assert main(["convert", "--to", "hf", "someone/tiny-txl", str(tmp_path / "hf")]) == 0
    assert (tmp_path / "hf" / "model.safetensors").is_file()
    from transformer_xl.run.resolve import find_model_folder

    folder = find_model_folder("someone/tiny-txl")
    assert folder.name == REV
