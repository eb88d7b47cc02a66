from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
import torch

from linsteer.errors import LinsteerError
from linsteer.generate.eager import GenerationOutput, finish_generation, generate_answers
from linsteer.model.load import wrap_model
from linsteer.prompts.answers import extract_number
from linsteer.score.mc import choice_logprobs, option_rows, score_rows
from linsteer.score.records import ChoiceScores, score_choices, score_generation
from linsteer.score.replay import Replayer
from tiny import tiny_model, tiny_tokenizer

PROMPTS = [
    "Q: What is 2+2?\nA:",
    "Hi",
    "The capital of France is a city called",
    "1, 2, 3,",
    "Q: Which is larger, 7 or 9? Answer:",
]
OPTIONS = [
    [" 4", " 5", " 22"],
    [" there", "!", " you all", " x"],
    [" Paris", " Lyon"],
    [" 4", " 5,", " four"],
    [" 9", " 7", " neither of them", " both", " 16"],
]


@dataclass(frozen=True)
class _MC:
    id: str
    options: tuple[str, ...]
    gold: int | str


@dataclass(frozen=True)
class _Gen:
    id: str
    gold: str


def _reference_sum(model: Any, tok: Any, prompt: str, option: str) -> float:
    """log P(option | prompt) from one full forward over prompt + option tokens."""
    p = tok(prompt)["input_ids"]
    o = tok(option, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([p + o])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits.float(), dim=-1)[0]
    return float(sum(logp[len(p) - 1 + j, t] for j, t in enumerate(o)))


def _scores(model: Any, tok: Any, tree: bool, batch_size: int = 8) -> list[ChoiceScores]:
    """PROMPTS/OPTIONS through the one scorer: options sharing a prompt row (``tree``, what
    :func:`choice_logprobs` does) or one row per option."""
    if tree:
        return choice_logprobs(model, tok, PROMPTS, OPTIONS, batch_size=batch_size)
    lm = wrap_model(model, tok)
    base, _, _ = score_rows(lm, _rows(lm, tok, tree=False), [len(o) for o in OPTIONS], [],
                            batch_size=batch_size, replayer=Replayer(lm, engine="full"))
    return base


def _rows(lm: Any, tok: Any, tree: bool) -> list[Any]:
    prompt_ids = [tok(p)["input_ids"] for p in PROMPTS]
    option_ids = [[tok(o, add_special_tokens=False)["input_ids"] for o in opts] for opts in OPTIONS]
    return option_rows(lm, prompt_ids, option_ids, tree, [str(i) for i in range(len(PROMPTS))])


@pytest.fixture(scope="module")
def tok() -> Any:
    return tiny_tokenizer()


@pytest.mark.parametrize("arch", ["llama", "gemma3", "gpt2", "rwkv"])
@pytest.mark.parametrize("tree", [True, False])
def test_choice_logprobs_match_full_forward(tok: Any, arch: str, tree: bool) -> None:
    model = tiny_model(arch, seed=1)
    scores = _scores(model, tok, tree, batch_size=3)
    assert len(scores) == len(PROMPTS)
    for prompt, opts, sc in zip(PROMPTS, OPTIONS, scores, strict=True):
        assert len(sc.sum_logprobs) == len(opts)
        for o, opt in enumerate(opts):
            ref = _reference_sum(model, tok, prompt, opt)
            assert sc.sum_logprobs[o] == pytest.approx(ref, abs=1e-4)
            n = len(tok(opt, add_special_tokens=False)["input_ids"])
            assert sc.n_tokens[o] == n
            assert sc.mean_logprobs[o] == pytest.approx(ref / n, abs=1e-4)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma3", "gpt2", "rwkv"])
def test_choice_logprobs_padded_batch_equals_single(tok: Any, arch: str) -> None:
    model = tiny_model(arch)
    long_prompt = "A much longer prompt that exceeds the sliding window by a lot. Answer:"
    prompts = [*PROMPTS, long_prompt]
    options = [*OPTIONS, [" yes", " no way", " maybe so"]]
    batched = choice_logprobs(model, tok, prompts, options, batch_size=8)
    for i in range(len(prompts)):
        (alone,) = choice_logprobs(model, tok, [prompts[i]], [options[i]], batch_size=1)
        assert batched[i].sum_logprobs == pytest.approx(alone.sum_logprobs, abs=1e-4)


