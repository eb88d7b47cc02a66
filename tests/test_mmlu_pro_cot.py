"""The ``mmlu_pro_cot=PATH`` task on the real MMLU-Pro file: its items, the exemplars held apart,
the seed's reader (an unreadable answer wrong, never a guessed letter), and its refusals."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from archs import arch_lm, model_folder
from helpers import DATA, needs_data, one_line_error
from linsteer.errors import LinsteerError
from linsteer.generate.eager import GenerationOutput
from linsteer.prompts.answer_rules import answer_rule
from linsteer.prompts.benchmarks import load_mmlu_pro
from linsteer.prompts.formats import get_format
from linsteer.prompts.seed_formats import SEED_COT_CUE, SEED_LETTERS, SEED_MMLU_PRO_COT, seed_mmlu_pro_prompt
from linsteer.prompts.seed_mmlu import category, is_reasoning
from linsteer.run.config import RunConfig, contrast_ids, make_config, task_specs
from linsteer.run.extract import check_extract
from linsteer.run.validate import validate_config
from linsteer.score.generated import score_gen
from linsteer.score.records import score_generation
from linsteer.sweep.tasks import TaskSpec, is_generative, own_format, task_role

MMLU = DATA / "mmlu_pro" / "test.jsonl"
TASK = f"mmlu_pro_cot={MMLU}"

pytestmark = needs_data


def _spec(**changes: object) -> TaskSpec:
    spec = TaskSpec(TASK, "reasoning", n_dev=6, n_test=10, shots=5, prompt_format=SEED_MMLU_PRO_COT)
    return replace(spec, **changes)  # type: ignore[arg-type]


def test_items_are_reasoning_letters_with_same_category_exemplars_held_apart() -> None:
    spec = _spec()
    dev, test = spec.gen_items("dev"), spec.gen_items("test")
    assert len(dev) == 6 and len(test) == 10
    evaluated = {it.id for it in dev + test}
    assert len(evaluated) == 16  # dev and test disjoint
    source = {it.id: it for it in load_mmlu_pro(MMLU)}
    fmt = get_format(SEED_MMLU_PRO_COT)
    for item in dev + test:
        mc = source[item.id]
        assert is_reasoning(mc)
        assert item.gold == mc.meta["answer"] == SEED_LETTERS[mc.gold]
        shots = [source[i] for i in item.meta["exemplars"]]
        assert len(shots) == 5 and not evaluated & set(item.meta["exemplars"])  # no exemplar evaluated
        assert {category(s) for s in shots} == {category(mc)}  # its own category
        prompt = fmt.render_item(item)
        assert prompt == seed_mmlu_pro_prompt(mc, shots) and prompt.endswith(SEED_COT_CUE)
        assert prompt.count("\nOptions are:\n") == 6 and all(s.question in prompt for s in shots)
    assert [it.id for it in _spec().gen_items("test")] == [it.id for it in test]  # deterministic
    assert [it.id for it in _spec(seed=1).gen_items("test")] != [it.id for it in test]
    held = frozenset(it.id for it in test[:3])
    assert not held & {it.id for it in _spec(exclude=held).gen_items("test")}


def test_task_registered_with_its_own_format_and_the_contrast_held_apart() -> None:
    assert is_generative(TASK) and task_role(TASK) == "reasoning" and own_format(TASK) == SEED_MMLU_PRO_COT
    config = make_config("compare", None, {"tasks": [TASK, "facts_mc"], "gen_format": "seed_gsm8k_8shot",
                                           "n_per_class": 200})
    spec = task_specs(config)[0]
    assert (spec.prompt_format, spec.shots) == (SEED_MMLU_PRO_COT, 5)  # not gen_format, not shots
    assert spec.exclude == contrast_ids(config) and len(spec.exclude) == 400
    items = {it.id for split in ("dev", "test") for it in spec.gen_items(split)}
    assert len(items) == config.n_dev + config.n_test and not items & spec.exclude
    with pytest.raises(LinsteerError, match="renders only the items of an mmlu_pro_cot"):
        get_format(SEED_MMLU_PRO_COT).render("What is 2+2?")


def test_reader_reads_letters_and_an_unreadable_answer_is_wrong() -> None:
    items = _spec(n_test=3).gen_items("test")
    rule = answer_rule(SEED_MMLU_PRO_COT)
    texts = [f"so the answer is ({items[0].gold}). Then", f"the answer is {items[1].gold}",
             "I cannot tell.\n\nQ: next"]
    kept = [t[: rule.end(t) or len(t)] for t in texts]
    assert kept[0] == f"so the answer is ({items[0].gold})" and kept[2] == "I cannot tell."
    results, failures = score_generation(items, [GenerationOutput(t, 5, "stop") for t in kept], rule.read)
    assert [r.prediction for r in results] == [items[0].gold, items[1].gold, None]
    assert [r.correct for r in results] == [True, True, False] and failures == 1
    wrong = next(letter for letter in SEED_LETTERS if letter != items[0].gold)
    assert not score_generation(items[:1], [GenerationOutput(f"answer is ({wrong})", 4, "stop")],
                                rule.read)[0][0].correct


def test_scored_by_generation_on_a_tiny_model_unreadable_counted_wrong() -> None:
    items = _spec(n_test=3, shots=1).gen_items("test")
    scores = score_gen(arch_lm("llama"), items, [], prompt_format=SEED_MMLU_PRO_COT, max_new_tokens=4)
    assert [r.item_id for r in scores.base] == [it.id for it in items]
    assert [r.gold for r in scores.base] == [it.gold for it in items]
    # 4 random tokens never say "answer is (X)": every answer unreadable, wrong, never a guess
    assert all(r.prediction is None and not r.correct for r in scores.base)
    assert scores.unreadable == [1.0]


def _file(path: Path, rows: list[dict[str, object]]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _row(i: int, cat: str) -> dict[str, object]:
    return {"question_id": i, "question": f"What is {i} plus {i}?", "options": [str(2 * i), str(i)],
            "answer": "A", "answer_index": 0, "cot_content": "", "category": cat, "src": "ori_mmlu-x"}


def test_validation_refuses_in_one_line_before_any_work(tmp_path: Path) -> None:
    model = str(model_folder(tmp_path / "model"))

    def check(task: str, **changes: object) -> None:
        validate_config(make_config("compare", None, {"model": model, "tasks": [task, "facts_mc"],
                                                      "n_dev": 2, "n_test": 2, **changes}))

    one_line_error(lambda: check(f"mmlu_pro_cot={tmp_path / 'missing.jsonl'}"), "benchmark file not found")
    (tmp_path / "bin.jsonl").write_bytes(b"\xff\xfe\x00garbage\n")
    one_line_error(lambda: check(f"mmlu_pro_cot={tmp_path / 'bin.jsonl'}"), "not UTF-8 text")
    (tmp_path / "bad.jsonl").write_text('{"question": \n')
    one_line_error(lambda: check(f"mmlu_pro_cot={tmp_path / 'bad.jsonl'}"), "line 1: invalid JSON")
    # math has 4 items for 4 evaluated ones: no exemplar left
    few = _file(tmp_path / "few.jsonl", [_row(i, "math") for i in range(4)])
    one_line_error(lambda: check(f"mmlu_pro_cot={few}", mmlu_pro_shots=1),
                   "mmlu_pro_shots 1 is more than the 0 exemplars of category 'math'")
    # physics has 6: 4 evaluated, so 2 exemplars at most
    six = _file(tmp_path / "six.jsonl", [_row(i, "physics") for i in range(6)])
    one_line_error(lambda: check(f"mmlu_pro_cot={six}", mmlu_pro_shots=3), "lower mmlu_pro_shots to 2")
    check(f"mmlu_pro_cot={six}", mmlu_pro_shots=2)  # enough: accepted
    one_line_error(lambda: check(f"mmlu_pro_cot={six}", mmlu_pro_shots=1, n_test=5),
                   "mmlu_pro_cot: asked for 5 test items but the test split has 3")
    one_line_error(lambda: check(f"mmlu_pro_cot={six}", gen_format=SEED_MMLU_PRO_COT),
                   "config key 'gen_format'", "own prompt")
    one_line_error(lambda: check(f"mmlu_pro_cot={six}", mmlu_pro_shots=-1), "mmlu_pro_shots")
    one_line_error(lambda: check_extract(RunConfig(prompt_format=SEED_MMLU_PRO_COT), tmp_path / "v.st"),
                   "--format: 'seed_mmlu_pro_cot' is the mmlu_pro_cot=PATH task's own prompt")
