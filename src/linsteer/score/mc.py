"""The multiple-choice scorer: every option's log-likelihood given its prompt, under many settings.

An item's options share one row as a prefix tree (the prompt computed once, each option attending
to the prompt and its own tokens only), and all settings of a batch run through
:class:`linsteer.score.replay.Replayer`, sharing the work below each steered layer. The scores are those
of a full forward over prompt + option, and a padded batch scores as each item alone (recurrent
models: equal-length batches only). :func:`score_mc` scores task items in a prompt format;
:func:`linsteer.score.mc.choice_logprobs` is the plain-use function on top (strings, no settings).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, NamedTuple

import torch
from torch import nn
from tqdm.auto import tqdm

from linsteer.errors import LinsteerError
from linsteer.extract.read import Batch, batches_by_length, left_pad, tokenize
from linsteer.generate.eager import encode_texts
from linsteer.model.head import HeadOutput
from linsteer.model.layers import is_recurrent
from linsteer.model.load import LoadedModel, wrap_model
from linsteer.prompts.formats import PromptFormat, get_format
from linsteer.prompts.items import MCItem
from linsteer.score.records import ChoiceScores, ItemResult, score_choices
from linsteer.score.replay import Replayer
from linsteer.steer.setting import Setting


@dataclass
class MCRow:
    """One sequence to score: a prompt followed by its options' tokens as a prefix tree.

    Each option is a path of trie nodes; a node attends to the prompt and its own ancestors only
    and sits at position ``prompt_len + depth``, so every option is scored exactly as if it
    followed the prompt alone, while the prompt and shared option prefixes (" 1", " 13" of
    " 131" / " 132") are computed once. Without ``tree`` each option gets its own row (a chain).
    """

    item: int
    ids: list[int]
    prompt_len: int
    parents: list[int]  # parent node of each node (-1: the prompt)
    depths: list[int]
    options: list[tuple[int, list[int]]]  # (option index, its path of nodes)


def _window(lm: LoadedModel) -> int | None:
    """The model's sliding attention window, if it has one."""
    window = getattr(getattr(lm.model, "config", None), "sliding_window", None)
    return window if isinstance(window, int) else None


def _tree_ok(lm: LoadedModel, width: int) -> bool:
    """Options may share one row where the model takes a 4D mask (not recurrent, not flash
    attention, which reads only a 2D padding mask) and no sliding window bites."""
    attention = getattr(getattr(lm.model, "config", None), "_attn_implementation", None)
    if is_recurrent(lm.model) or "flash" in str(attention or ""):
        return False
    window = _window(lm)
    return window is None or width <= window


def _groups(lm: LoadedModel, rows: Sequence[MCRow], batch_size: int) -> list[list[int]]:
    """Batches of row indices that score as each row alone.

    A recurrent model ignores the attention mask: its rows are batched with equal lengths only.
    A row longer than a sliding window needs the model's own windowed mask, which the 4D mask
    of a batch holding a prefix tree would replace: such rows are batched apart from the others.
    """
    window = _window(lm)
    long = [window is not None and len(r.ids) > window for r in rows]
    out: list[list[int]] = []
    for apart in (False, True):
        idx = [i for i, is_long in enumerate(long) if is_long == apart]
        lengths = [len(rows[i].ids) for i in idx]
        out += [[idx[j] for j in b] for b in batches_by_length(lengths, batch_size, is_recurrent(lm.model))]
    return out


def _trie_row(item: int, prompt: list[int], options: list[tuple[int, list[int]]]) -> MCRow:
    tokens: list[int] = []
    parents: list[int] = []
    depths: list[int] = []
    children: dict[tuple[int, int], int] = {}
    paths: list[tuple[int, list[int]]] = []
    for j, toks in options:
        node, path = -1, []
        for depth, tok in enumerate(toks):
            key = (node, tok)
            if key not in children:
                children[key] = len(tokens)
                tokens.append(tok)
                parents.append(node)
                depths.append(depth)
            node = children[key]
            path.append(node)
        paths.append((j, path))
    return MCRow(item, prompt + tokens, len(prompt), parents, depths, paths)


def option_rows(
    lm: LoadedModel,
    prompt_ids: Sequence[list[int]],
    option_ids: Sequence[Sequence[list[int]]],
    tree: bool,
    names: Sequence[str],
) -> list[MCRow]:
    """The rows scoring item ``i``'s options (token ids) after its prompt (token ids).

    ``names[i]`` names item ``i`` in errors. A prompt or option without tokens, or an item without
    options, is refused: there would be nothing to condition on or to score."""
    if not len(prompt_ids) == len(option_ids) == len(names):
        raise LinsteerError(f"{len(prompt_ids)} prompts but {len(option_ids)} option lists; "
                            "give one option list per prompt")
    rows: list[MCRow] = []
    for i, (prompt, opts) in enumerate(zip(prompt_ids, option_ids, strict=True)):
        if not opts:
            raise LinsteerError(f"item {names[i]} has no options; give it at least one")
        if not prompt:
            raise LinsteerError(f"item {names[i]}: the prompt tokenises to nothing; give it text or a BOS")
        options = [(j, list(toks)) for j, toks in enumerate(opts)]
        empty = [j for j, toks in options if not toks]
        if empty:
            raise LinsteerError(f"item {names[i]}: option {empty[0]} tokenises to nothing; remove it")
        if tree and _tree_ok(lm, len(prompt) + sum(len(t) for _, t in options)):
            rows.append(_trie_row(i, list(prompt), options))
        else:
            rows += [_trie_row(i, list(prompt), [opt]) for opt in options]
    return rows