def test_rows_past_a_sliding_window_batched_beside_shared_prompt_rows_score_alone(tok: Any) -> None:
    """Gemma 3's window is 8 here: "a" + two options shares one row (4D mask), the long prompt's
    options get rows of their own that need the model's windowed mask."""
    model = tiny_model("gemma3", seed=1)
    prompts = ["a", "A much longer prompt that exceeds the sliding window by a lot. Answer:", "b"]
    options = [[" b", "c"], [" yes", " no way"], ["x", "y"]]
    batched = choice_logprobs(model, tok, prompts, options, batch_size=8)
    for i in range(len(prompts)):
        (alone,) = choice_logprobs(model, tok, [prompts[i]], [options[i]], batch_size=1)
        assert batched[i].sum_logprobs == pytest.approx(alone.sum_logprobs, abs=1e-4)


def test_options_sharing_a_prompt_row_agree_with_one_row_per_option(tok: Any) -> None:
    model = tiny_model("qwen2", seed=3)
    a = _scores(model, tok, tree=True)
    b = _scores(model, tok, tree=False)
    for x, y in zip(a, b, strict=True):
        assert x.sum_logprobs == pytest.approx(y.sum_logprobs, abs=1e-4)
    # a recurrent model cannot share a prompt row: each of its options gets a row of its own
    rows = _rows(wrap_model(tiny_model("rwkv"), tok), tok, tree=True)
    assert len(rows) == sum(len(opts) for opts in OPTIONS)
    assert all(len(r.options) == 1 for r in rows)
    # nor can flash attention, which reads a 2D padding mask only (no prefix-tree mask)
    flash = wrap_model(tiny_model("llama"), tok)
    flash.model.config._attn_implementation = "flash_attention_2"
    rows = _rows(flash, tok, tree=True)
    assert all(len(r.options) == 1 for r in rows)


class _Recorder:
    """Records on_batch calls and the batch size of every model forward, in order."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.events: list[tuple[str, Any]] = []
        self.handle = model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.events.append(("forward", int(ids.shape[0])))

    def on_batch(self, rows: Sequence[int]) -> None:
        self.events.append(("batch", list(rows)))


def test_choice_logprobs_computes_each_prompt_once(tok: Any) -> None:
    """An item's options share its prompt row: one forward per batch, each item in one row."""
    model = tiny_model("llama")
    rec = _Recorder(model)
    choice_logprobs(model, tok, PROMPTS, OPTIONS, batch_size=2)
    rec.handle.remove()
    rows = [n for kind, n in rec.events if kind == "forward"]
    assert rows == [2, 2, 1]


def test_on_batch_generate_called_once_per_batch(tok: Any) -> None:
    model = tiny_model("llama")
    rec = _Recorder(model)
    generate_answers(model, tok, PROMPTS, max_new_tokens=4, batch_size=2, on_batch=rec.on_batch)
    rec.handle.remove()
    batches = [e[1] for e in rec.events if e[0] == "batch"]
    assert len(batches) == 3
    assert sorted(i for b in batches for i in b) == list(range(len(PROMPTS)))
    # every forward between two on_batch calls has as many rows as that batch
    current: list[int] = []
    for kind, value in rec.events:
        if kind == "batch":
            current = value
        else:
            assert value == len(current)


@pytest.mark.parametrize("arch", ["llama", "gemma3", "gpt2", "rwkv"])
def test_generation_greedy_deterministic_and_batch_invariant(tok: Any, arch: str) -> None:
    model = tiny_model(arch, seed=2)
    a = generate_answers(model, tok, PROMPTS, max_new_tokens=12, batch_size=4)
    b = generate_answers(model, tok, PROMPTS, max_new_tokens=12, batch_size=4)
    assert a == b
    singles = [generate_answers(model, tok, [p], max_new_tokens=12)[0] for p in PROMPTS]
    assert [x.text for x in a] == [x.text for x in singles]
    for out in a:
        assert isinstance(out, GenerationOutput)
        assert 1 <= out.n_generated_tokens <= 12
        assert out.finish_reason in {"eos", "length"}


def test_generation_stop_strings_cut_text(tok: Any) -> None:
    model = tiny_model("llama", seed=2)
    (full,) = generate_answers(model, tok, [PROMPTS[0]], max_new_tokens=24)
    assert full.finish_reason == "length" and len(full.text) >= 10
    stop = full.text[6:8]
    (cut,) = generate_answers(model, tok, [PROMPTS[0]], max_new_tokens=24, stop_strings=[stop])
    first = full.text.find(stop)
    assert cut.finish_reason == "stop"
    assert cut.text == full.text[:first]
    assert stop not in cut.text
    # reference token count: shortest generated prefix whose decoding contains the stop string
    ids = torch.tensor([tok(PROMPTS[0])["input_ids"]])
    with torch.no_grad():
        gen = model.generate(ids, max_new_tokens=24, do_sample=False)[0, ids.shape[1] :].tolist()
    n_ref = next(n for n in range(1, 25) if stop in tok.decode(gen[:n], skip_special_tokens=True))
    assert cut.n_generated_tokens == n_ref


