"""The report's view of the alternatives to steering (``alternatives.json`` of
:mod:`linsteer.run.alternatives`): the side-by-side table under the headline, the table rows,
``results.json["baselines"]`` and the figure of accuracy against measured cost."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from linsteer.report.figbase import PALETTE
from linsteer.results.agreement import stability_word
from linsteer.results.selection import signed_points

BASELINE_KEYS = ("task", "split", "method", "accuracy", "ci_lo", "ci_hi", "n", "delta_vs_base",
                 "delta_lo", "delta_hi", "p_vs_base", "delta_vs_steered", "p_vs_steered", "seconds",
                 "tokens", "flops")
_REFERENCE = ("base", "steered")  # rows of the table that are not alternatives


def baselines_json(data: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """``results.json["baselines"]``: one object per (task, split, method) of the alternatives,
    the interface's keys first, then the rest (gold probability, evaluation tokens, ...)."""
    if not data:
        return []
    out = []
    for row in data["rows"]:
        if row["method"] in _REFERENCE:
            continue
        out.append({**{k: row.get(k) for k in BASELINE_KEYS},
                    **{k: v for k, v in row.items() if k not in BASELINE_KEYS}})
    return out


def _label(method: str) -> str:
    return {"base": "unsteered base", "steered": "steered (dev-selected)"}.get(method, method)


def _pct(x: Any) -> str:
    return "—" if x is None or not math.isfinite(float(x)) else f"{100 * float(x):.1f}"


def _delta(row: Mapping[str, Any], key: str, lo: str | None, hi: str | None, p: str) -> str:
    if row.get(key) is None:
        return "—"
    text = signed_points(float(row[key]))
    if lo and hi and row.get(lo) is not None and row.get(hi) is not None:
        text += f" [{signed_points(float(row[lo]))}, {signed_points(float(row[hi]))}]"
    if row.get(p) is not None:
        text += f", p = {float(row[p]):.2g}"
    return text


def _cost_text(row: Mapping[str, Any]) -> str:
    bits = []
    if row.get("seconds"):
        bits.append(f"{float(row['seconds']):.1f} s")
    if row.get("tokens"):
        bits.append(f"{int(row['tokens']):,} tokens")
    if row.get("flops"):
        bits.append(f"{float(row['flops']):.2g} FLOPs")
    return ", ".join(bits) or "none"