def mc_rows(lm: LoadedModel, items: Sequence[MCItem], prompt_format: str | PromptFormat,
            tree: bool) -> list[MCRow]:
    """The rows of ``items`` rendered in ``prompt_format`` (a name, or a format value such as an
    instructed variant from :mod:`linsteer.prompts.instructions`; see :func:`option_rows`)."""
    fmt = prompt_format if isinstance(prompt_format, PromptFormat) else get_format(prompt_format)
    prompt_ids = tokenize(lm, [fmt.render_item(item) for item in items])
    option_ids = [[list(t) for t in lm.tokenizer(fmt.continuations(item.options),
                                                   add_special_tokens=False)["input_ids"]]
                  for item in items]
    return option_rows(lm, prompt_ids, option_ids, tree, [str(item.id) for item in items])


def mc_batch(rows: Sequence[MCRow], pad_id: int) -> Batch:
    """Left-padded batch; rows holding a prefix tree get tree positions and a 4D mask."""
    batch = left_pad([r.ids for r in rows], pad_id)
    if all(len(r.options) == 1 for r in rows):
        return batch
    width = batch.input_ids.shape[1]
    positions = torch.zeros_like(batch.input_ids)
    allowed = torch.zeros((len(rows), width, width), dtype=torch.bool)
    for b, r in enumerate(rows):
        start = width - len(r.ids)
        n = r.prompt_len
        positions[b, start: start + n] = torch.arange(n)
        allowed[b, start: start + n, start: start + n] = torch.tril(torch.ones(n, n, dtype=torch.bool))
        for node, (parent, depth) in enumerate(zip(r.parents, r.depths, strict=True)):
            at = start + n + node
            positions[b, at] = n + depth
            allowed[b, at] = allowed[b, start + n + parent] if parent >= 0 else allowed[b, start + n - 1]
            allowed[b, at, at] = True
    allowed |= torch.eye(width, dtype=torch.bool)  # pads attend to themselves (no empty rows)
    batch.position_ids = positions
    batch.mask_4d = allowed.unsqueeze(1)
    return batch


@dataclass(frozen=True)
class SlotScorer:
    """Each row's option log-likelihoods ``[copies * rows, max options per row]`` from the head
    at the selected positions (see :mod:`linsteer.score.replay`): a token's log-probability is its
    logit minus its position's ``logsumexp``, both from one blocked pass over the vocabulary."""

    n_rows: int
    n_sel: int
    slots: int
    entries: torch.Tensor  # [entries, 4]: (row, slot, window position, token)
    flat: torch.Tensor  # each entry's rank among the selected positions

    def from_head(self, out: HeadOutput) -> torch.Tensor:
        copies = out.shape[0] // self.n_sel
        at = torch.cat([self.flat + c * self.n_sel for c in range(copies)])
        tokens = self.entries[:, 3].repeat(copies)
        reduced = out.reduce(at, tokens)
        picked = (reduced.picked - reduced.lse[at]).cpu()
        result = torch.zeros(copies * self.n_rows, self.slots)
        rows = torch.cat([self.entries[:, 0] + c * self.n_rows for c in range(copies)])
        result.index_put_((rows, self.entries[:, 1].repeat(copies)), picked, accumulate=True)
        return result

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        """The same from logits already computed (``[copies * selected, V]``)."""
        return self.from_head(HeadOutput(full=logits))


def _slot_scorer(rows: Sequence[MCRow]) -> tuple[int, torch.Tensor, SlotScorer]:
    """The logits window (last positions), which of its positions predict an option token, and
    the scorer of those positions."""
    n_last = max(len(r.ids) - r.prompt_len + 1 for r in rows)
    slots = max(len(r.options) for r in rows)
    select = torch.zeros((len(rows), n_last), dtype=torch.bool)
    entries: list[tuple[int, int, int, int]] = []  # (row, slot, window position, token)
    for b, r in enumerate(rows):
        first = n_last - (len(r.ids) - r.prompt_len + 1)  # window position of the last prompt token
        for s, (_, path) in enumerate(r.options):
            for node in path:
                parent = r.parents[node]
                pos = first if parent < 0 else first + 1 + parent
                select[b, pos] = True
                entries.append((b, s, pos, r.ids[r.prompt_len + node]))
    rank = torch.full((len(rows), n_last), -1, dtype=torch.long)
    rank[select] = torch.arange(int(select.sum()))
    idx = torch.tensor(entries, dtype=torch.long)
    flat = rank[idx[:, 0], idx[:, 2]]
    return n_last, select, SlotScorer(len(rows), int(select.sum()), slots, idx, flat)


