"""linsteer on a GPU, in one run: compiled steered generation with distinct vectors per row
against the card's limit, steering overhead in eager ``generate``, the sweep engines and reading,
on random-init models of real shapes (no downloads), printed as ONE JSON.

1. ``reading`` (Llama-3.2-1B shape, 512 prompts x 512 tokens, all layers): ``read_activations``
   vs the bare decoder body and a naive ``output_hidden_states=True`` forward.
2. ``compiled`` (Qwen2.5-1.5B shape, batch 256, 128 prompt + 128 new tokens):
   :class:`linsteer.generate.static.SteeredGenerator` tok/s unsteered (a generator without any
   steering hook: the baseline) and steered with K = 1, 16, 256 distinct (direction, strength)
   pairs over the rows, at one middle layer and at all layers (``vs_unsteered``: the ratios);
   ``headroom``: the decode step's bytes (every weight + the static KV cache) over its time, as
   a fraction of a large device-to-device copy's bandwidth measured in the same run; eager HF
   ``generate`` with the hooks beside it and its token agreement with the compiled path.
3. ``generation_table`` (Qwen2.5-1.5B shape, eager HF ``generate``, 128 prompt + 32 new
   tokens): unsteered tok/s at batch 1/16/128, and steered/unsteered throughput ratios for one
   middle layer, all layers, per-row strengths, ``positions="generated"`` and a distinct vector
   per row: after a warm-up of every variant, the median of ``pairs`` alternating (plain,
   steered) pair ratios, the order flipped every other pair. ``hook_ops``: aten ops per steering
   hook call (prefill, decode) and any host-sync op inside the hooks, counted with
   :mod:`linsteer.steer.hookcost` (device-independent).
4. ``sweep``: ``score_mc`` of 16 configurations (2 layers x 8 strengths) on 128 arith_mc items
   (Qwen shape): the auto engine, the replay and one after another, same prefix-tree rows; each
   warmed up on its own replayer first, then timed alternately, median of 2.

Usage: python benchmarks/bench_gpu.py [--tiny] [--out FILE] [--only reading,compiled,table,sweep]
``--tiny`` runs the same code on tiny shapes (on a CPU in about a minute), same JSON keys.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from random_models import SHAPES, bundled_texts, exact_length_texts, random_model, train_tokenizer

from linsteer.extract.vector import SteeringVector
from linsteer.model.load import LoadedModel, wrap_model
from linsteer.steer.hookcost import count_hook_ops
from linsteer.steer.hooks import Steer, steering

FULL = {"gen_shape": "qwen2.5-1.5b", "read_shape": "llama-3.2-1b", "batches": (1, 16, 128),
        "prompt": 128, "new": 32, "pairs": 3, "compiled_new": 128, "compiled_batch": 256, "items": 128,
        "warm_items": 128, "read_n": 512, "read_len": 512, "read_batch": 32,
        "distinct": (1, 16, 256), "copy_gib": 4.0}
TINY = {"gen_shape": "tiny-qwen", "read_shape": "tiny-llama", "batches": (1, 2, 4),
        "prompt": 8, "new": 4, "pairs": 2, "compiled_new": 4, "compiled_batch": 4, "items": 3,
        "warm_items": 1, "read_n": 8, "read_len": 16, "read_batch": 4,
        "distinct": (1, 2, 4), "copy_gib": 0.0625}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


def random_vector(lm: LoadedModel, seed: int = 0) -> SteeringVector:
    gen = torch.Generator().manual_seed(seed)
    layers = range(lm.n_layers)
    return SteeringVector({L: torch.randn(lm.hidden_size, generator=gen) for L in layers},
                          {L: 1.0 for L in layers}, {})


def build(shape: str, tokenizer: Any, device: str, dtype: torch.dtype) -> LoadedModel:
    return wrap_model(random_model(shape, device, dtype), tokenizer, name=f"random-{shape}")


# ---- 1. steering overhead in eager generate ---------------------------------------------------
def hook_ops(lm: LoadedModel, vec: SteeringVector) -> dict[str, Any]:
    """aten ops per steering hook call, prefill and decode, on 2 unpadded rows (3 new tokens)."""
    mid, all_layers = lm.n_layers // 2, tuple(range(lm.n_layers))
    variants = {"one_layer": Steer(vec, (mid,), "add", 2.0),
                "all_layers": Steer(vec, all_layers, "add", 2.0),
                "per_row_strengths": Steer(vec, (mid,), "add", (1.0, -1.0)),
                "positions_generated": Steer(vec, (mid,), "add", 2.0, positions="generated")}
    ids = torch.randint(4, 200, (2, 8), generator=torch.Generator().manual_seed(3)).to(lm.device)

    def run() -> None:
        with torch.inference_mode():
            lm.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=3,  # type: ignore[operator]
                              min_new_tokens=3, do_sample=False, pad_token_id=0)

    out: dict[str, Any] = {}
    for name, spec in variants.items():
        phases = count_hook_ops(lm, spec, run)
        out[name] = {phase: ops.summary() for phase, ops in phases.items()}
        for summary in out[name].values():
            summary.pop("block_calls")
    return out


def generation_table(lm: LoadedModel, cfg: dict[str, Any]) -> dict[str, Any]:
    device, vocab = lm.device, len(lm.tokenizer)  # type: ignore[arg-type]
    vec, mid, new = random_vector(lm), lm.n_layers // 2, cfg["new"]
    out: dict[str, Any] = {"shape": cfg["gen_shape"], "prompt_tokens": cfg["prompt"],
                           "new_tokens": new, "pairs": cfg["pairs"], "unsteered_tok_s": {},
                           "one_layer": {}, "all_layers": {}, "per_row_strengths": {},
                           "positions_generated": {}, "per_row_vectors": {},
                           "hook_ops": hook_ops(lm, vec)}
    for batch in cfg["batches"]:
        gen = torch.Generator().manual_seed(batch)
        ids = torch.randint(4, vocab, (batch, cfg["prompt"]), generator=gen).to(device)
        enc = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        rows = tuple(float(x) for x in torch.linspace(-2.0, 2.0, batch))
        variants = {
            "one_layer": Steer(vec, (mid,), "add", 2.0),
            "all_layers": Steer(vec, tuple(range(lm.n_layers)), "add", 2.0),
            "per_row_strengths": Steer(vec, (mid,), "add", rows),
            "positions_generated": Steer(vec, (mid,), "add", 2.0, positions="generated"),
            "per_row_vectors": Steer(distinct_rows(lm, batch, batch)[0], (mid,), "add", rows),
        }

        def run(spec: Steer | None, enc: dict[str, torch.Tensor] = enc) -> float:
            def go() -> Any:
                with torch.inference_mode():
                    return lm.model.generate(**enc, max_new_tokens=new, min_new_tokens=new,  # type: ignore[operator]
                                             do_sample=False, pad_token_id=0)
            if spec is None:
                return timed(go, device)[0]
            with steering(lm, spec):
                return timed(go, device)[0]

        for spec in (None, *variants.values()):
            run(spec)  # warm-up, every variant
        for name, spec in variants.items():
            pairs, plains = [], []
            for i in range(cfg["pairs"]):  # alternating (plain, steered) pairs, order flipped
                if i % 2 == 0:
                    p, q = run(None), run(spec)
                else:
                    q, p = run(spec), run(None)
                pairs.append(p / q)
                plains.append(p)
            out[name][str(batch)] = round(statistics.median(pairs), 3)
            out["unsteered_tok_s"].setdefault(str(batch), round(batch * new / statistics.median(plains), 1))
    return out


# ---- 2. compiled steered generation --------------------------------------------------------
def distinct_rows(lm: LoadedModel, k: int, batch: int, seed: int = 100) -> tuple[tuple[SteeringVector, ...],
                                                                             tuple[float, ...]]:
    """``k`` distinct (direction, strength) pairs cycled over ``batch`` rows."""
    vecs = [random_vector(lm, seed + j) for j in range(k)]
    strengths = [float(s) for s in torch.linspace(-8.0, 8.0, k)] if k > 1 else [8.0]
    return (tuple(vecs[i % k] for i in range(batch)), tuple(strengths[i % k] for i in range(batch)))


def copy_bandwidth(device: torch.device, gib: float) -> float:
    """Bytes per second of a large device-to-device copy (read + write counted), best of 5."""
    n = int(gib * (1 << 30))
    src = torch.empty(n, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    best = float("inf")
    for _ in range(5):
        best = min(best, timed(lambda: dst.copy_(src), device)[0])
    return 2 * n / best


def decode_bytes(lm: LoadedModel, batch: int, cache_len: int, dtype: torch.dtype) -> dict[str, int]:
    """What one decoding step must read at least: every weight once (a tied embedding once, as
    the LM head) and the whole static KV cache (its attention reads all ``cache_len`` slots)."""
    cfg = lm.model.config
    weights = sum(p.numel() * p.element_size() for p in lm.model.parameters())
    heads = int(getattr(cfg, "num_key_value_heads", cfg.num_attention_heads))
    head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads)
    item = torch.tensor([], dtype=dtype).element_size()
    kv = 2 * int(cfg.num_hidden_layers) * batch * heads * cache_len * head_dim * item
    return {"weights": weights, "kv_cache": kv}


def compiled_generation(lm: LoadedModel, cfg: dict[str, Any], tiny: bool) -> dict[str, Any]:
    """Tok/s of the compiled generator at batch B: unsteered (a generator with no steering hook,
    the baseline), and steered with K distinct (direction, strength) pairs over the rows at one
    middle layer and at all layers (each its own compiled generator); each call timed twice,
    alternating, the median kept. Then the same steering through eager HF ``generate`` with the
    hooks, token agreement with it, and the decode step's achieved memory bandwidth as a fraction
    of this card's copy bandwidth."""
    from linsteer.generate.static import SteeredGenerator

    device, vocab = lm.device, len(lm.tokenizer)  # type: ignore[arg-type]
    batch, new, mid = cfg["compiled_batch"], cfg["compiled_new"], lm.n_layers // 2
    gen = torch.Generator().manual_seed(7)
    ids = torch.randint(4, vocab, (batch, cfg["prompt"]), generator=gen)
    prompts = [list(map(int, row)) for row in ids]
    notices: list[str] = []
    backend = "eager" if tiny and device.type == "cpu" else None
    tokens = batch * new
    ks = [k for k in cfg["distinct"] if k <= batch]
    where = {"one_layer": (mid,), "all_layers": tuple(range(lm.n_layers))}
    out: dict[str, Any] = {"shape": cfg["gen_shape"], "batch": batch, "prompt_tokens": cfg["prompt"],
                           "new_tokens": new, "distinct_k": ks, "first_call_s": {}, "tok_s": {}}
    rows = {k: distinct_rows(lm, k, batch) for k in ks}
    gens = {"unsteered": SteeredGenerator(lm, layers=(), compile=True, backend=backend,
                                          notice=notices.append)}
    for name, layers in where.items():
        gens[name] = SteeredGenerator(lm, layers=layers, compile=True, backend=backend,
                                      notice=notices.append)
    calls: dict[str, Callable[[], Any]] = {"unsteered": lambda: gens["unsteered"].generate_ids(
        prompts, new, batch_size=batch)}
    for name, layers in where.items():
        for k in ks:
            spec = Steer(rows[k][0], layers, "add", rows[k][1])
            calls[f"{name}_k{k}"] = lambda g=gens[name], spec=spec: g.generate_ids(
                prompts, new, steer=spec, batch_size=batch)
    try:
        for name in ("unsteered", *where):  # the first call of each generator compiles
            first = next(key for key in calls if key.startswith(name))
            out["first_call_s"][name] = round(timed(calls[first], device)[0], 2)
        laps: dict[str, list[float]] = {key: [] for key in calls}
        outputs: dict[str, Any] = {}
        for order in (list(calls), list(reversed(calls))):
            for key in order:
                lap, outputs[key] = timed(calls[key], device)
                laps[key].append(lap)
        compiled = all(g.compiled for g in gens.values())
        # prefill alone (one new token, no decoding step), for the decode step's time
        with SteeredGenerator(lm, layers=(), compile=False) as once:
            once.generate_ids(prompts, 1, batch_size=batch)
            prefill = min(timed(lambda: once.generate_ids(prompts, 1, batch_size=batch), device)[0]
                          for _ in range(2))
        # one vector at one layer: the tokens eager HF generate with the hooks is compared with
        spec = Steer(random_vector(lm, 1), (mid,), "add", 8.0)
        mine = torch.tensor(gens["one_layer"].generate_ids(prompts, new, steer=spec, batch_size=batch))
        plain = torch.tensor(outputs["unsteered"])
    finally:
        for g in gens.values():
            g.close()
    med = {key: statistics.median(v) for key, v in laps.items()}
    base = med["unsteered"]
    out["tok_s"] = {key: round(tokens / t, 1) for key, t in med.items()}
    out["vs_unsteered"] = {key: round(base / t, 3) for key, t in med.items() if key != "unsteered"}
    out["compiled"], out["notice"] = compiled, notices[0] if notices else None
    out["steering_changes_output"] = bool(outputs["one_layer_k1"] != outputs["unsteered"])
    out["distinct_rows_differ"] = bool(len({tuple(r) for r in outputs[f"all_layers_k{ks[-1]}"]}) > 1)

    # the decode step against the card's limit
    cache_len = -(-(cfg["prompt"] + new) // 64) * 64  # SteeredGenerator's static cache length
    need = decode_bytes(lm, batch, cache_len, next(lm.model.parameters()).dtype)
    copy = copy_bandwidth(device, cfg["copy_gib"])
    step = {key: max(t - prefill, 1e-9) / max(new - 1, 1) for key, t in med.items()}
    per_step = need["weights"] + need["kv_cache"]
    out["headroom"] = {
        "bytes_per_step": need, "cache_len": cache_len, "prefill_s": round(prefill, 4),
        "copy_bandwidth_gb_s": round(copy / 1e9, 1),
        "decode_step_ms": {key: round(v * 1e3, 3) for key, v in step.items()},
        "achieved_gb_s": {key: round(per_step / v / 1e9, 1) for key, v in step.items()},
        "fraction_of_copy_bandwidth": {key: round(per_step / v / copy, 3) for key, v in step.items()},
    }

    # eager HF generate with the hooks, beside it (one layer, one vector: the agreement check)
    enc = {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device)}

    def eager(with_steer: bool) -> Any:
        def go() -> Any:
            with torch.inference_mode():
                return lm.model.generate(**enc, max_new_tokens=new, min_new_tokens=new,  # type: ignore[operator]
                                         do_sample=False, pad_token_id=0)[:, ids.shape[1]:]
        if not with_steer:
            return timed(go, device)
        with steering(lm, spec):
            return timed(go, device)

    eager(True)  # warm-up
    t_eager_steered, ref = eager(True)
    t_eager_plain, ref_plain = eager(False)
    ref = ref.cpu()
    diverge = (mine != ref).int().cumsum(1) == 0  # positions before the first difference
    out.update({
        "eager_steered_tok_s": round(tokens / t_eager_steered, 1),
        "eager_unsteered_tok_s": round(tokens / t_eager_plain, 1),
        "agree_rows_identical": round(float((mine == ref).all(1).float().mean()), 4),
        "agree_tokens": round(float((mine == ref).float().mean()), 4),
        "agree_prefix_tokens": round(float(diverge.float().mean()), 4),
        "noise_floor_unsteered_agree_tokens": round(float((plain == ref_plain.cpu()).float().mean()), 4),
    })
    return out


