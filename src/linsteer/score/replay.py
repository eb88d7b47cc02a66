"""Many steering conditions on one batch, sharing all work below the steered layer.

Steering at layer ``L`` changes nothing below ``L``. So a batch is run once, unsteered, with
pre-hooks recording each block's inputs (attention masks, rotary embeddings, positions: whatever
the architecture passes); then, for every condition, only blocks ``L+1..`` are re-run on the
steered output of block ``L``, expanded to one copy of the batch per condition, and the LM head
is applied only to the positions that are scored. The blocks are called exactly as the model
called them, so no architecture table is needed; a self-check on the first batch compares the
replayed unsteered tail with the model's own logits and falls back to full steered forwards
(through :mod:`linsteer.steer.hooks`) if they differ. Recurrent models always use full forwards.

Two engines score the conditions; both give the same numbers (up to float rounding):

- ``"replay"``: the tails above each steered layer, as above. Least arithmetic: wins on CPUs.
- ``"rows"``: the conditions become extra batch rows (one copy of the batch per condition, the
  unsteered baseline included) through the whole model in one steered forward, each row with its
  own vector and strength at its own layer. More arithmetic but few large launches and no
  per-layer Python: wins on GPUs, where the replay's many small calls leave the device idle.

- ``"full"``: one full steered forward per condition (the reference the others are checked
  against; what the replay falls back to when its self-check fails, and recurrent models take).

``engine="auto"`` (default) takes the replay: measured faster on a CPU and on an H200
(bench_gpu.py: replay 1.8x, rows 1.2x over one after another on a Qwen2.5-1.5B shape).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import torch
from torch import nn

from linsteer.errors import LinsteerError
from linsteer.extract.read import Batch
from linsteer.model.head import HeadOutput, HeadScorer, contiguous_head, output_head, score_head
from linsteer.model.layers import hidden_of, is_recurrent
from linsteer.model.load import LoadedModel
from linsteer.steer.hooks import Steer, apply_steering, steering
from linsteer.steer.lirefs import lirefs_intervention
from linsteer.steer.operators import apply_operator
from linsteer.steer.setting import LIREFS, Setting

# A scorer turns logits into whatever per-row numbers the caller keeps; it is called per chunk
# of conditions. It gets the logits of the last ``n_last`` positions, ``[R, n_last, V]``, or, when
# ``run`` is given a ``select`` mask ``[rows, n_last]``, only the selected positions, row-major
# and copy after copy, ``[copies * selected, V]`` (the LM head is then applied nowhere else).
# A :class:`~linsteer.model.head.HeadScorer` gets the same positions as a ``HeadOutput``
# instead, so it can reduce the head block by block without materialising the logits.
Scorer = Callable[[torch.Tensor], torch.Tensor]


class _Stop(Exception):
    pass


def _expand(value: Any, batch: int, copies: int) -> Any:
    """Repeat every batch-shaped tensor (dim >= 2, first dim = batch) ``copies`` times."""
    if isinstance(value, torch.Tensor):
        if value.dim() >= 2 and value.shape[0] == batch and copies > 1:
            return value.repeat(copies, *([1] * (value.dim() - 1)))
        return value
    if isinstance(value, tuple):
        return tuple(_expand(v, batch, copies) for v in value)
    if isinstance(value, list):
        return [_expand(v, batch, copies) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v, batch, copies) for k, v in value.items()}
    return value


@dataclass
class _Capture:
    calls: dict[int, tuple[tuple[Any, ...], dict[str, Any]]] = field(default_factory=dict)
    outputs: dict[int, torch.Tensor] = field(default_factory=dict)


def _forward_kwargs(lm: LoadedModel, batch: Batch, n_last: int) -> dict[str, Any]:
    """Model inputs, asking for logits of the last ``n_last`` positions only where supported."""
    kwargs: dict[str, Any] = dict(batch.model_kwargs(lm), use_cache=False)
    if "logits_to_keep" in inspect.signature(lm.model.forward).parameters:
        kwargs["logits_to_keep"] = n_last
    return kwargs


def _post_block_modules(lm: LoadedModel, batch: Batch) -> list[nn.Module]:
    """The modules the model runs between its last block and the LM head (the final norm)."""
    head = output_head(lm.model)
    if head is None:
        raise ValueError(f"{lm.name} has no output embedding")
    block_ids = {id(m) for blk in lm.blocks.modules for m in blk.modules()}
    order: list[nn.Module] = []
    state = {"after_blocks": False}

    def last_block_done(*_: Any) -> None:
        state["after_blocks"] = True

    def record(module: nn.Module, *_: Any) -> None:
        if state["after_blocks"] and module is not head and module is not lm.model:
            order.append(module)

    hooks = [lm.blocks.modules[-1].register_forward_hook(last_block_done)]
    for module in lm.model.modules():
        if id(module) not in block_ids and module is not head:
            hooks.append(module.register_forward_pre_hook(record))
    hooks.append(head.register_forward_pre_hook(lambda *_: (_ for _ in ()).throw(_Stop())))
    try:
        with torch.inference_mode():
            lm.model(**batch.model_kwargs(lm), use_cache=False)
    except _Stop:
        pass
    finally:
        for h in hooks:
            h.remove()
    # keep only the outermost modules (a norm's own submodules are called by the norm)
    inner = {id(sub) for m in order for sub in m.modules() if sub is not m}
    return [m for m in order if id(m) not in inner]


def _first_rows(batch: Batch, n: int) -> Batch:
    """The batch's first ``n`` rows (a left-padded batch stays valid row by row)."""
    return Batch(batch.input_ids[:n], batch.attention_mask[:n], batch.lengths[:n],
                 None if batch.position_ids is None else batch.position_ids[:n],
                 None if batch.mask_4d is None else batch.mask_4d[:n])


