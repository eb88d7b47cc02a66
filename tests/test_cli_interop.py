"""``linsteer export`` / ``linsteer import`` / ``linsteer sweep --ray``: round trips through the
command line and one-line errors for files that do not fit the model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from archs import arch_model
from linsteer.cli.main import build_parser, main
from linsteer.extract.vector import SteeringVector
from tiny import tiny_tokenizer


def _folder(root: Path, hidden: int = 32, layers: int = 3) -> Path:
    arch_model("llama", hidden=hidden, layers=layers).save_pretrained(root)
    tiny_tokenizer().save_pretrained(root)
    return root


def _vector(path: Path, layers: range = range(3)) -> Path:
    g = torch.Generator().manual_seed(3)
    SteeringVector({k: torch.randn(32, generator=g) for k in layers}, {k: 1.0 + k for k in layers},
                   {"reasoning": 2, "memorization": 2}, {"model": "tiny", "method": "mean_diff"}).save(path)
    return path


def _error(argv: list[str], capsys: pytest.CaptureFixture[str], *parts: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("linsteer: error: ") and "\n" not in err, err
    for part in parts:
        assert part in err, err


def test_export_import_round_trip_is_exact(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _folder(tmp_path / "m")
    vec = _vector(tmp_path / "v.safetensors")
    gguf = tmp_path / "v.gguf"
    assert main(["export", str(vec), "--to", "llama.cpp", "--out", str(gguf)]) == 0
    assert "--control-vector-scaled" in capsys.readouterr().out  # layer 0 left out, raw directions
    assert main(["import", str(gguf), "--model", str(model), "--out", str(tmp_path / "back")]) == 0
    back = SteeringVector.load(tmp_path / "back")
    orig = SteeringVector.load(vec)
    assert back.layers == [1, 2] and (tmp_path / "back" / "README.md").exists()
    for layer in back.layers:
        assert torch.equal(back.directions[layer], orig.directions[layer])
    assert back.norms == {1: 2.0, 2: 3.0} and back.meta["method"] == "mean_diff"


def test_import_refuses_files_that_do_not_fit_the_model(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    vec = _vector(tmp_path / "v.safetensors")
    gguf = tmp_path / "v.gguf"
    assert main(["export", str(vec), "--to", "llama.cpp", "--out", str(gguf), "--strength", "2",
                 "--layers", "1-2"]) == 0
    wide = _folder(tmp_path / "wide", hidden=48)
    shallow = _folder(tmp_path / "shallow", layers=2)
    capsys.readouterr()  # drop save_pretrained's progress output
    _error(["import", str(gguf), "--model", str(wide), "--out", str(tmp_path / "x")], capsys,
           "hidden size 32", "has 48")
    _error(["import", str(gguf), "--model", str(shallow), "--out", str(tmp_path / "x")], capsys,
           "layer 2", "2 layers")
    _error(["export", str(vec), "--to", "llama.cpp", "--out", str(gguf), "--layers", "0-1"], capsys,
           "layer 0")
    _error(["export", str(vec), "--to", "llama.cpp", "--out", str(gguf), "--layers", "x"], capsys,
           "bad --layers")
    _error(["export", str(vec), "--to", "lm-eval", "--out", str(tmp_path / "s.pt")], capsys, "--layers")
    assert not (tmp_path / "x").exists()


def test_export_lmeval_names_hookpoints_from_the_model(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    model = _folder(tmp_path / "m")
    vec = _vector(tmp_path / "v.safetensors")
    out = tmp_path / "steer.pt"
    assert main(["export", str(vec), "--to", "lm-eval", "--out", str(out), "--layers", "1,2",
                 "--strength", "3", "--model", str(model)]) == 0
    assert "steer_path=" in capsys.readouterr().out
    config = torch.load(out, weights_only=True)
    assert sorted(config) == ["layers.1", "layers.2"]
    assert config["layers.1"]["steering_coefficient"] == 3.0


def test_sweep_takes_ray_and_an_address() -> None:
    parser = build_parser()
    assert parser.parse_args(["sweep", "run"]).ray is None
    assert parser.parse_args(["sweep", "run", "--ray"]).ray == "local"
    args = parser.parse_args(["sweep", "run", "--ray", "ray://head:10001", "--workers", "4"])
    assert (args.ray, args.workers) == ("ray://head:10001", 4)
