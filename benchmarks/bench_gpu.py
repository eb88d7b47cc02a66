"""linsteer on a GPU, in one run: steering overhead, compiled steered generation, the sweep
engines and reading, on random-init models of real shapes (no downloads), printed as ONE JSON.

1. ``generation_table`` (Qwen2.5-1.5B shape, eager HF ``generate``, 128 prompt + 128 new
   tokens): unsteered tok/s at batch 1/16/128, and steered/unsteered throughput ratios for one
   middle layer, all layers, per-row strengths and ``positions="generated"``: after a warm-up
   of every variant, the median of ``pairs`` alternating (plain, steered) pair ratios, the order
   flipped every other pair. ``hook_ops``: aten ops per steering hook call (prefill, decode) and
   any host-sync op inside the hooks, counted with :mod:`linsteer.steer.hookcost` (device-independent).
2. ``compiled``: :class:`linsteer.generate.static.SteeredGenerator` at batch 256 (128 + 128): tok/s
   steered and unsteered, eager HF ``generate`` (with the hooks) beside it, token agreement of
   compiled vs eager steered, and whether steering changed the compiled output.
3. ``sweep``: ``score_mc`` of 16 configurations (2 layers x 8 strengths) on 128 arith_mc items
   (Qwen shape): the auto engine, the replay and one after another, same prefix-tree rows; each
   warmed up on its own replayer first, then timed alternately, median of 2.
4. ``reading``: ``read_activations`` (Llama-3.2-1B shape, 512 prompts x 512 tokens, all layers)
   vs the bare decoder body and a naive ``output_hidden_states=True`` forward.

Usage: python benchmarks/bench_gpu.py [--tiny] [--out FILE] [--only table,compiled,sweep,reading]
``--tiny`` runs the same code on tiny shapes (on a CPU in under a minute), same JSON keys.
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
        "prompt": 128, "new": 32, "pairs": 4, "compiled_new": 128, "compiled_batch": 256, "items": 128,
        "warm_items": 128, "read_n": 512, "read_len": 512, "read_batch": 32}
TINY = {"gen_shape": "tiny-qwen", "read_shape": "tiny-llama", "batches": (1, 2, 4),
        "prompt": 8, "new": 4, "pairs": 2, "compiled_new": 4, "compiled_batch": 4, "items": 3,
        "warm_items": 1, "read_n": 8, "read_len": 16, "read_batch": 4}


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
                           "positions_generated": {}, "hook_ops": hook_ops(lm, vec)}
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
def compiled_generation(lm: LoadedModel, cfg: dict[str, Any], tiny: bool) -> dict[str, Any]:
    from linsteer.generate.static import SteeredGenerator

    device, vocab = lm.device, len(lm.tokenizer)  # type: ignore[arg-type]
    batch, new, mid = cfg["compiled_batch"], cfg["compiled_new"], lm.n_layers // 2
    gen = torch.Generator().manual_seed(7)
    ids = torch.randint(4, vocab, (batch, cfg["prompt"]), generator=gen)
    prompts = [list(map(int, row)) for row in ids]
    vec = random_vector(lm, 1)
    spec = Steer(vec, (mid,), "add", 8.0)
    notices: list[str] = []
    backend = "eager" if tiny and device.type == "cpu" else None
    tokens = batch * new
    with SteeredGenerator(lm, compile=True, backend=backend, notice=notices.append) as fast:
        t_compile, _ = timed(lambda: fast.generate_ids(prompts, new, steer=spec, batch_size=batch), device)
        steered_t, plain_t = [], []
        for _ in range(2):
            t, steered = timed(lambda: fast.generate_ids(prompts, new, steer=spec, batch_size=batch), device)
            steered_t.append(t)
            t, plain = timed(lambda: fast.generate_ids(prompts, new, batch_size=batch), device)
            plain_t.append(t)
        compiled = fast.compiled
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
    floor = (torch.tensor(plain) == ref_plain.cpu()).float().mean()
    mine = torch.tensor(steered)
    ref = ref.cpu()
    same_pos = (mine == ref).float()
    diverge = (mine != ref).int().cumsum(1) == 0  # positions before the first difference
    return {
        "shape": cfg["gen_shape"], "batch": batch, "prompt_tokens": cfg["prompt"], "new_tokens": new,
        "compiled": compiled, "notice": notices[0] if notices else None,
        "first_call_s": round(t_compile, 2),
        "steered_tok_s": round(tokens / statistics.median(steered_t), 1),
        "unsteered_tok_s": round(tokens / statistics.median(plain_t), 1),
        "eager_steered_tok_s": round(tokens / t_eager_steered, 1),
        "eager_unsteered_tok_s": round(tokens / t_eager_plain, 1),
        "agree_rows_identical": round(float((mine == ref).all(1).float().mean()), 4),
        "agree_tokens": round(float(same_pos.mean()), 4),
        "agree_prefix_tokens": round(float(diverge.float().mean()), 4),
        "noise_floor_unsteered_agree_tokens": round(float(floor), 4),
        "steering_changes_output": bool((mine != torch.tensor(plain)).any()),
    }


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
    parser.add_argument("--only", default="table,compiled,sweep,reading")
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

    # cheapest first, so that a timeout loses the least
    steps: list[tuple[str, str, Callable[[], dict[str, Any]]]] = [
        ("reading", "reading", lambda: reading(model("read_shape"), cfg)),
        ("sweep", "sweep", lambda: sweep(model("gen_shape"), cfg)),
        ("generation_table", "table", lambda: generation_table(model("gen_shape"), cfg)),
        ("compiled", "compiled", lambda: compiled_generation(model("gen_shape"), cfg, args.tiny)),
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