def test_finish_counts_eos_and_stop(tok: Any) -> None:
    eos = {tok.eos_token_id}
    ids = tok("ab\nQ: more", add_special_tokens=False)["input_ids"]
    out = finish_generation(tok, [*ids, tok.eos_token_id, 0, 0], eos, [])
    assert (out.text, out.n_generated_tokens, out.finish_reason) == ("ab\nQ: more", len(ids) + 1, "eos")
    out = finish_generation(tok, [*ids, tok.eos_token_id], eos, ["\nQ:", "more"])
    assert (out.text, out.n_generated_tokens, out.finish_reason) == ("ab", 5, "stop")
    out = finish_generation(tok, ids, eos, ["zzz"])
    assert (out.text, out.n_generated_tokens, out.finish_reason) == ("ab\nQ: more", len(ids), "length")


def test_sampling_reproducible_and_rng_untouched(tok: Any) -> None:
    model = tiny_model("llama")
    state = torch.random.get_rng_state()
    a = generate_answers(model, tok, PROMPTS, max_new_tokens=8, do_sample=True, seed=5)
    assert torch.equal(state, torch.random.get_rng_state())
    b = generate_answers(model, tok, PROMPTS, max_new_tokens=8, do_sample=True, seed=5)
    c = generate_answers(model, tok, PROMPTS, max_new_tokens=8, do_sample=True, seed=6)
    assert a == b
    assert a != c


def test_score_generation_counts_format_failures() -> None:
    items = [_Gen("a", "18"), _Gen("b", "1,000"), _Gen("c", "5"), _Gen("d", "7")]
    outs = [
        GenerationOutput("so the answer is 18.0", 6, "stop"),
        GenerationOutput("The answer is $1000.", 7, "eos"),
        GenerationOutput("I am not sure", 4, "length"),
        GenerationOutput("The answer is 8", 5, "stop"),
    ]
    results, failures = score_generation(items, outs, extract_number)
    assert failures == 1
    assert [r.correct for r in results] == [True, True, False, False]
    assert [r.extracted for r in results] == [True, True, False, True]
    assert results[2].prediction is None
    assert results[0].n_generated_tokens == 6 and results[0].gold_prob is None
    with pytest.raises(LinsteerError):
        score_generation(items[:2], outs, extract_number)


def test_score_choices_prob_and_margin() -> None:
    import math

    scores = [
        ChoiceScores((-1.0, -2.0, -3.0), (-0.5, -2.0, -1.0), (2, 1, 3)),
        ChoiceScores((-1.0, -1.0), (-1.0, -1.0), (1, 1)),
    ]
    items = [_MC("x", ("a", "b", "c"), 1), _MC("y", ("p", "q"), "B")]
    raw = score_choices(items, scores, normalise=False)
    assert raw[0].prediction == "A" and raw[0].gold == "B" and not raw[0].correct
    z = math.exp(-1) + math.exp(-2) + math.exp(-3)
    assert raw[0].gold_prob == pytest.approx(math.exp(-2) / z)
    assert raw[0].margin == pytest.approx(-1.0)
    assert raw[1].prediction == "A" and raw[1].gold_prob == pytest.approx(0.5)  # tie -> first
    norm = score_choices(items, scores, normalise=True)
    assert norm[0].prediction == "A" and norm[0].margin == pytest.approx(-1.5)
    gold_text = score_choices([_MC("x", ("a", "b", "c"), "c")], scores[:1], normalise=False)
    assert gold_text[0].gold == "C"
    with pytest.raises(LinsteerError):
        score_choices([_MC("x", ("a", "b", "c"), 5)], scores[:1], normalise=False)
    with pytest.raises(LinsteerError):
        score_choices([_MC("x", ("a", "b"), 0)], scores[:1], normalise=False)


def test_choice_logprobs_errors(tok: Any) -> None:
    model = tiny_model("llama")
    with pytest.raises(LinsteerError):
        choice_logprobs(model, tok, ["a"], [[" x", ""]])
    with pytest.raises(LinsteerError):
        choice_logprobs(model, tok, ["a", "b"], [[" x"]])
    with pytest.raises(LinsteerError):
        choice_logprobs(model, tok, ["a"], [[]])
    with pytest.raises(LinsteerError):
        generate_answers(model, tok, ["a"], max_new_tokens=0)
