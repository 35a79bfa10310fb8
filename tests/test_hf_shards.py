"""HF shard indexes: the files they name must lie inside the model folder."""

import json

import pytest
import torch
from safetensors.torch import save_file

from transformer_xl.convert.hf_files import read_hf_weights


def _index(folder, weight_map):
    folder.mkdir(exist_ok=True)
    text = json.dumps({"metadata": {}, "weight_map": weight_map})
    (folder / "model.safetensors.index.json").write_text(text)


def test_shards_inside_the_folder_are_read(tmp_path):
    model = tmp_path / "m"
    (model / "sub").mkdir(parents=True)
    save_file({"a": torch.ones(2)}, str(model / "sub" / "part-1.safetensors"))
    save_file({"b": torch.zeros(3)}, str(model / "part-2.safetensors"))
    _index(model, {"a": "sub/part-1.safetensors", "b": "part-2.safetensors"})
    state = read_hf_weights(model)
    assert sorted(state) == ["a", "b"] and state["b"].shape == (3,)


@pytest.mark.parametrize(
    "entry", ["../outside.safetensors", "ABS", "sub/../../outside.safetensors"]
)
def test_shard_paths_outside_the_folder_are_refused(tmp_path, entry):
    save_file({"a": torch.ones(2)}, str(tmp_path / "outside.safetensors"))
    entry = str(tmp_path / "outside.safetensors") if entry == "ABS" else entry
    _index(tmp_path / "m", {"a": entry})
    with pytest.raises(ValueError, match="weight_map entry") as e:
        read_hf_weights(tmp_path / "m")
    assert "\n" not in str(e.value) and entry in str(e.value)


def test_a_symlinked_shard_leaving_the_folder_is_refused(tmp_path):
    save_file({"a": torch.ones(2)}, str(tmp_path / "outside.safetensors"))
    _index(tmp_path / "m", {"a": "link.safetensors"})
    (tmp_path / "m" / "link.safetensors").symlink_to(tmp_path / "outside.safetensors")
    with pytest.raises(ValueError, match="outside the model folder"):
        read_hf_weights(tmp_path / "m")


@pytest.mark.parametrize("weight_map", [["x"], {"a": 3}])
def test_malformed_indexes_are_named(tmp_path, weight_map):
    _index(tmp_path / "m", weight_map)
    with pytest.raises(ValueError, match="model.safetensors.index.json"):
        read_hf_weights(tmp_path / "m")
