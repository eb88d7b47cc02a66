"""Chain of thought everywhere it belongs: the alternatives on a generative reasoning task (GSM8K
file, ``arith_gen``), their refusals, the accuracy-vs-CoT-length figure and ``--preset cot``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from archs import arch_lm, model_folder
from helpers import DATA, needs_data, one_line_error
from linsteer.cli.main import build_parser, main
from linsteer.extract.vector import SteeringVector
from linsteer.prompts.answer_rules import answer_rule
from linsteer.prompts.formats import get_format
from linsteer.prompts.instructions import instructed
from linsteer.prompts.items import GenItem
from linsteer.prompts.worked import fewshot_format, holds_exemplars, worked_answer, worked_steps
from linsteer.report.content import cot_length_figures
from linsteer.run.alternatives import stored_items
from linsteer.run.config import PRESETS, RunConfig, make_config, task_specs, with_data
from linsteer.run.estimate import run_flops
from linsteer.run.gen_alternatives import gen_alternatives, sft_pairs
from linsteer.run.paired import Paired
from linsteer.run.validate import validate_config
from linsteer.score.generated import score_gen
from linsteer.steer.setting import Setting
from linsteer.sweep.store import ResultStore, store_path
from linsteer.sweep.tasks import TaskSpec, alternatives_task, train_file

GSM_TRAIN = DATA / "gsm8k" / "train.jsonl"
GSM_TEST = DATA / "gsm8k" / "test.jsonl"


def _short_rows(path: Path, n: int, limit: int = 150) -> list[str]:
    """The first ``n`` rows of a GSM8K file whose question and solution are short (the tiny
    byte-level models hold 512 positions)."""
    out = []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if len(row["question"]) <= limit and len(row["answer"]) <= limit:
            out.append(line)
        if len(out) == n:
            break
    return out


def _gsm_dir(root: Path, n_test: int, n_train: int | None) -> Path:
    """A GSM8K folder of real rows: test.jsonl and (n_train not None) train.jsonl beside it."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "test.jsonl").write_text("\n".join(_short_rows(GSM_TEST, n_test)) + "\n")
    if n_train is not None:
        (root / "train.jsonl").write_text("\n".join(_short_rows(GSM_TRAIN, n_train)) + "\n")
    return root / "test.jsonl"


@needs_data
def test_worked_solutions_and_few_shot_formats(tmp_path: Path) -> None:
    test = _gsm_dir(tmp_path / "gsm8k", 6, 5)
    task = TaskSpec(f"gsm8k={test}", "reasoning", n_dev=2, n_test=3, prompt_format="seed_gsm8k_8shot")
    assert train_file(task.name) == tmp_path / "gsm8k" / "train.jsonl"
    shots = task.train_gen_items(2, 0)
    assert shots == task.train_gen_items(2, 0) and all(s.id.startswith("gsm8k:train:") for s in shots)
    for s in shots:  # GSM8K's solution without calculator notes, ending as the seed's exemplars do
        steps = worked_steps(s)
        assert "<<" not in steps and "####" not in steps and "\n" not in steps
        assert worked_answer(get_format("seed_gsm8k_8shot"), s).endswith(
            f"The answer is {s.gold}. The final answer is {s.gold}.")
        assert worked_answer(get_format("zero_shot"), s) == f"{steps} The final answer is {s.gold}."
    # the seed's 8 exemplars are replaced by the k train ones, in the seed's layout; read by its rule
    item = task.gen_items("test")[0]
    seed, few = get_format("seed_gsm8k_8shot"), fewshot_format("seed_gsm8k_8shot", shots)
    prompt = few.render_item(item)
    assert holds_exemplars("seed_gsm8k_8shot") and not holds_exemplars("zero_shot")
    assert prompt.count("The final answer is") == 2 and "15 trees in the grove" not in prompt
    tail = f"  Q: {item.question}\n  A: Let's think step by step. "
    assert seed.render_item(item).endswith(tail) and prompt.endswith(tail) and shots[0].question in prompt
    assert prompt.startswith("As an expert problem solver")
    assert few.rule_name == instructed("seed_gsm8k_8shot").rule_name == "seed_gsm8k_8shot"
    assert answer_rule(few.rule_name).read("... The final answer is 23.") == "23"
    assert instructed("seed_gsm8k_8shot").render_item(item).endswith(seed.render_item(item))
    # zero_shot gets exemplars in its own layout; arith_gen's steps are computed from the expression
    arith = TaskSpec("arith_gen", "reasoning", prompt_format="zero_shot")
    problem = arith.train_gen_items(3, 0)[2]
    steps = worked_steps(problem)
    assert steps.split(" = ")[-1] == f"{problem.gold}." and steps.count("=") == problem.meta["steps"]
    zs = fewshot_format("zero_shot", [problem]).render_item(arith.gen_items("test")[0])
    assert zs.startswith(f"Q: {problem.question}\nA: {steps} The final answer is {problem.gold}.\n\nQ: ")
    prompts, answers = sft_pairs(task, shots)  # LoRA's targets: the worked solutions
    assert answers[0] == worked_answer(seed, shots[0]) and prompts[0].endswith("step by step. ")
    one_line_error(lambda: worked_steps(GenItem("mgsm:en:0", "q?", "3", "mgsm:en")), "no worked solution")
    one_line_error(lambda: fewshot_format("mc_text", shots), "not a generation format")


