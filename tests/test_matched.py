"""The matched (default) contrast and the shipped MMLU-Pro sample."""

from __future__ import annotations

import statistics
from importlib import resources

from helpers import one_line_error
from linsteer.prompts.generators import pool_of
from linsteer.prompts.matched import CONTEXT, matched_contrast, mmlu_pro_lite_items
from linsteer.prompts.spec import contrast_from_spec
from linsteer.run.config import RunConfig


def test_matched_is_the_default_and_registered() -> None:
    assert RunConfig().contrast == "mmlu_pro-lite"
    assert contrast_from_spec("matched", 8, 0).items == matched_contrast(8, 0).items
    assert len(contrast_from_spec("mmlu_pro-lite", 8, 0).items) == 16


def test_matched_classes_share_template_entities_and_length() -> None:
    cs = matched_contrast(40, seed=3)
    pos, neg = cs.of_label("reasoning"), cs.of_label("memorization")
    assert len(pos) == len(neg) == 40
    prefix = CONTEXT.split("{name}")[1].split("{a}")[0]  # " made "
    assert all(prefix in it.text for it in cs.items)
    # every reasoning item has a memorization twin with the same context sentence
    contexts = {it.text.split(".")[0] for it in neg}
    assert all(it.text.split(".")[0] in contexts for it in pos)
    words = [len(it.text.split()) for it in pos], [len(it.text.split()) for it in neg]
    assert abs(statistics.fmean(words[0]) - statistics.fmean(words[1])) < 1.5
    # countries come from the contrast pool only (never from the evaluation tasks' facts)
    assert all(pool_of(":".join(it.id.split(":")[3:6])) == "contrast" for it in cs.items)
    assert len({it.id for it in cs.items}) == 80
    # reasoning answers are computed from the context numbers
    for it in pos:
        assert it.answer is not None and it.answer.lstrip("-").isdigit()


def test_matched_is_seeded() -> None:
    assert matched_contrast(10, 1).items == matched_contrast(10, 1).items
    assert matched_contrast(10, 1).items != matched_contrast(10, 2).items
    one_line_error(lambda: matched_contrast(0), "n_per_class must be >= 1")


def test_mmlu_pro_lite_is_small_balanced_and_licensed() -> None:
    items = mmlu_pro_lite_items()
    labels = [it.label for it in items]
    assert labels.count("reasoning") == labels.count("memorization") >= 250
    data = resources.files("linsteer").joinpath("data")
    assert len(data.joinpath("mmlu_pro_lite.jsonl").read_bytes()) < 1_000_000
    assert "Apache License" in data.joinpath("MMLU_PRO_LICENSE").read_text()
    mean = {lab: statistics.fmean(len(it.text) for it in items if it.label == lab)
            for lab in ("reasoning", "memorization")}
    assert abs(mean["reasoning"] - mean["memorization"]) < 20  # length-matched