# ---- 3. the sweep engines ------------------------------------------------------------------
def sweep(lm: LoadedModel, cfg: dict[str, Any]) -> dict[str, Any]:
    from linsteer.score.mc import score_mc
    from linsteer.score.replay import Replayer
    from linsteer.steer.setting import Setting
    from linsteer.sweep.tasks import TaskSpec

    device = lm.device
    items = TaskSpec("arith_mc", "reasoning").items("test")[: cfg["items"]]
    vec = random_vector(lm, 2)
    layers = (lm.n_layers // 3, lm.n_layers // 2)
    settings = [Setting(vec, layer, "add", s) for layer in layers
                for s in (0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 7.0, 10.0)]
    runs = {"engine": Replayer(lm), "replay": Replayer(lm, engine="replay"),
            "one_by_one": Replayer(lm, engine="full")}
    for rep in runs.values():  # warm-up: every engine on its own replayer (all items on a GPU)
        score_mc(lm, items[: cfg["warm_items"]], settings, replayer=rep)
    laps: dict[str, list[float]] = {name: [] for name in runs}
    scores: dict[str, Any] = {}
    for name in [*runs, *reversed(runs)]:
        rep = runs[name]
        lap, (_, scores[name], _) = timed(lambda rep=rep: score_mc(lm, items, settings, replayer=rep),
                                          device)
        laps[name].append(lap)
    times = {name: statistics.median(v) for name, v in laps.items()}
    ref = scores["one_by_one"]

    def diff(name: str) -> float:
        return max(abs(a - b) for pa, pb in zip(scores[name], ref, strict=True)
                   for x, y in zip(pa, pb, strict=True)
                   for a, b in zip(x.sum_logprobs, y.sum_logprobs, strict=True))

    return {"shape": cfg["gen_shape"], "items": len(items), "configurations": len(settings),
            "engine_chosen": runs["engine"].chosen_engine(),
            "seconds": {k: round(v, 3) for k, v in times.items()},
            "engine_vs_one_by_one": round(times["one_by_one"] / times["engine"], 2),
            "replay_vs_one_by_one": round(times["one_by_one"] / times["replay"], 2),
            "max_abs_diff_engine": diff("engine"), "max_abs_diff_replay": diff("replay")}


# ---- 4. reading at the body's speed --------------------------------------------------------
def reading(lm: LoadedModel, cfg: dict[str, Any]) -> dict[str, Any]:
    from linsteer.extract.read import batches_by_length, left_pad, read_activations, tokenize

    device = lm.device
    texts = exact_length_texts(lm.tokenizer, cfg["read_n"], cfg["read_len"])
    t_tok, ids = timed(lambda: tokenize(lm, texts), device)
    groups = batches_by_length([len(t) for t in ids], cfg["read_batch"], exact=False)
    batches = [left_pad([ids[i] for i in rows], 0) for rows in groups]
    body = lm.model.model  # type: ignore[union-attr]

    def read() -> Any:
        return read_activations(lm, texts, batch_size=cfg["read_batch"], progress=False, token_ids=ids)

    def bare() -> None:
        with torch.inference_mode():
            for b in batches:
                body(input_ids=b.input_ids.to(device), use_cache=False)

    def naive() -> None:
        with torch.inference_mode():
            for b in batches:
                hs = lm.model(**b.model_kwargs(lm), output_hidden_states=True, use_cache=False).hidden_states
                torch.stack([h[:, -1].float() for h in hs[1:]], dim=1).cpu()

    fns = {"read": read, "bare_body": bare, "naive_hidden_states": naive}
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in fns}
    for name in [*fns, *reversed(fns)]:
        times[name].append(timed(fns[name], device)[0])
    med = {k: statistics.median(v) for k, v in times.items()}
    tokens = cfg["read_n"] * cfg["read_len"]
    return {"shape": cfg["read_shape"], "prompts": cfg["read_n"], "tokens_each": cfg["read_len"],
            "layers": lm.n_layers, "seconds": {k: round(v, 3) for k, v in med.items()},
            "tokenize_s": round(t_tok, 3), "read_tok_s": round(tokens / med["read"], 1),
            "read_vs_bare_body": round(med["bare_body"] / med["read"], 3),
            "read_vs_naive": round(med["naive_hidden_states"] / med["read"], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="tiny shapes: checks the script on a CPU")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--only", default="reading,compiled,table,sweep")
    args = parser.parse_args()
    cfg = TINY if args.tiny else FULL
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    parts = set(args.only.split(","))
    t0 = time.perf_counter()
    import transformers

    result: dict[str, Any] = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
                              "dtype": str(dtype).replace("torch.", ""), "torch": torch.__version__,
                              "transformers": transformers.__version__, "tiny": args.tiny}
    texts = bundled_texts()
    holder: dict[str, LoadedModel] = {}

    def model(shape_key: str) -> LoadedModel:
        shape = cfg[shape_key]
        if shape not in holder:
            holder.clear()  # one model on the device at a time
            gc.collect()
            if device == "cuda":
                torch.cuda.empty_cache()
            tok = train_tokenizer(texts, int(SHAPES[shape]["vocab_size"]))
            holder[shape] = build(shape, tok, device, dtype)
        return holder[shape]

    # the headline figures first, so that a timeout loses the least
    steps: list[tuple[str, str, Callable[[], dict[str, Any]]]] = [
        ("reading", "reading", lambda: reading(model("read_shape"), cfg)),
        ("compiled", "compiled", lambda: compiled_generation(model("gen_shape"), cfg, args.tiny)),
        ("generation_table", "table", lambda: generation_table(model("gen_shape"), cfg)),
        ("sweep", "sweep", lambda: sweep(model("gen_shape"), cfg)),
    ]
    for key, part, fn in steps:
        if part not in parts:
            continue
        start = time.perf_counter()
        try:
            result[key] = fn()
        except Exception as exc:  # one failing part must not lose the others
            result[key] = {"error": f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:300]}"}
        result[key]["wall_s"] = round(time.perf_counter() - start, 1)
        print(f"# {key} done at {time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)
        if args.out:  # what is done survives a timeout
            args.out.write_text(json.dumps(result, indent=1))
    result["total_s"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