def _validate(folder: Path, **keys: Any) -> None:
    base = {"model": str(folder), "contrast": "builtin", "n_per_class": 6, "layers": [1], "n_dev": 2,
            "n_test": 2, "neutral_texts": 2, "fewshot_k": 2, "gen_format": "zero_shot"}
    validate_config(make_config("quick", None, {**base, **keys}))


@needs_data
def test_generative_alternatives_are_refused_without_train_items(tmp_path: Path) -> None:
    folder = model_folder(tmp_path / "model")
    bare = _gsm_dir(tmp_path / "bare", 6, None)
    small = _gsm_dir(tmp_path / "small", 6, 3)
    tasks = (f"gsm8k={bare}", "facts_mc")
    one_line_error(lambda: _validate(folder, tasks=tasks), "alternatives fewshot and lora on gsm8k",
                   "no train file beside", "baselines: [prompt]")
    one_line_error(lambda: _validate(folder, tasks=tasks, baselines=("lora",)), "alternatives lora on")
    _validate(folder, tasks=tasks, baselines=("prompt",))  # a prompt needs no train items
    _validate(folder, tasks=tasks, baselines=())
    one_line_error(lambda: _validate(folder, tasks=(f"gsm8k={small}", "facts_mc"), fewshot_k=5,
                                     baselines=("fewshot",)),
                   "fewshot_k: fewshot asks for 5 solved train items", "has 3", "lower fewshot_k")
    one_line_error(lambda: _validate(folder, tasks=(f"gsm8k={small}", "facts_mc"), baselines=("lora",)),
                   "n_per_class (--n): lora asks for 6 solved train items", "lower n_per_class")
    _validate(folder, tasks=(f"gsm8k={small}", "facts_mc"), baselines=("prompt", "fewshot"))
    mgsm = tmp_path / "mgsm_en.tsv"
    mgsm.write_text("".join(f"Q{i}?\t{i}\n" for i in range(6)))
    one_line_error(lambda: _validate(folder, tasks=(f"mgsm={mgsm}", "facts_mc")), "MGSM has test items only")


