"""The command line: the whole pipeline on a tiny model folder, stages, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from archs import arch_model, model_folder
from linsteer.cli.main import main
from tiny import tiny_tokenizer

TINY_CONFIG = """
contrast: builtin
n_per_class: 8
layers: [0, 1]
strengths: [1.0, 4.0]
n_null: 2
n_dev: 4
n_test: 8
neutral_texts: 4
analysis_layers: 3
extra_methods: [pca]
unit: norm
damage_cap: null
"""


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return model_folder(tmp_path_factory.mktemp("tiny-llama"))


def test_run_writes_a_complete_run_directory(tiny_folder: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_CONFIG)
    code = main(["run", "--model", str(tiny_folder), "--config", str(config), "--runs",
                 str(tmp_path / "runs"), "--quiet"])
    assert code == 0
    report = Path(capsys.readouterr().out.strip())
    run_dir = report.parent
    assert report.name == "report.html" and report.stat().st_size > 10_000
    for name in ("config.yaml", "acts.safetensors", "vector.safetensors", "results.sqlite",
                 "results.json", "controls.json", "tables/items.csv", "tables/cells.csv"):
        assert (run_dir / name).exists(), name
    results = json.loads((run_dir / "results.json").read_text())
    summary = results["summary"]
    head = summary[0] if isinstance(summary, list) else summary
    assert head["best_layer"] in (0, 1) and head["baseline_acc"] is not None
    # the report says which dtype ran, on which machine and which torch kernels
    dtype = results["settings"]["vector.dtype"]
    assert dtype in ("float32", "bfloat16") and results["title"].endswith(f"({dtype})")
    assert f"({dtype})</title>" in report.read_text()
    machine = results["settings"]["machine"]
    assert machine.startswith("cpu: ") and "torch kernels" in machine
    cells = (run_dir / "tables" / "cells.csv").read_text()
    assert ",pca," in cells and ",mean_diff," in cells  # a second vector source, swept alongside
    assert len(list((run_dir / "figures").glob("*.png"))) >= 5
    assert not list(run_dir.rglob("*.tmp"))
    # a second `report` over the same directory reuses everything, keeping the measured costs
    assert main(["report", str(run_dir), "--quiet"]) == 0
    again = json.loads((run_dir / "results.json").read_text())["summary"]
    again = again[0] if isinstance(again, list) else again
    assert again["extraction_seconds"] == head["extraction_seconds"] is not None


@pytest.mark.parametrize(("argv", "message"), [
    (["extract", "--model", "no-such-model"], "unknown model 'no-such-model'"),
    (["extract", "--layers", "1,x"], "bad --layers"),
    (["extract", "--n", "0"], "--n must be >= 1"),
    (["run", "--strengths", "a,b"], "bad --strengths"),
    (["report", "/nonexistent/run"], "is not a run directory"),
    (["compare", "--models", "gemma3-270m"], "at least two"),
])
def test_bad_input_is_one_line_and_exit_2(argv: list[str], message: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "v.safetensors"
    if argv[0] == "extract":
        argv = [*argv, "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("linsteer: error: ") and message in err and "\n" not in err
    assert not out.exists()  # nothing half-written


@pytest.mark.parametrize(("text", "message"), [
    ("strenghts: [1.0]\n", "unknown config key 'strenghts'"),
    ("n_null: many\n", "config key 'n_null' must be an integer"),
    ("layers: 3\n", "config key 'layers' must be a list"),
    ("tasks: [arith_mc, poetry]\n", "unknown task 'poetry'"),
    ("model: [unclosed\n", "not valid YAML"),
])
def test_bad_config_names_the_key(text: str, message: str, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    assert main(["run", "--config", str(config), "--runs", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not list(tmp_path.glob("2*"))  # no run directory was started


def test_help_explains_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("run", "extract", "analyze", "sweep", "compare", "generate", "report"):
        with pytest.raises(SystemExit) as exc:
            main([command, "--help"])
        assert exc.value.code == 0
        assert "usage: linsteer " + command in capsys.readouterr().out


def test_compare_models_of_different_widths_and_depths(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    folders = []
    for arch, hidden, layers in (("llama", 32, 3), ("mistral", 32, 3), ("qwen2", 48, 4)):
        folder = tmp_path / f"{arch}-{hidden}"
        arch_model(arch, hidden=hidden, layers=layers).save_pretrained(folder)
        tiny_tokenizer().save_pretrained(folder)
        folders.append(str(folder))
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_CONFIG.replace("layers: [0, 1]", "layers: [1]"))
    code = main(["compare", "--models", ",".join(folders), "--config", str(config), "--runs",
                 str(tmp_path / "runs"), "--quiet"])
    assert code == 0
    report = Path(capsys.readouterr().out.strip())
    results = json.loads((report.parent / "results.json").read_text())
    text = report.read_text()
    assert "Reasoning activation profiles on relative depth" in text
    assert "Cosine between models" in text  # llama and mistral share width 32
    table = next(t for t in results["tables"] if t["title"] == "Models")["rows"] \
        if isinstance(results["tables"], list) else results["tables"]["Models"]
    assert [row["hidden"] for row in table] == [32, 32, 48]


def test_extract_then_side_by_side_generation(tiny_folder: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    vector = tmp_path / "v.safetensors"
    assert main(["extract", "--model", str(tiny_folder), "--n", "6", "--out", str(vector), "--quiet"]) == 0
    assert "wrote" in capsys.readouterr().out and vector.exists()
    assert main(["generate", "Q: 2 + 2 = ?\nA:", "--model", str(tiny_folder), "--vector", str(vector),
                 "--layer", "1", "--strength", "8", "--max-new-tokens", "6"]) == 0
    out = capsys.readouterr().out
    assert "--- unsteered ---" in out and "--- steered (add 8 x norm at layer 1) ---" in out
    assert main(["generate", "x", "--model", str(tiny_folder), "--vector", str(vector),
                 "--layer", "9"]) == 2
    assert "layer 9 is out of range" in capsys.readouterr().err
