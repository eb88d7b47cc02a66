"""The chain-of-thought engine (generate/cot) and the answer rules (prompts/answer_rules).

Tiny random-init models (float32, one thread): prefix sharing gives exactly the greedy tokens of
each full prompt generated alone, on every attention model of the matrix, under per-row steering
and under the seed's intervention; recurrent and hybrid stacks fall back to full prompts; a
refilled slot's row equals that item alone; every format's answer ends at its end, never inside
a number, and is read by its own rule.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest
import torch

from linsteer.errors import LinsteerError
from linsteer.generate.cot import CotStats, generate_cot, prefix_sharing, shared_prefix_length
from linsteer.generate.eager import generate_answers
from linsteer.prompts.answer_rules import AnswerRule, answer_rule
from linsteer.prompts.seed_formats import SEED_MMLU_PRO_COT
from linsteer.steer.hooks import Steer, SteeringHandle, steering
from linsteer.steer.lirefs import lirefs_intervention
from matrix_archs import MATRIX
from test_arch_matrix import matrix_lm, vector

ATTENTION = sorted(n for n, (_, kind) in MATRIX.items() if kind == "attention")
NOT_ATTENTION = sorted(n for n, (_, kind) in MATRIX.items() if kind != "attention")
SHOTS = "Q: 1+1?\nA: 2. The final answer is 2.\n\n  Q: 3*3?\nA: 9. The final answer is 9.\n\n  Q: "
PROMPTS = [SHOTS + "5+7?\nA:", SHOTS + "12*4 = ?\nA:", SHOTS + "2?\nA:", SHOTS + "what is 100-1?\nA:"]
NEVER = AnswerRule("never", lambda text: None, lambda text: None)


def ends_at_ord(mod: int) -> AnswerRule:
    """Ends after the first character (past the first) whose code is 0 mod ``mod`` (so rows of one
    batch end apart)."""
    def end(text: str) -> int | None:
        return next((i + 1 for i in range(1, len(text)) if ord(text[i]) % mod == 0), None)
    return AnswerRule(f"ord{mod}", end, lambda text: text)


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def rows_setter(handle: SteeringHandle, strengths: Sequence[float]) -> object:
    def on_rows(conds: Sequence[int]) -> None:
        handle.set_rows([strengths[c] for c in conds])
    return on_rows


@pytest.mark.parametrize("name", ATTENTION)
def test_prefix_sharing_equals_each_full_prompt_alone_under_per_row_steering(name: str) -> None:
    lm = matrix_lm(name)
    assert prefix_sharing(lm.model)
    strengths = (0.0, 4.0)
    stats = CotStats()
    with steering(lm, Steer(vector(lm, seed=3), (1,), "add", 0.0)) as handle:
        got = generate_cot(lm.model, lm.tokenizer, PROMPTS, NEVER, n_conditions=2, max_new_tokens=5,
                           batch_size=3, on_rows=rows_setter(handle, strengths), stats=stats)  # type: ignore[arg-type]
        alone = []
        for s in strengths:
            handle.set_rows(s)
            alone += [generate_answers(lm.model, lm.tokenizer, [p], max_new_tokens=5)[0] for p in PROMPTS]
    assert stats.shared and stats.prefix_tokens == 2 * shared_prefix_length(
        [lm.tokenizer(p)["input_ids"] for p in PROMPTS])
    assert [g.token_ids for g in got] == [a.token_ids for a in alone]
    assert [g.text for g in got] == [a.text for a in alone]
    assert got[:4] != got[4:]  # the steered condition did change the tokens


@pytest.mark.parametrize("name", ["llama", "gemma3", "gpt2", "qwen3_moe"])
def test_prefix_sharing_under_lirefs_equals_full_prompts(name: str) -> None:
    lm = matrix_lm(name)
    with lirefs_intervention(lm, vector(lm, seed=5), layer=1, scale=2.0):
        got = generate_cot(lm.model, lm.tokenizer, PROMPTS, NEVER, max_new_tokens=5, batch_size=2)
        alone = [generate_answers(lm.model, lm.tokenizer, [p], max_new_tokens=5)[0] for p in PROMPTS]
    plain = generate_cot(lm.model, lm.tokenizer, PROMPTS, NEVER, max_new_tokens=5, batch_size=2)
    assert [g.token_ids for g in got] == [a.token_ids for a in alone]
    assert [g.token_ids for g in got] != [p.token_ids for p in plain]


@pytest.mark.parametrize("name", NOT_ATTENTION)
def test_recurrent_and_hybrid_models_fall_back_to_full_prompts(name: str) -> None:
    lm = matrix_lm(name)
    assert not prefix_sharing(lm.model)
    stats = CotStats()
    got = generate_cot(lm.model, lm.tokenizer, PROMPTS[:2], NEVER, max_new_tokens=3, batch_size=2,
                       stats=stats)
    alone = [generate_answers(lm.model, lm.tokenizer, [p], max_new_tokens=3)[0] for p in PROMPTS[:2]]
    assert not stats.shared and stats.prefix_tokens == 0
    assert got == alone


@pytest.mark.parametrize("name", ["llama", "gemma3", "gpt_oss"])
def test_a_refilled_slot_equals_that_item_alone(name: str) -> None:
    lm = matrix_lm(name)
    rule = ends_at_ord(5)
    prompts = [*PROMPTS, SHOTS + "6-6?\nA:", SHOTS + "9/3?\nA:"]
    stats = CotStats()
    got = generate_cot(lm.model, lm.tokenizer, prompts, rule, max_new_tokens=12, batch_size=2, stats=stats)
    alone = [generate_cot(lm.model, lm.tokenizer, [p], rule, max_new_tokens=12, batch_size=1)[0]
             for p in prompts]
    assert got == alone
    lengths = {g.n_generated_tokens for g in got}
    assert len(lengths) > 1 and any(g.finish_reason == "stop" for g in got)  # rows ended apart: refills
    assert stats.logit_rows < len(prompts) * 12  # stopped rows were not run to the longest
    full = generate_answers(lm.model, lm.tokenizer, prompts, max_new_tokens=12, stop_rule=rule.end)
    assert full == got  # today's path (full prompts, stopping criterion) gives the same answers


def test_bad_arguments_refused() -> None:
    lm = matrix_lm("llama")
    with pytest.raises(LinsteerError, match="batch_size"):
        generate_cot(lm.model, lm.tokenizer, PROMPTS, NEVER, batch_size=0)
    assert generate_cot(lm.model, lm.tokenizer, [], NEVER) == []


def test_shared_prefix_leaves_each_prompt_a_token() -> None:
    assert shared_prefix_length([[1, 2, 3], [1, 2, 3]]) == 2
    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 5]]) == 2
    assert shared_prefix_length([[1], [1, 2]]) == 0
    assert shared_prefix_length([[4, 5], [6]]) == 0


# --------------------------------------------------------------------------- answer rules


def cut(fmt: str, text: str) -> str | None:
    end = answer_rule(fmt).end(text)
    return None if end is None else text[:end]


def test_seed_gsm8k_answer_ends_at_its_final_answer_never_inside_a_number() -> None:
    rule = answer_rule("seed_gsm8k_8shot")
    assert rule.end("So 5 + 7 = 12. The final answer is 1") is None
    assert rule.end("So 5 + 7 = 12. The final answer is 12") is None
    assert rule.end("So 5 + 7 = 12. The final answer is 12.") is None  # "12.5" may follow
    assert cut("seed_gsm8k_8shot", "The final answer is 12.\n\n  Q: x") == "The final answer is 12."
    assert cut("seed_gsm8k_8shot", "The final answer is 12.5 dollars") == "The final answer is 12.5"
    assert rule.read("The final answer is 12.") == "12"
    # the next exemplar, indented as the model writes it, ends an answer that never said it
    text = "Raymond's son was born 6 years before.\n\n  Q: Another question"
    assert cut("seed_gsm8k_8shot", text) == "Raymond's son was born 6 years before."
    assert rule.read(cut("seed_gsm8k_8shot", text) or "") is None  # unreadable, not "6"
    assert rule.end("\n\nFirst, 3 + 4 = 7.") is None  # a blank line before the reasoning is no end


def test_choice_formats_end_when_the_letter_is_fixed_or_at_the_next_question() -> None:
    for fmt, marker in ((SEED_MMLU_PRO_COT, "\n\nQ: next"), (SEED_MMLU_PRO_COT, "\nQuestion: next"),
                        ("mmlu_pro_cot_5shot", "\n\n Question: next")):
        rule = answer_rule(fmt)
        assert rule.end("so the answer is (") is None
        assert rule.end("so the answer is (B") is None
        assert cut(fmt, "so the answer is (B).\n") == "so the answer is (B)"
        assert rule.read("so the answer is (B)") == "B"
        assert cut(fmt, "no letter here" + marker) == "no letter here"
        assert rule.read("no letter here") is None
        assert rule.end("\n\nLet us think.") is None


def test_number_formats_end_at_final_answer_or_line_and_read_the_final_number() -> None:
    zero = answer_rule("zero_shot")
    assert zero.end(" 1") is None and cut("zero_shot", " 12\nQ: x") == " 12"
    assert zero.end("\n\n") is None and cut("zero_shot", "\n\n 7\n") == "\n\n 7"  # blank line first
    assert zero.read(" 12") == "12"
    cot = answer_rule("gsm8k_cot_8shot")
    assert cot.end("5 + 7 = 12.\n\nThen") is None
    text = "5 + 7 = 12. The final answer is 12. So"
    assert cut("gsm8k_cot_8shot", text) == "5 + 7 = 12. The final answer is 12."
    assert cot.read("5 + 7 = 12. The final answer is 12") == "12"
    assert cut("mgsm_cot_8shot", "x = 3\nQ: y") == "x = 3"
    assert answer_rule("mgsm_cot_8shot", "de").read("Die Antwort ist 1.234,5") == "1234.5"


def test_formats_scored_by_likelihood_have_no_stop_rule() -> None:
    for fmt in ("mc_letter", "mc_text", "seed_mc"):
        with pytest.raises(LinsteerError, match="no stop rule"):
            answer_rule(fmt)


@pytest.mark.parametrize("name", ["llama", "gemma3"])
def test_score_gen_engines_agree_with_settings_as_rows_and_lirefs(name: str) -> None:
    from linsteer.score.generated import score_gen
    from linsteer.steer.setting import LIREFS, Setting
    from linsteer.sweep.tasks import TaskSpec

    lm = matrix_lm(name)
    items = TaskSpec("arith_gen", "reasoning", n_dev=2, n_test=5).gen_items("test")
    vec = vector(lm, seed=7)
    grid = [Setting(vec, 1, "add", 3.0), Setting(vec, 1, "add", -2.0), Setting(vec, 0, "project_scale", 2.0),
            Setting(vec, 1, LIREFS, 1.5)]
    stats = CotStats()
    cot = score_gen(lm, items, grid, batch_size=3, max_new_tokens=6, compiled=False, stats=stats)
    full = score_gen(lm, items, grid, batch_size=3, max_new_tokens=6, compiled=False, engine="full")
    assert cot == full and stats.shared
    assert len(cot.unreadable) == len(cot.mean_tokens) == 1 + len(grid)
