"""Every bad input the CLI can get: one line on stderr, exit 2, nothing written, nothing changed.

Each case runs in a workspace holding a tiny model folder, a config, broken inputs and a finished
run; the whole workspace is fingerprinted (every path and the bytes of every file) before and
after, so a refusal that creates a directory or touches the existing run fails the test.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from archs import arch_model
from linsteer.cli.main import main
from linsteer.errors import LinsteerError
from linsteer.extract.vector import SteeringVector
from tiny import tiny_tokenizer

SRC = Path(__file__).resolve().parents[1] / "src"
TINY = """
contrast: builtin
n_per_class: 6
layers: [0, 1]
strengths: [1.0, 4.0]
n_null: 1
n_dev: 4
n_test: 6
neutral_texts: 2
analysis_layers: 2
unit: norm
damage_cap: null
baselines: []
"""
BASE = ["--model", "model", "--config", "tiny.yaml", "--quiet"]


def _write_inputs(ws: Path) -> None:
    arch_model("llama").save_pretrained(ws / "model")
    tiny_tokenizer().save_pretrained(ws / "model")
    (ws / "tiny.yaml").write_text(TINY)
    (ws / "empty.jsonl").write_text("")
    (ws / "oneclass.jsonl").write_text(
        "".join(f'{{"text": "q{i}", "label": "reasoning"}}\n' for i in range(8)))
    (ws / "malformed.jsonl").write_text('{"text": "a", "label": "reasoning"}\n{oops\n')
    (ws / "afile").write_text("a plain file\n")
    (ws / "truncated.gguf").write_bytes(b"GGUF\x03\x00\x00\x00\x02\x00")
    (ws / "text.gguf").write_text("this is not a model\n")
    narrow = SteeringVector({L: torch.ones(16) for L in range(3)}, {L: 1.0 for L in range(3)}, {})
    narrow.save(ws / "narrow.safetensors")  # 16 wide: the tiny model is 32 wide
    SteeringVector({0: torch.ones(32)}, {0: 1.0}, {}).save(ws / "layer0.safetensors")
    for name, extra in (("neutral", "neutral_texts: 99"), ("badpos", "position: middle"),
                        ("badunit", "unit: furlongs"),
                        ("badtask", "tasks: [arith_mc, gsm8k=missing/test.jsonl]"),
                        ("badkey", "strenghts: [1.0]"), ("nullstr", "strengths: [.nan]"),
                        ("memtest", "n_test_memorization: 200"), ("badformat", "format_cap: 1.5"),
                        ("nostop", "tasks: [arith_gen, facts_mc]\ngen_format: mc_letter")):
        (ws / f"{name}.yaml").write_text(TINY + extra + "\n")
    with_lora = TINY.replace("baselines: []", "baselines: [lora]")
    (ws / "badlr.yaml").write_text(with_lora + "lora_lrs: [0.0003, 0.0]\n")


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with inputs and a finished run ``existing`` (made once for the module)."""
    root = tmp_path_factory.mktemp("cli-errors")
    _write_inputs(root)
    old = Path.cwd()
    os.chdir(root)
    try:
        assert main(["run", *BASE, "--run-dir", "existing"]) == 0
    finally:
        os.chdir(old)
    return root


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` with the SHA-256 of each file's bytes ('dir' for folders)."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        out[rel] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


RUN = ["run", *BASE]
CASES: list[tuple[str, list[str], str]] = [
    # unknown things
    ("unknown-model", ["run", "--model", "no-such-model", "--quiet"], "unknown model 'no-such-model'"),
    ("unknown-contrast", [*RUN, "--contrast", "nonsense"], "unknown contrast"),
    ("unknown-operator", [*RUN, "--operators", "add,twist"], "unknown operator 'twist'"),
    ("unknown-position", ["run", "--model", "model", "--config", "badpos.yaml"], "bad position 'middle'"),
    ("unknown-unit", ["run", "--model", "model", "--config", "badunit.yaml"], "unknown 'furlongs'"),
    ("unknown-config-key", ["run", "--model", "model", "--config", "badkey.yaml"], "unknown config key"),
    ("unknown-device", [*RUN, "--device", "tpu"], "unknown device 'tpu'"),
    ("unknown-preset", [*RUN, "--preset", "huge"], "invalid choice: 'huge'"),
    # contrast files
    ("empty-contrast", [*RUN, "--contrast", "empty.jsonl"], "has no rows"),
    ("one-class-contrast", [*RUN, "--contrast", "oneclass.jsonl"], "has no items"),
    ("malformed-contrast", [*RUN, "--contrast", "malformed.jsonl"], "invalid JSON"),
    ("missing-contrast", [*RUN, "--contrast", "mmlu_pro=missing/test.jsonl"], "not found"),
    ("missing-benchmark", ["run", "--model", "model", "--config", "badtask.yaml"],
     "benchmark file not found"),
    # counts
    ("n-0", [*RUN, "--n", "0"], "n_per_class (--n) must be an integer >= 5"),
    ("n-below-5", [*RUN, "--n", "4"], "n_per_class (--n) must be an integer >= 5"),
    ("n-dev-0", [*RUN, "--n-dev", "0"], "n_dev (--n-dev) must be an integer >= 1"),
    ("n-test-negative", [*RUN, "--n-test", "-3"], "n_test (--n-test) must be an integer >= 1"),
    ("n-null-negative", [*RUN, "--n-null", "-1"], "n_null (--n-null) must be an integer >= 0"),
    ("batch-size-0", [*RUN, "--batch-size", "0"], "batch_size (--batch-size) must be an integer >= 1"),
    ("n-not-int", [*RUN, "--n", "x"], "argument --n: invalid int value: 'x'"),
    # counts the data cannot meet: refused before extraction, not after minutes of work
    # (memorization tasks take min(n_test, 64) unless n_test_memorization says otherwise)
    ("n-test-beyond-split", ["run", "--model", "model", "--config", "memtest.yaml", "--unit", "ppl",
                             "--strengths", "0.1,0.25,0.5", "--quiet"],
     "facts_mc: asked for 200 test items but the test split has 92; lower n"),
    ("n-test-beyond-arith", [*RUN, "--n-test", "5000"],
     "arith_mc: could not generate 5000 distinct test items"),
    ("n-dev-beyond-split", [*RUN, "--n-dev", "500"], "facts_mc: asked for 500 dev items"),
    ("shots-beyond-pool", [*RUN, "--shots", "80"], "few-shot: need 80 examples but the train pool has 69"),
    ("neutral-beyond-builtin", ["run", "--model", "model", "--config", "neutral.yaml", "--quiet"],
     "neutral_texts: asked for 99 neutral texts but 16 are built in"),
    ("contrast-beyond-pool", [*RUN, "--n", "5000"], "fact questions: asked for 5000 but only 178"),
    # devices that this machine does not have
    ("device-missing", [*RUN, "--device", "cuda:99"],
     "device 'cuda:99' is not available: this machine has cpu"),
    ("extract-device-missing", ["extract", "--model", "model", "--device", "cuda:99", "--out", "v.st"],
     "is not available"),
    # layers and strengths
    ("layer-out-of-range", [*RUN, "--layers", "3"], "layer 3 is out of range"),
    ("negative-layer-out-of-range", [*RUN, "--layers", "-4"], "layer -4 is out of range"),
    ("layers-backwards", [*RUN, "--layers", "2-0"], "runs backwards"),
    ("layers-garbage", [*RUN, "--layers", "1,x"], "bad --layers"),
    ("strength-nan", [*RUN, "--strengths", "nan"], "not a finite number"),
    ("strength-inf", [*RUN, "--strengths", "0.5,inf"], "not a finite number"),
    ("strength-nan-in-config", ["run", "--model", "model", "--config", "nullstr.yaml"],
     "not a finite number"),
    ("strengths-garbage", [*RUN, "--strengths", "a,b"], "bad --strengths"),
    ("lora-rate-zero", ["run", "--model", "model", "--config", "badlr.yaml"], "lora_lrs must be"),
    ("gen-format-without-stop-rule", ["run", "--model", "model", "--config", "nostop.yaml"],
     "'mc_letter' has no stop rule"),
    ("format-cap-above-one", ["run", "--model", "model", "--config", "badformat.yaml"],
     "format_cap must be a share"),
    # paths
    ("runs-below-a-file", [*RUN, "--runs", "afile/runs"], "afile is a file"),
    ("run-dir-is-a-file", [*RUN, "--run-dir", "afile"], "is a file, not a directory"),
    ("config-missing", ["run", "--config", "missing.yaml"], "config file not found"),
    ("truncated-gguf", ["run", "--model", "truncated.gguf", "--quiet"], "truncated or corrupt"),
    ("text-gguf", ["run", "--model", "text.gguf", "--quiet"], "is not a GGUF file"),
    ("missing-gguf", ["run", "--model", "missing.gguf", "--quiet"], "GGUF file not found"),
    ("folder-not-a-model", ["run", "--model", "existing", "--quiet"], "not a model folder"),
    # an existing run with other settings: refused, and left as it was
    ("existing-other-settings", [*RUN, "--run-dir", "existing", "--n-null", "2"],
     "other settings (differs in: n_null)"),
    ("report-not-a-run", ["report", "afile"], "is not a run directory"),
    ("report-bad-option", ["report", "existing", "--fast"], "unrecognized arguments: --fast"),
    # extract: refused before the model is loaded
    ("extract-out-below-a-file", ["extract", "--model", "model", "--out", "afile/v.safetensors"],
     "afile is a file"),
    ("extract-out-is-a-dir", ["extract", "--model", "model", "--out", "existing"], "is a directory"),
    ("extract-n-0", ["extract", "--model", "model", "--n", "0", "--out", "v.safetensors"],
     "--n must be >= 1"),
    ("extract-batch-0", ["extract", "--model", "model", "--batch-size", "0", "--out", "v.safetensors"],
     "--batch-size must be an integer >= 1"),
    ("extract-layers-backwards", ["extract", "--model", "model", "--layers", "2-0", "--out", "v.st"],
     "runs backwards"),
    ("extract-layer-out-of-range", ["extract", "--model", "model", "--layers", "5", "--n", "6",
                                    "--out", "v.safetensors", "--quiet"], "layer 5 is out of range"),
    ("extract-position", ["extract", "--model", "model", "--position", "first", "--out", "v.st"],
     "bad position 'first'"),
    ("extract-device", ["extract", "--model", "model", "--device", "tpu", "--out", "v.st"],
     "unknown device"),
    ("extract-truncated-gguf", ["extract", "--model", "truncated.gguf", "--out", "v.st"],
     "truncated or corrupt"),
    # generate
    ("generate-strength-nan", ["generate", "hi", "--model", "model", "--vector",
                               "existing/vector.safetensors", "--layer", "0", "--strength", "nan"],
     "not a finite number"),
    ("generate-layer-out-of-range", ["generate", "hi", "--model", "model", "--vector",
                                     "existing/vector.safetensors", "--layer", "7", "--quiet"],
     "out of range"),
    ("generate-no-vector-file", ["generate", "hi", "--model", "model", "--vector", "none.st",
                                 "--layer", "0"], "vector file not found"),
    ("generate-missing-vector", ["generate", "hi", "--layer", "0"], "required: --vector"),
    ("generate-width", ["generate", "hi", "--model", "model", "--vector", "narrow.safetensors",
                        "--layer", "1"], "vector hidden size 16"),
    ("generate-no-direction", ["generate", "hi", "--model", "model", "--vector", "layer0.safetensors",
                               "--layer", "1"], "no direction at layer 1"),
    ("generate-device-missing", ["generate", "hi", "--model", "model", "--vector",
                                 "existing/vector.safetensors", "--layer", "0", "--device", "cuda:99"],
     "is not available"),
    # compare: every model checked before the comparison directory is made
    ("compare-one-model", ["compare", "--models", "model"], "at least two"),
    ("compare-unknown-model", ["compare", "--models", "model,no-such-model", "--config", "tiny.yaml"],
     "unknown model 'no-such-model'"),
    # argparse
    ("no-command", [], "required: COMMAND"),
    ("unknown-command", ["frobnicate"], "invalid choice: 'frobnicate'"),
]


@pytest.mark.parametrize(("argv", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_refused_in_one_line_changing_nothing(argv: list[str], message: str, ws: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(ws)
    before = snapshot(ws)
    capsys.readouterr()
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("linsteer: error: ") and message in lines[0], lines[0]
    assert captured.out == ""
    assert snapshot(ws) == before  # no new file or directory; the existing run byte-identical


def test_existing_run_still_reports_after_a_refusal_without_the_model(
        ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``report`` on a finished run reuses everything: the model is not loaded again."""
    import linsteer.run.stages

    def no_load(*args: object, **kwargs: object) -> None:
        raise AssertionError("report on a finished run loaded the model")

    monkeypatch.chdir(ws)
    assert main([*RUN, "--run-dir", "existing", "--n-null", "2"]) == 2
    monkeypatch.setattr(linsteer.run.stages, "load_model", no_load)
    phases = sqlite3.connect(ws / "existing" / "results.sqlite")
    before = phases.execute("SELECT * FROM phases ORDER BY name").fetchall()
    phases.close()
    assert main(["report", "existing", "--quiet"]) == 0
    assert main(["sweep", "existing", "--quiet"]) == 0
    phases = sqlite3.connect(ws / "existing" / "results.sqlite")
    assert phases.execute("SELECT * FROM phases ORDER BY name").fetchall() == before
    phases.close()


def test_changed_weights_refused_by_name_and_nothing_recorded(
        ws: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """An unfinished run whose model's weights changed: the sweep refuses before writing."""
    work = tmp_path / "ws"
    work.mkdir()
    shutil.copytree(ws / "existing", work / "existing")
    shutil.copytree(ws / "model", work / "model")
    with sqlite3.connect(work / "existing" / "results.sqlite") as db:  # as if killed mid-sweep
        db.execute("DELETE FROM meta WHERE key='sweep_complete'")
    db.close()
    arch_model("llama", seed=1).save_pretrained(work / "model")  # other weights, same config
    monkeypatch.chdir(work)
    before = snapshot(work / "existing")
    capsys.readouterr()
    assert main(["sweep", "existing", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("linsteer: error: the weights of model changed") and "\n" not in err
    assert snapshot(work / "existing") == before  # phases.load and everything else untouched


def test_argparse_errors_from_a_real_process(ws: Path) -> None:
    """The installed command: one line on stderr, exit 2, no usage dump, no traceback."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    for argv in (["run", "--n", "x"], ["generate", "hi", "--layer", "0", "--vector",
                                        "existing/vector.safetensors", "--model", "model",
                                        "--strength", "inf"]):
        proc = subprocess.run([sys.executable, "-m", "linsteer.cli.main", *argv], cwd=ws, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2, proc.stderr
        assert proc.stdout == ""
        assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("linsteer: error: "), \
            proc.stderr


def test_quiet_generate_prints_only_the_text(ws: Path) -> None:
    """--quiet silences transformers' 'Loading weights' bar; negative layers count from the end."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "linsteer.cli.main", "generate", "Q: 1+1?", "--model",
                           "model", "--vector", "existing/vector.safetensors", "--layer", "-2",
                           "--max-new-tokens", "3", "--quiet"],
                          cwd=ws, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert "--- steered (add 1 x norm at layer -2) ---" in proc.stdout


def test_negative_layers_normalised_at_the_config_boundary(ws: Path) -> None:
    from linsteer.model.layers import parse_layers
    from linsteer.run.config import make_config
    from linsteer.run.validate import validate_config

    config = make_config("quick", ws / "tiny.yaml", {"model": str(ws / "model"), "layers": (-1, 0)})
    assert validate_config(config).layers == (0, 2)
    assert parse_layers("-3--2") == [-3, -2] and parse_layers("all") is None
    with pytest.raises(LinsteerError, match="out of range"):
        validate_config(make_config("quick", ws / "tiny.yaml",
                                    {"model": str(ws / "model"), "layers": (-4,)}))


def test_generate_checks_the_vector_before_loading_weights(ws: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Layer range, missing direction and width come from the model's config: no weights load."""
    import transformers

    import linsteer.generate.side_by_side

    def no_weights(*args: object, **kwargs: object) -> None:
        raise AssertionError("generate loaded the weights before checking the vector")

    monkeypatch.setattr(linsteer.generate.side_by_side, "load_model", no_weights)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_weights)
    monkeypatch.chdir(ws)
    for vector, layer, message in (("existing/vector.safetensors", "7", "out of range"),
                                   ("narrow.safetensors", "0", "does not match"),
                                   ("layer0.safetensors", "-1", "no direction at layer -1")):
        capsys.readouterr()
        assert main(["generate", "hi", "--model", "model", "--vector", vector, "--layer", layer]) == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and message in err, err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_refused_in_one_line_from_a_real_process(tmp_path: Path) -> None:
    """No traceback, exit 2, the devices named, and no run directory (nor its config) left."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "linsteer.cli.main", "run", "--device", "cuda",
                           "--runs", "runs"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == ("linsteer: error: device 'cuda' is not available: this machine has "
                                   "cpu; use --device cpu")
    assert list(tmp_path.iterdir()) == []


def test_hub_client_warnings_do_not_reach_a_refusal(ws: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capfd: pytest.CaptureFixture[str]) -> None:
    """A hub id that cannot be reached: the client's retry warnings stay off stderr."""
    import logging
    import warnings

    import transformers

    def offline(*args: object, **kwargs: object) -> None:
        logging.getLogger("huggingface_hub.utils._http").warning(
            "'[Errno -2] Name or service not known' thrown while requesting HEAD; Retrying in 1s")
        warnings.warn("hub notice", UserWarning, stacklevel=1)
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")

    logging.getLogger("huggingface_hub").addHandler(logging.StreamHandler(sys.stderr))
    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", offline)
    monkeypatch.chdir(ws)
    capfd.readouterr()
    assert main(["run", "--model", "someone/some-model", "--config", "tiny.yaml"]) == 2
    err = capfd.readouterr().err
    assert err.splitlines() == ["linsteer: error: cannot load model 'someone/some-model': We couldn't "
                                "connect to 'https://huggingface.co' to load the files"], err