def test_cot_preset_resolves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cot = PRESETS["cot"]
    quick = PRESETS["quick"]
    assert cot.gen_format == "seed_gsm8k_8shot" and cot.max_new_tokens == 200 and cot.n_test == 200
    assert cot.baselines == ("prompt", "fewshot", "lora") and cot.tasks[1] == "facts_mc"
    assert (cot.contrast, cot.operators, cot.strengths) == (quick.contrast, quick.operators, quick.strengths)
    assert build_parser().parse_args(["run", "--preset", "cot"]).preset == "cot"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("LINSTEER_DATA", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    one_line_error(lambda: with_data(make_config("cot"), "cot"), "not reachable", "gsm8k=PATH")
    (tmp_path / "data" / "gsm8k").mkdir(parents=True)
    for name in ("test", "train"):
        (tmp_path / "data" / "gsm8k" / f"{name}.jsonl").write_text(
            '{"question": "What is 1 + 2?", "answer": "1 + 2 = 3\\n#### 3"}\n')
    config = with_data(make_config("cot"), "cot")
    assert config.tasks == ("gsm8k=data/gsm8k/test.jsonl", "facts_mc")
    task = task_specs(config)[0]
    assert task.generative and task.prompt_format == "seed_gsm8k_8shot" and task.max_new_tokens == 200
    assert train_file(task.name) == Path("data/gsm8k/train.jsonl")


def _items_sha(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


@needs_data
def test_generative_run_scores_every_alternative_on_the_base_items(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = model_folder(tmp_path / "model")
    test = _gsm_dir(tmp_path / "gsm8k", 12, 10)
    config = tmp_path / "c.yaml"
    config.write_text(f"contrast: builtin\nn_per_class: 6\nlayers: [1]\nstrengths: [0.004]\n"
                      f"n_null: 1\nn_dev: 4\nn_test: 6\nneutral_texts: 2\nanalysis_layers: 2\n"
                      f"damage_cap: 0.2\nformat_cap: 0.0\ntasks: ['gsm8k={test}', facts_mc]\n"
                      f"gen_format: zero_shot\nmax_new_tokens: 6\nlora_steps: 2\nlora_lrs: [0.001]\n"
                      f"fewshot_k: 1\nscan_top: 0\n")
    assert main(["run", "--model", str(folder), "--config", str(config), "--runs", str(tmp_path / "runs"),
                 "--quiet"]) == 0
    report = Path(capsys.readouterr().out.strip())
    results = json.loads((report.parent / "results.json").read_text())
    alt = json.loads((report.parent / "alternatives.json").read_text())
    task = f"gsm8k={test}"
    assert alt["task"] == task and alt["generative"] and alt["prompt_format"] == "zero_shot"
    with ResultStore(store_path(report.parent)) as store:
        base_items = stored_items(store, task, "test", None)
    assert base_items is not None
    expected = _items_sha([r.item_id for r in base_items])
    odd_rows = [f"gsm8k:test:{i}" for i in range(1, 12, 2)]  # the test half of the file
    assert expected == _items_sha(odd_rows)
    assert {r["items_sha256"] for r in alt["rows"]} == {expected} and {r["n"] for r in alt["rows"]} == {6}
    methods = {r["method"] for r in alt["rows"]}
    assert {"base", "prompt:reason", "fewshot:1", "lora"} <= methods
    for r in alt["rows"]:  # each row: the chain's length and the unreadable share, and its cost
        assert 0 < r["mean_tokens"] <= 6 and 0.0 <= r["unreadable"] <= 1.0, r["method"]
        assert r["eval_tokens"] > r["n"] * r["mean_tokens"] and r["p_vs_base"] is not None
    base = next(r for r in alt["rows"] if r["method"] == "base")
    assert base["mean_tokens"] == pytest.approx(sum(r.n_generated_tokens for r in base_items) / 6)
    few = next(r for r in alt["rows"] if r["method"] == "fewshot:1")
    assert "1 solved train item (worked solutions)" in few["note"]
    assert few["eval_tokens"] > base["eval_tokens"]  # its exemplars are read on every query
    lora = next(r for r in alt["rows"] if r["method"] == "lora")
    assert lora["seconds"] > 0 and lora["tokens"] > 0 and alt["lora"]["examples"] == 6
    # format_cap applies: the steered base is the headline's choice, within 0 extra failures on dev
    head = results["summary"][0]
    if head["best_layer"] is None:
        assert alt["steered_setting"] is None and "steered" not in methods
    else:
        assert (alt["steered_setting"]["layer"], alt["steered_setting"]["strength"]) == (
            head["best_layer"], head["best_strength"])
        dev = [r for r in results["tables"]["All cells"] if r["task"] == task and r["split"] == "dev"]
        base_fail = next(r["format_failures"] for r in dev if r["kind"] == "baseline")
        chosen = next(r for r in dev if r["kind"] == "real" and r["strength"] == head["best_strength"])
        assert chosen["format_failures"] <= base_fail
        assert {"steered", "steer+prompt:reason", "steer+prompt:fewshot:1"} <= methods
    titles = [f["title"] for f in results["figures"]]
    assert "Accuracy vs chain-of-thought length (gsm8k)" in titles
    assert {b["method"] for b in results["baselines"]} == methods - {"base", "steered"}


def test_no_cot_length_figure_without_generated_answers() -> None:
    row = {"model": "m", "task": "arith_mc", "role": "reasoning", "split": "test", "kind": "baseline",
           "accuracy": 0.5, "ci_lo": 0.4, "ci_hi": 0.6, "mean_tokens": None}
    assert cot_length_figures([row], None) == []
    figs = cot_length_figures([{**row, "task": "arith_gen", "mean_tokens": 12.0},
                        {**row, "task": "arith_gen", "kind": "real", "mean_tokens": 15.0}],
                       {"task": "arith_gen",
                        "rows": [{**row, "method": "prompt:reason", "mean_tokens": 20.0}]})
    assert [title for title, _, _ in figs] == ["Accuracy vs chain-of-thought length (arith_gen)"]
    assert len(figs[0][2].axes[0].get_legend().get_texts()) == 3


def test_steering_on_top_of_each_prompt_keeps_the_base_items() -> None:
    lm = arch_lm("llama")
    task = TaskSpec("arith_gen", "reasoning", n_dev=2, n_test=3, prompt_format="zero_shot", max_new_tokens=4)
    torch.manual_seed(0)
    vector = SteeringVector({1: torch.randn(32)}, {1: 1.0}, {})
    setting = Setting(vector, 1, "add", 8.0, "raw")
    scores = score_gen(lm, task.gen_items("test"), [setting], prompt_format="zero_shot", max_new_tokens=4)
    paired = Paired(scores.base, scores.per_setting[0], setting, (1.5, 40, 1e6), 100.0)
    said: list[str] = []
    cfg = RunConfig(baselines=("prompt", "fewshot"), fewshot_k=2, batch_size=4)
    alt = gen_alternatives(lm, cfg, task, paired, said.append, rescore=3)
    assert not any("warning" in s for s in said)  # re-scored unsteered exactly as stored
    rows = {r["method"]: r for r in alt.rows}
    assert set(rows) == {"base", "steered", "prompt:reason", "steer+prompt:reason", "fewshot:2",
                         "steer+prompt:fewshot:2"}
    assert len({r["items_sha256"] for r in alt.rows}) == 1
    assert set(alt.dev_rows) == {"prompt:reason", "fewshot:2"}
    assert rows["steered"]["seconds"] == 1.5 and rows["steer+prompt:reason"]["flops"] == 1e6
    assert rows["steered"]["mean_tokens"] == pytest.approx(scores.mean_tokens[1])
    assert rows["steered"]["unreadable"] == pytest.approx(scores.unreadable[1])
    assert rows["fewshot:2"]["prompt_format"] == "zero_shot+2train_shots"
    assert rows["fewshot:2"]["eval_tokens"] > rows["prompt:reason"]["eval_tokens"] > 0
    assert rows["base"]["delta_vs_steered"] == -rows["steered"]["delta_vs_base"]


@needs_data
def test_the_estimate_counts_the_generative_alternatives(tmp_path: Path) -> None:
    lm = arch_lm("llama")
    test = _gsm_dir(tmp_path / "gsm8k", 8, 8)
    keys = {"contrast": "builtin", "n_per_class": 6, "layers": [1], "n_dev": 2, "n_test": 2,
            "neutral_texts": 2, "fewshot_k": 2, "gen_format": "zero_shot", "max_new_tokens": 8,
            "tasks": [f"gsm8k={test}", "facts_mc"]}
    flops = {b: run_flops(make_config("quick", None, {**keys, "baselines": list(b)}), lm)
             for b in ((), ("prompt",), ("prompt", "fewshot"), ("prompt", "fewshot", "lora"))}
    values = list(flops.values())
    assert values == sorted(values) and len(set(values)) == 4  # each alternative adds its arithmetic


def test_the_alternatives_task_is_the_first_reasoning_task_with_our_prompts() -> None:
    def spec(name: str, role: str = "reasoning") -> TaskSpec:
        return TaskSpec(name, role)

    facts, arith = spec("facts_mc", "memorization"), spec("arith_mc")
    assert alternatives_task([facts, spec("gsm8k=a/test.jsonl"), arith]) == spec("gsm8k=a/test.jsonl")
    assert alternatives_task([facts, arith, spec("arith_gen")]) == arith
    # the seed's MMLU-Pro CoT items carry their own k-shot prompt: no prompt of ours goes into it
    assert alternatives_task([spec("mmlu_pro_cot=m/test.jsonl"), arith]) == arith
    assert alternatives_task([spec("mmlu_pro_cot=m/test.jsonl"), facts]) is None