def cost_rows(data: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The alternatives' rows of the seed's cost-benefit table (method, time, tokens, FLOPs,
    accuracy): what obtaining each took here (prompting: nothing; LoRA: its training) and its test
    accuracy on the same items as the steered row above them."""
    if not data:
        return []
    return [{"method": r["method"] + (" (LoRA SFT: post-training at matched data)" if r["method"] == "lora"
                                      else ""),
             "time_s": round(float(r["seconds"]), 2) if r.get("seconds") is not None else None,
             "tokens": r.get("tokens"), "flops": r.get("flops"), "accuracy": r["accuracy"]}
            for r in data["rows"] if r["method"] not in _REFERENCE]


def table_rows(data: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The rows of the report's table "Steering vs the alternatives" (also a CSV)."""
    if not data:
        return []
    return [{"method": _label(r["method"]), "n": r["n"], "accuracy": r["accuracy"], "ci_lo": r["ci_lo"],
             "ci_hi": r["ci_hi"], "delta_vs_base": r["delta_vs_base"], "delta_lo": r["delta_lo"],
             "delta_hi": r["delta_hi"], "p_vs_base": r["p_vs_base"], "n_fixed": r.get("n_fixed"),
             "n_broken": r.get("n_broken"),
             "delta_vs_steered": r["delta_vs_steered"], "p_vs_steered": r["p_vs_steered"],
             "gold_prob": r.get("gold_prob"), "gold_prob_delta": r.get("gold_prob_delta"),
             "setup_seconds": r["seconds"], "setup_tokens": r["tokens"], "setup_flops": r["flops"],
             "eval_tokens_per_item": r.get("eval_tokens_per_item"), "total_flops": r.get("total_flops"),
             **({"mean_tokens": r.get("mean_tokens"), "unreadable": r.get("unreadable")}
                if _generated(data) else {})}
            for r in data["rows"]]


def _generated(data: Mapping[str, Any]) -> bool:
    """Whether the alternatives were generated answers (their rows have ``mean_tokens``)."""
    return any(r.get("mean_tokens") is not None for r in data.get("rows", []))


def summary_html(data: Mapping[str, Any] | None) -> str:
    """The side-by-side table under the headline: base, steered, each prompt, prompt + steering,
    LoRA, on the same test items."""
    if not data or not data.get("rows"):
        return ""
    generated = _generated(data)
    cols = ["method", "accuracy % [95% CI]", "Δ vs base, points [95% CI]",
            "vs base: fixed / broken", "Δ vs steered, points",
            "cost to obtain", "tokens per test query",
            *(["generated tokens per answer", "unreadable answers"] if generated else [])]
    title = f"Steering vs the alternatives (same test items, same scorer, paired): {data['task']}"
    out = [f'<section id="alternatives"><h3>{html.escape(title)}</h3><table class="headline"><thead><tr>',
           *(f"<th>{html.escape(c)}</th>" for c in cols), "</tr></thead><tbody>"]
    for r in data["rows"]:
        stability = stability_word(data.get("best_prompt_agreement"))
        best = (f" (best prompt on dev{', bootstrap ' + stability if stability else ''})"
                if r["method"] == data.get("best_prompt") else "")
        moved = ("—" if r["method"] == "base" or r.get("n_fixed") is None
                 else f"{r['n_fixed']} / {r['n_broken']}")
        vs_base = "—" if r["method"] == "base" else _delta(r, "delta_vs_base", "delta_lo", "delta_hi",
                                                            "p_vs_base")
        vs_steer = "—" if r["method"] in _REFERENCE else _delta(r, "delta_vs_steered", None, None,
                                                                 "p_vs_steered")
        per_query = r.get("eval_tokens_per_item")
        cells = [(_label(r["method"]) + best, "t"),
                 (f"{_pct(r['accuracy'])} [{_pct(r['ci_lo'])}, {_pct(r['ci_hi'])}]", ""),
                 (vs_base, ""), (moved, ""), (vs_steer, ""), (_cost_text(r), "t"),
                 ("—" if per_query is None else f"{float(per_query):.0f}", "")]
        if generated:
            cells += [("—" if r.get("mean_tokens") is None else f"{float(r['mean_tokens']):.0f}", ""),
                      ("—" if r.get("unreadable") is None else f"{100 * float(r['unreadable']):.0f}%", "")]
        out.append("<tr>" + "".join(f'<td class="{c}">{html.escape(str(v))}</td>' for v, c in cells)
                   + "</tr>")
    out.append("</tbody></table>")
    lora = data.get("lora")
    note = ("Δ vs base: Newcombe interval, exact McNemar p; fixed / broken: the test items wrong → "
            "right and right → wrong against the base (Δ = (fixed − broken) / n); bootstrap "
            "agreement: the share of 1,000 resamples of the dev items that make the same choice "
            "(below 80%: not stable); Δ vs steered: the same test against the "
            "dev-selected steered model. Cost to obtain: steering: extracting the direction (the "
            "dev selection sweep is in the cost table); LoRA: training; prompting: none.")
    notes = {r["method"]: r["note"] for r in data["rows"] if r.get("note")}
    note += "".join(f" {m}: {n}." for m, n in notes.items())
    if generated:
        note += (" Answers generated (chain of thought) and read by the format's rule: an unreadable "
                 "answer is wrong.")
    if lora:
        note += (f" LoRA: rank {lora['rank']}, {lora['steps']} steps of {lora['batch_size']} on "
                 f"{lora['examples']} train examples")
        if lora.get("dev_accuracy"):
            tried = ", ".join(f"{lr}: {100 * acc:.1f}%" for lr, acc in lora["dev_accuracy"].items())
            lr_stability = stability_word(lora.get("lr_agreement"))
            note += (f", learning rate {lora['lr']:g} chosen on dev accuracy (tried {tried}; "
                     f"{lora['search_seconds']:.1f} s of training in all"
                     f"{'; bootstrap ' + lr_stability if lr_stability else ''})")
        note += (f", loss {lora['losses'][0]:.3f} → {lora['losses'][-1]:.3f}, peak process memory "
                 f"{lora['peak_rss_mb']:.0f} MB.")
    out.append(f'<p class="note">{html.escape(note)}</p></section>')
    return "".join(out)


def cost_figure(data: Mapping[str, Any]) -> Figure:
    """Test accuracy (95% Wilson interval) of every method against its measured compute:
    the FLOPs to obtain it plus the FLOPs to answer the test items (log scale)."""
    rows: Sequence[Mapping[str, Any]] = data["rows"]
    fig = Figure(figsize=(8.4, 3.8))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for i, r in enumerate(rows):
        x = float(r.get("total_flops") or 0.0)
        if x <= 0:
            continue
        acc, lo, hi = 100 * r["accuracy"], 100 * r["ci_lo"], 100 * r["ci_hi"]
        colours = [c for c in PALETTE if c != "#F0E442"]  # no yellow on white
        colour = colours[i % len(colours)]
        marker = "s" if r["method"] in _REFERENCE else ("^" if r["method"].startswith("steer+") else "o")
        ax.errorbar([x], [acc], yerr=[[acc - lo], [hi - acc]], fmt=marker, color=colour, capsize=3,
                    label=_label(r["method"]))
    base = next((r for r in rows if r["method"] == "base"), None)
    if base is not None:
        ax.axhline(100 * base["accuracy"], color="grey", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_xlabel("measured compute: FLOPs to obtain the method + to answer the test items")
    ax.set_ylabel("test accuracy, % (95% CI)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    ax.set_title(f"{data['task']}: accuracy vs measured cost (dashed: unsteered base)", fontsize=9)
    fig.tight_layout()
    return fig
