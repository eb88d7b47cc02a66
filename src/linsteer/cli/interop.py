"""The ``export`` and ``import`` commands and ``sweep --ray``: linsteer vectors in other tools, and
sweeps on a Ray cluster. Registered by :func:`linsteer.cli.main.build_parser`.

As in :mod:`linsteer.cli.main`, each command imports what it runs when it runs (ray is optional).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from linsteer.errors import LinsteerError

TARGETS = ("llama.cpp", "lm-eval")

Handler = Callable[[argparse.Namespace], int]


def cmd_export(args: argparse.Namespace) -> int:
    from linsteer.extract.vector import SteeringVector
    from linsteer.interop.llamacpp import export_llamacpp
    from linsteer.interop.lmeval import export_lmeval
    from linsteer.model.layers import parse_layers

    vector = SteeringVector.load(args.vector)
    layers = parse_layers(args.layers)
    if args.to == "llama.cpp":
        if layers is None and 0 in vector.layers:
            layers = [layer for layer in vector.layers if layer > 0]  # llama.cpp cannot steer layer 0
        out = export_llamacpp(vector, args.out, strength=args.strength, layers=layers, unit=args.unit)
        how = (f"llama-cli -m MODEL.gguf --control-vector {out}" if args.strength is not None else
               f"llama-cli -m MODEL.gguf --control-vector-scaled {out} STRENGTH")
    else:
        hookpoints = None
        if args.model:
            from linsteer.interop.lmeval import hookpoint_names
            from linsteer.model.load import load_model

            lm = load_model(args.model, dtype="fp32", device="cpu")
            hookpoints = hookpoint_names(lm.model, lm.blocks.modules)
        if layers is None:
            raise LinsteerError("lm-eval steer files add at every listed layer; choose them with --layers L")
        out = export_lmeval(vector, args.out, strength=1.0 if args.strength is None else args.strength,
                            layers=layers, unit=args.unit, hookpoints=hookpoints)
        how = f"lm_eval --model steered --model_args pretrained=MODEL,steer_path={out} --tasks ..."
    print(f"wrote {out}\napply with: {how}")
    return 0


def _model_shape(spec: str) -> tuple[int, int, str]:
    """(hidden size, layer count, name) of a model from its config alone (no weights loaded)."""
    from transformers import AutoConfig

    from linsteer.model.load import cache_dir, resolve_source

    source, _ = resolve_source(spec, cache_dir())
    try:
        config: Any = AutoConfig.from_pretrained(source)
    except OSError as exc:
        raise LinsteerError(f"cannot read the config of model {spec!r}: {str(exc).splitlines()[0]}") from exc
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    hidden = next((getattr(text, a) for a in ("hidden_size", "n_embd", "d_model") if hasattr(text, a)), None)
    layers = next((getattr(text, a) for a in ("num_hidden_layers", "n_layer") if hasattr(text, a)), None)
    if not isinstance(hidden, int) or not isinstance(layers, int):
        raise LinsteerError(f"cannot tell the hidden size and layer count of {spec!r}")
    return hidden, layers, spec


def cmd_import(args: argparse.Namespace) -> int:
    from linsteer.interop.llamacpp import import_llamacpp

    hidden, n_layers, name = _model_shape(args.model)
    vector = import_llamacpp(args.file, hidden_size=hidden, n_layers=n_layers, model_name=name)
    vector.meta.setdefault("model", name)
    vector.save(args.out)
    print(f"wrote {args.out}: layers {vector.layers}, hidden size {vector.hidden_size}")
    return 0


def cmd_sweep_ray(args: argparse.Namespace) -> int:
    """``linsteer sweep RUN_DIR --ray [ADDRESS]``: the run's sweep on Ray workers."""
    from linsteer.run.ray import stage_sweep_ray

    def say(message: str) -> None:
        if not args.quiet:
            print(message, file=sys.stderr, flush=True)

    address = None if args.ray == "local" else args.ray
    stage_sweep_ray(Path(args.run_dir), say, address=address, workers=args.workers,
                    progress=not args.quiet)
    print(Path(args.run_dir) / "tables")
    return 0


def add_ray_options(sweep: argparse.ArgumentParser, single: Handler) -> None:
    """Add ``--ray`` and ``--workers`` to the ``sweep`` command; without ``--ray`` it runs
    ``single`` (the single-process stage)."""

    def cmd_sweep(args: argparse.Namespace) -> int:
        return single(args) if args.ray is None else cmd_sweep_ray(args)

    sweep.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                       help="shard the task splits across Ray workers (one model load each); alone: a "
                            "local cluster; ADDRESS: 'auto', HOST:6379 or ray://HOST:10001")
    sweep.add_argument("--workers", type=int, default=None,
                       help="Ray workers (default: one per GPU of the cluster, else one per CPU)")
    sweep.set_defaults(handler=cmd_sweep)


def register(sub: Any) -> None:
    """Add ``export`` and ``import`` to the CLI's subcommands."""
    exp = sub.add_parser(
        "export", help="write a vector as a llama.cpp control vector or an lm-eval steer file",
        description="llama.cpp: GGUF control vector (direction.L = linsteer layer L, L >= 1). "
                    "lm-eval: the .pt file of lm_eval --model steered (steer_path).")
    exp.add_argument("vector", help="vector file or folder (from extract or a run directory)")
    exp.add_argument("--to", required=True, choices=TARGETS, help="target tool")
    exp.add_argument("--out", required=True, help="output file (.gguf for llama.cpp, .pt for lm-eval)")
    exp.add_argument("--strength", type=float, default=None,
                     help="bake in this strength (the vector linsteer's add adds); llama.cpp without it: "
                          "the raw directions, scaled at load time")
    exp.add_argument("--unit", default="raw", choices=["raw", "norm"],
                     help="strength unit: raw, or norm (multiples of the layer's typical residual norm)")
    exp.add_argument("--layers", default=None, help="layers to export, e.g. '4-10' or '6' (default: all)")
    exp.add_argument("--model", default=None,
                     help="lm-eval only: model whose module paths name the hookpoints (default layers.L)")
    exp.set_defaults(handler=cmd_export)

    imp = sub.add_parser("import", help="read a llama.cpp control vector (GGUF) as a linsteer vector",
                         description="Checks the file's hidden size and layers against --model.")
    imp.add_argument("file", help="control vector .gguf (from linsteer, repeng or cvector-generator)")
    imp.add_argument("--model", required=True, help="the model the vector belongs to")
    imp.add_argument("--out", required=True, help="output vector file (.safetensors) or folder")
    imp.set_defaults(handler=cmd_import)
