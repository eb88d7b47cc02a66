"""Prompt data for linsteer: contrast sets, benchmarks, built-in tasks and prompt formats."""

from linsteer.prompts.balance import LengthMatch, length_matched, sample_balanced
from linsteer.prompts.benchmarks import (
    KNOWN_BENCHMARKS,
    load_benchmark,
    load_gsm8k,
    load_mgsm,
    load_mmlu_pro,
    load_popqa,
    normalize_number,
)
from linsteer.prompts.contrast import (
    MMLUProSplitRule,
    builtin_contrast,
    dataset_contrast,
    load_user_contrast,
    mmlu_pro_contrast,
    split_mmlu_pro,
)
from linsteer.prompts.formats import (
    FORMAT_NAMES,
    GSM8K_COT_EXEMPLARS,
    ChatFormat,
    Exemplar,
    PromptFormat,
    chat,
    get_format,
    mmlu_pro_cot_format,
)
from linsteer.prompts.generators import (
    Fact,
    arithmetic_problems,
    fact_questions,
    load_facts,
    pool_of,
)
from linsteer.prompts.items import ContrastSet, GenItem, MCItem, PromptItem, check_disjoint
from linsteer.prompts.tasks import TASK_NAMES, builtin_task

__all__ = [
    "FORMAT_NAMES",
    "GSM8K_COT_EXEMPLARS",
    "KNOWN_BENCHMARKS",
    "TASK_NAMES",
    "ChatFormat",
    "ContrastSet",
    "Exemplar",
    "Fact",
    "GenItem",
    "LengthMatch",
    "MCItem",
    "MMLUProSplitRule",
    "PromptFormat",
    "PromptItem",
    "arithmetic_problems",
    "builtin_contrast",
    "builtin_task",
    "chat",
    "check_disjoint",
    "dataset_contrast",
    "fact_questions",
    "get_format",
    "length_matched",
    "load_benchmark",
    "load_facts",
    "load_gsm8k",
    "load_mgsm",
    "load_mmlu_pro",
    "load_popqa",
    "load_user_contrast",
    "mmlu_pro_contrast",
    "mmlu_pro_cot_format",
    "normalize_number",
    "pool_of",
    "sample_balanced",
    "split_mmlu_pro",
]