class MCScores(NamedTuple):
    """What the multiple-choice scorer returns (it unpacks as ``base, per_setting, tokens``)."""

    base: list[ChoiceScores]  # every item, unsteered
    per_setting: list[list[ChoiceScores]]  # every item under each setting, in the settings' order
    base_tokens: int  # tokens through the unsteered base passes (prompt and options, no padding)


def score_rows(
    lm: LoadedModel,
    rows: Sequence[MCRow],
    n_options: Sequence[int],
    settings: Sequence[Setting],
    *,
    batch_size: int = 16,
    replayer: Replayer | None = None,
    progress: str | None = None,
) -> MCScores:
    """Option log-likelihoods of the items behind ``rows`` (item ``i`` has ``n_options[i]``),
    unsteered and under each setting: (baseline scores, scores per setting, tokens processed in
    the base passes). ``batch_size`` counts rows.

    Rows are left-padded with positions counting real tokens only, and batched as
    :func:`_groups` says, so a row in a padded batch scores as the same row alone (recurrent
    models and sliding windows included).
    """
    if batch_size < 1:
        raise LinsteerError(f"batch_size must be at least 1, got {batch_size}")
    replayer = replayer or Replayer(lm)
    pad = int(lm.tokenizer.pad_token_id)
    sums: list[list[list[float]]] = [[[0.0] * n for n in n_options] for _ in range(len(settings) + 1)]
    lengths = [[0] * n for n in n_options]
    for row in rows:
        for j, path in row.options:
            lengths[row.item][j] = len(path)
    tokens = 0
    for idx in tqdm(_groups(lm, rows, batch_size), desc=progress, unit="batch", disable=progress is None,
                    leave=False):
        chunk = [rows[i] for i in idx]
        batch = mc_batch(chunk, pad)
        n_last, select, scorer = _slot_scorer(chunk)
        base, steered = replayer.run(batch, settings, n_last, scorer, select)
        for k, scores in enumerate([base, *steered]):
            for b, row in enumerate(chunk):
                for s, (j, _) in enumerate(row.options):
                    sums[k][row.item][j] = float(scores[b, s])
        tokens += int(batch.attention_mask.sum())

    def collect(per_item: list[list[float]]) -> list[ChoiceScores]:
        return [ChoiceScores(tuple(s), tuple(v / n for v, n in zip(s, lens, strict=True)), tuple(lens))
                for s, lens in zip(per_item, lengths, strict=True)]

    return MCScores(collect(sums[0]), [collect(s) for s in sums[1:]], tokens)


def score_mc(
    lm: LoadedModel,
    items: Sequence[MCItem],
    settings: Sequence[Setting],
    *,
    prompt_format: str | PromptFormat = "mc_text",
    batch_size: int = 16,
    replayer: Replayer | None = None,
    tree: bool = True,
    progress: str | None = None,
) -> MCScores:
    """Option log-likelihoods of every item, unsteered and under each setting.

    With ``tree`` (default), an item's options share one row: one copy of the prompt, each option
    attending to the prompt and itself only, all options starting at the same position, so the
    prompt is computed once per item (exactly equal to one row per option, up to float error).
    Returns (baseline scores, scores per setting, tokens processed in the base passes).
    """
    rows = mc_rows(lm, items, prompt_format, tree)
    return score_rows(lm, rows, [len(item.options) for item in items], settings,
                      batch_size=batch_size, replayer=replayer, progress=progress)


def item_rows(items: Sequence[MCItem], scores: Sequence[ChoiceScores]) -> list[ItemResult]:
    return score_choices(items, scores, normalise=False)


def choice_logprobs(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    options: Sequence[Sequence[str]],
    *,
    batch_size: int = 8,
    add_special_tokens: bool = True,
) -> list[ChoiceScores]:
    """Sum and per-token-mean log-prob of each option's tokens given its prompt, per item.

    The model is used as :func:`~linsteer.model.load.wrap_model` uses it (eval mode; the tokenizer
    gets a pad token if it has none). ``batch_size`` counts rows: one per item (its options
    share the row), or one per option where options cannot share one (recurrent models, rows
    longer than a sliding window).
    """
    lm = wrap_model(model, tokenizer, name=type(model).__name__)
    prompt_ids = encode_texts(tokenizer, prompts, add_special_tokens)
    flat = encode_texts(tokenizer, [opt for opts in options for opt in opts], False)
    ends = list(accumulate(len(opts) for opts in options))
    option_ids = [flat[end - len(opts): end] for opts, end in zip(options, ends, strict=True)]
    rows = option_rows(lm, prompt_ids, option_ids, True, [str(i) for i in range(len(prompts))])
    base, _, _ = score_rows(lm, rows, [len(o) for o in options], [], batch_size=batch_size,
                            replayer=Replayer(lm, engine="full"))
    return base