def _selected(logits: torch.Tensor, select: torch.Tensor | None) -> torch.Tensor:
    return logits if select is None else logits[select.to(logits.device)]


Engine = Literal["auto", "replay", "rows", "full"]
ENGINES: tuple[Engine, ...] = get_args(Engine)


@dataclass
class Replayer:
    """Scores many :class:`Setting` s on batches of one model, sharing work below each layer."""

    lm: LoadedModel
    max_rows: int = 64  # rows (conditions x batch) per tail pass
    engine: Engine = "auto"  # "replay", "rows", "full" or "auto" (the replay, measured fastest)
    pass_tokens: int = 1 << 16  # tokens (rows x width) per forward of the rows engine
    pass_logits: int = 1 << 28  # logit entries (rows x scored positions x vocab) per forward, likewise
    _post: list[nn.Module] | None = None
    _replay_ok: bool | None = None  # the replay's self-check on the first batch (None: not run yet)

    def chosen_engine(self) -> Engine:
        """The engine that scores conditions here: ``"rows"``, ``"replay"`` or ``"full"``."""
        if self.engine not in ENGINES:
            raise LinsteerError(f"unknown sweep engine {self.engine!r}; use {', '.join(ENGINES)}")
        return "replay" if self.engine == "auto" else self.engine

    @property
    def replays(self) -> bool | None:
        """Whether conditions are scored by the replay: None until its self-check has run on the
        first batch; False for the ``full`` and ``rows`` engines, and after a failed self-check."""
        if self.chosen_engine() != "replay":
            return False
        return self._replay_ok

    def _logits(self, hidden: torch.Tensor, n_last: int, select: torch.Tensor | None = None,
                copies: int = 1) -> HeadOutput:
        """The head on a block stack's output: the model's final modules, then its head, on the
        last ``n_last`` positions (only the ``select`` ed ones, per copy of the batch)."""
        assert self._post is not None
        h = hidden[:, -n_last:]
        if select is not None:
            h = h[select.to(h.device).repeat(copies, 1)]
        for module in self._post:
            h = module(h)
        return HeadOutput(self.lm, hidden=h)

    def _base_pass(self, batch: Batch, first_layer: int, n_last: int,
                   select: torch.Tensor | None = None) -> tuple[_Capture, HeadOutput]:
        """Run the batch unsteered; record block inputs from ``first_layer`` on, and the logits
        of the last ``n_last`` positions (only the ``select`` ed ones): the forward stops at the
        LM head, which then runs on those positions alone."""
        cap = _Capture()
        hooks = []
        for index in range(first_layer, self.lm.n_layers):
            block = self.lm.blocks.modules[index]

            def pre(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
                    i: int = index) -> None:
                cap.calls[i] = (args, kwargs)

            def post(module: nn.Module, args: Any, output: Any, i: int = index) -> None:
                cap.outputs[i] = hidden_of(output)

            hooks.append(block.register_forward_pre_hook(pre, with_kwargs=True))
            hooks.append(block.register_forward_hook(post))
        final: list[torch.Tensor] = []

        def at_head(module: nn.Module, args: tuple[Any, ...]) -> None:
            final.append(args[0])
            raise _Stop

        head = output_head(self.lm.model)
        assert head is not None  # the self-check refuses models without one
        hooks.append(head.register_forward_pre_hook(at_head))
        try:
            with torch.inference_mode():
                self.lm.model(**_forward_kwargs(self.lm, batch, n_last))
        except _Stop:
            pass
        finally:
            for handle in hooks:
                handle.remove()
        last = final[0][:, -n_last:]
        return cap, HeadOutput(self.lm, hidden=last if select is None else last[select.to(last.device)])

    def _tail(self, cap: _Capture, layer: int, hidden: torch.Tensor, copies: int,
              n_last: int, select: torch.Tensor | None = None) -> HeadOutput:
        batch = cap.outputs[layer].shape[0]
        h = hidden
        with torch.inference_mode():
            for index in range(layer + 1, self.lm.n_layers):
                args, kwargs = cap.calls[index]
                args = _expand(args[1:], batch, copies)
                kwargs = _expand(kwargs, batch, copies)
                if "hidden_states" in kwargs:
                    kwargs["hidden_states"] = h
                    out = self.lm.blocks.modules[index](*args, **kwargs)
                else:
                    out = self.lm.blocks.modules[index](h, *args, **kwargs)
                h = hidden_of(out)
            return self._logits(h, n_last, select, copies)

    def _self_check(self, batch: Batch, n_last: int) -> bool:
        """On the batch's first two rows, at their last four positions: the logits of the model's
        own forward equal both the base pass's (the head run by
        :func:`linsteer.model.head.head_logits`) and a replayed unsteered tail from the middle
        layer's output."""
        if is_recurrent(self.lm.model) or output_head(self.lm.model) is None:
            return False
        try:
            small = _first_rows(batch, 2)
            self._post = _post_block_modules(self.lm, small)
            keep = min(n_last, 4)  # the head on a few positions: as telling, and cheap on a 262k vocabulary
            with torch.inference_mode():
                ref = self.lm.model(**_forward_kwargs(self.lm, small, keep)).logits[:, -keep:].float()
            layer = self.lm.n_layers // 2
            cap, base_head = self._base_pass(small, layer, keep)
            mine = self._tail(cap, layer, cap.outputs[layer], 1, keep).logits()
            base = base_head.logits()
            scale = float(ref.abs().max()) + 1e-6
            return bool(max(float((mine - ref).abs().max()), float((base - ref).abs().max())) / scale < 1e-3)
        except (TypeError, RuntimeError, ValueError, AttributeError):
            return False

    def run(
        self,
        batch: Batch,
        settings: Sequence[Setting],
        n_last: int,
        scorer: Scorer | HeadScorer,
        select: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Score the unsteered batch and every setting on it.

        Returns the baseline scores and one tensor of scores per setting (each ``scorer`` output
        for the batch's rows, in order).
        """
        engine = self.chosen_engine()
        with contiguous_head(self.lm.model):  # the model's own head, where it runs, off PyTorch's slow path
            if engine == "full" or any(s.operator == LIREFS for s in settings):  # lirefs: every block
                return self._run_full(batch, settings, n_last, scorer, select)
            if engine == "rows":
                return self._run_rows(batch, settings, n_last, scorer, select)
            if self._replay_ok is None:
                self._replay_ok = self._self_check(batch, n_last)
            if not self._replay_ok:
                return self._run_full(batch, settings, n_last, scorer, select)
            return self._run_replay(batch, settings, n_last, scorer, select)

    def _run_replay(
        self, batch: Batch, settings: Sequence[Setting], n_last: int, scorer: Scorer | HeadScorer,
        select: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The replay engine (see the module docstring), after its self-check passed."""
        first = min((s.layer for s in settings), default=self.lm.n_layers - 1)
        cap, logits = self._base_pass(batch, first, n_last, select)
        base = score_head(scorer, logits)
        results: list[torch.Tensor | None] = [None] * len(settings)
        rows = batch.input_ids.shape[0]
        mask = batch.attention_mask.to(self.lm.device).bool()
        per_pass = max(1, self.max_rows // rows)
        by_layer: dict[int, list[int]] = {}
        for i, s in enumerate(settings):
            by_layer.setdefault(s.layer, []).append(i)
        for layer, idxs in by_layer.items():
            hidden = cap.outputs[layer]
            for start in range(0, len(idxs), per_pass):
                chunk = idxs[start: start + per_pass]
                copies = len(chunk)
                units = torch.cat([
                    settings[i].vector.unit(layer).to(hidden.device).unsqueeze(0).expand(rows, -1)
                    for i in chunk])
                strengths = torch.cat([
                    torch.full((rows,), settings[i].raw_strength(), device=hidden.device)
                    for i in chunk])
                ops = {settings[i].operator for i in chunk}
                expanded = hidden.repeat(copies, 1, 1)
                keep = mask.repeat(copies, 1) & (strengths != 0).unsqueeze(1)
                if len(ops) == 1:
                    steered = apply_operator(expanded, units, strengths, ops.pop(), keep)
                else:  # mixed operators in one pass: apply each to its rows
                    steered = expanded
                    for j, i in enumerate(chunk):
                        sl = slice(j * rows, (j + 1) * rows)
                        part = apply_operator(expanded[sl], units[sl], strengths[sl],
                                              settings[i].operator, keep[sl])
                        steered = torch.cat([steered[: j * rows], part, steered[(j + 1) * rows:]])
                scores = score_head(scorer, self._tail(cap, layer, steered, copies, n_last, select))
                for j, i in enumerate(chunk):
                    results[i] = scores[j * rows: (j + 1) * rows]
        return base, [r for r in results if r is not None]

    def _run_rows(
        self, batch: Batch, settings: Sequence[Setting], n_last: int, scorer: Scorer | HeadScorer,
        select: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The rows engine: every condition as one copy of the batch, as many copies per steered
        forward as ``pass_tokens`` and ``pass_logits`` allow (the baseline in a forward of its own)."""
        rows, width = batch.input_ids.shape
        kwargs = _forward_kwargs(self.lm, batch, n_last)
        vocab = int(getattr(output_head(self.lm.model), "out_features", 0) or 1)
        per_pass = max(1, min(self.pass_tokens // max(1, rows * width),
                              self.pass_logits // max(1, rows * n_last * vocab)))
        # the baseline alone first: a scorer may keep it (the neutral scorer's KL reference)
        chunks: list[list[Setting | None]] = [[None]]
        chunks += [list(settings[i: i + per_pass]) for i in range(0, len(settings), per_pass)]
        scores: list[torch.Tensor] = []
        for chunk in chunks:
            copies = len(chunk)
            groups: dict[tuple[int, str], list[int]] = {}
            for j, cond in enumerate(chunk):
                if cond is not None:
                    groups.setdefault((cond.layer, cond.operator), []).append(j)
            handles = []
            try:
                for (layer, op), copy_ids in groups.items():
                    first = chunk[copy_ids[0]]
                    assert first is not None
                    strengths = [0.0] * (copies * rows)
                    vectors = [first.vector] * (copies * rows)
                    for j in copy_ids:
                        cond = chunk[j]
                        assert cond is not None
                        strengths[j * rows: (j + 1) * rows] = [cond.raw_strength()] * rows
                        vectors[j * rows: (j + 1) * rows] = [cond.vector] * rows
                    spec = Steer(tuple(vectors), (layer,), op, tuple(strengths))  # type: ignore[arg-type]
                    handles.append(apply_steering(self.lm, spec))
                with torch.inference_mode():
                    out = self.lm.model(**_expand(kwargs, rows, copies))
            finally:
                for handle in handles:
                    handle.remove()
            picked = _selected(out.logits[:, -n_last:].float(),
                               None if select is None else select.repeat(copies, 1))
            result = score_head(scorer, HeadOutput(full=picked))
            scores += [result[j * rows: (j + 1) * rows] for j in range(copies)]
        return scores[0], scores[1:]

    def _run_full(
        self, batch: Batch, settings: Sequence[Setting], n_last: int, scorer: Scorer | HeadScorer,
        select: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The reference path: one full steered forward per setting (also the fallback)."""
        kwargs = _forward_kwargs(self.lm, batch, n_last)

        def forward() -> torch.Tensor:
            with torch.inference_mode():
                out = self.lm.model(**kwargs)
            return score_head(scorer, HeadOutput(full=_selected(out.logits[:, -n_last:].float(), select)))

        base = forward()
        results = []
        for s in settings:
            if s.operator == LIREFS:
                with lirefs_intervention(self.lm, s.vector, layer=s.layer, scale=s.raw_strength()):
                    results.append(forward())
                continue
            spec = Steer(s.vector, (s.layer,), s.operator, s.raw_strength())  # type: ignore[arg-type]
            with steering(self.lm, spec):
                results.append(forward())
        return base, results
