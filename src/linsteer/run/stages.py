"""The whole seed pipeline in one call, each stage a function over one run directory.

contrast set → activations → directions → PCA / separability / cosine → sweep with controls on a
reasoning and a memorization task → report. Every stage has one signature, ``stage(run) -> None``
(:data:`Stage`): it reads what earlier stages left on the :class:`Run` (or in its directory) and
writes its outputs into the run directory (``acts.safetensors``, ``vector.safetensors``,
``confounds.json``, ``results.sqlite``, ``figures/``, ``report.html``, ``results.json``, CSV
tables), so a stage can be re-run alone and a killed run resumes where it stopped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from linsteer.diagnostics.confounds import read_confounds, run_confounds
from linsteer.errors import LinsteerError
from linsteer.extract.actset import ActivationSet
from linsteer.extract.contrast import vector_from_contrast
from linsteer.extract.controls import Control, build_controls
from linsteer.extract.methods import extract
from linsteer.extract.vector import SteeringVector
from linsteer.io import atomic_write, write_json
from linsteer.model.cpudtype import machine_text
from linsteer.model.load import LoadedModel, load_model
from linsteer.prompts.spec import contrast_from_spec
from linsteer.report.alternatives import baselines_json, cost_figure, cost_rows, summary_html, table_rows
from linsteer.report.content import (
    analysis_figures,
    confound_html,
    cost_table,
    cot_length_figures,
    steering_figures,
)
from linsteer.report.html import write_report
from linsteer.report.scan_figures import scan_caption, scan_figure
from linsteer.results.selection import headline_from_rows
from linsteer.results.table import CellRow, Row, split_items, summarize
from linsteer.run.alternatives import read_alternatives, stage_alternatives
from linsteer.run.config import RunConfig, sweep_spec
from linsteer.run.estimate import estimate_run
from linsteer.run.lock import run_lock
from linsteer.run.rundir import config_text, differing_keys
from linsteer.run.validate import model_n_layers, validate_config
from linsteer.steer.setting import SettingKey, strengths_label
from linsteer.sweep.layerscan import read_scan, scan_task, stage_scan
from linsteer.sweep.run import SweepSpec, flops_per_token, run_sweep
from linsteer.sweep.store import ResultStore, store_path
from linsteer.sweep.tasks import task_role
from linsteer.version import __version__

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@dataclass
class Run:
    """A run directory and the state the stages pass on (each stage fills its own fields)."""

    dir: Path
    config: RunConfig
    say: Say = _quiet
    progress: bool = True
    lm: LoadedModel | None = None
    acts: ActivationSet | None = None
    vector: SteeringVector | None = None
    rows: list[CellRow] | None = None
    report: Path | None = None
    estimate: bool = False  # say the run's expected time when the model loads (run_all's runs)

    def extracted(self) -> tuple[ActivationSet, SteeringVector]:
        """The activations and vector of :func:`stage_extract` (run first when missing)."""
        if self.acts is None or self.vector is None:
            stage_extract(self)
        assert self.acts is not None and self.vector is not None
        return self.acts, self.vector

    def save_config(self) -> None:
        path = self.dir / "config.yaml"
        text = config_text(self.config)
        if path.exists() and path.read_text() == text:
            return
        if path.exists():
            raise LinsteerError(
                f"{self.dir} holds a run with other settings (differs in: "
                f"{', '.join(differing_keys(self.dir, self.config))}); use a fresh run directory")
        atomic_write(path, text)

    def settings(self, fingerprint: str) -> dict[str, Any]:
        return {"config": asdict(self.config), "fingerprint": fingerprint}

    def check_store(self, fingerprint: str) -> None:
        """Refuse (before anything is recorded) to continue a run made with other settings."""
        path = store_path(self.dir)
        if not path.exists():
            return
        with ResultStore(path) as store:
            stored = store.get_meta("settings")
        if stored is None:
            return
        old = json.loads(stored)
        mine = json.loads(json.dumps(self.settings(fingerprint), sort_keys=True, default=str))
        if old == mine:
            return
        if old.get("config") == mine["config"]:
            raise LinsteerError(
                f"the weights of {self.config.model} changed since {self.dir} was made (fingerprint "
                f"{fingerprint}, the run has {old.get('fingerprint')}); use the original model or "
                "a fresh run directory")
        changed = sorted(k for k in set(old.get("config", {})) | set(mine["config"])
                         if old.get("config", {}).get(k) != mine["config"].get(k))
        raise LinsteerError(
            f"{self.dir} holds results made with other settings (differs in: {', '.join(changed)}); "
            "use a fresh run directory (or the same settings to resume)")

    def model(self) -> LoadedModel:
        """The run's model, loaded on first use (see :func:`load`)."""
        return load(self)

    def phase(self, name: str, seconds: float, tokens: int, flops: float) -> None:
        with ResultStore(store_path(self.dir)) as store:
            store.record_phase(name, seconds, tokens, flops)


def load(run: Run) -> LoadedModel:
    say = run.say
    if run.lm is None:
        start = time.perf_counter()
        say(f"loading {run.config.model} ...")
        lm = load_model(run.config.model, dtype=run.config.dtype, device=run.config.device)
        run.check_store(lm.fingerprint)  # a refusal must come before anything is recorded
        run.lm = lm
        run.phase("load", time.perf_counter() - start, 0, 0.0)
        say(f"loaded {run.lm.name}: {run.lm.n_layers} layers, hidden size {run.lm.hidden_size}, "
            f"{str(run.lm.dtype).replace('torch.', '')}, fingerprint {run.lm.fingerprint}")
        if run.estimate and lm.device.type == "cpu":
            with suppress(LinsteerError):  # a task file is refused by its own stage, in its own words
                say(estimate_run(run.config, lm).line())
    return run.lm


def stage_extract(run: Run) -> None:
    """Contrast set → activations at every layer → the direction (``acts``/``vector`` files)."""
    cfg, say = run.config, run.say
    acts_file, vec_file = run.dir / "acts.safetensors", run.dir / "vector.safetensors"
    if acts_file.exists() and vec_file.exists():
        say("extract: reusing acts.safetensors and vector.safetensors")
        run.acts, run.vector = ActivationSet.load(acts_file), SteeringVector.load(vec_file)
        return
    lm = load(run)
    contrast = contrast_from_spec(cfg.contrast, cfg.n_per_class, cfg.seed)
    start = time.perf_counter()
    acts, vector = vector_from_contrast(
        lm, contrast, contrast_name=cfg.contrast, prompt_format=cfg.prompt_format,
        position=cfg.position_value(), batch_size=cfg.batch_size, method=cfg.method,
        seed=cfg.seed, progress=run.progress)
    seconds = time.perf_counter() - start
    tokens = sum(acts.n_tokens)
    run.phase("extraction", seconds, tokens, flops_per_token(lm) * tokens)
    acts.save(acts_file)
    vector.save(vec_file)
    say(f"extract: {len(contrast.items)} prompts ({tokens} tokens) read at {lm.n_layers} layers "
        f"in {seconds:.1f}s -> {vec_file.name}")
    run.acts, run.vector = acts, vector


def stage_confounds(run: Run) -> None:
    """Surface-form baselines beside the residual stream's separability (``confounds.json``)."""
    cfg = run.config
    acts, _ = run.extracted()
    run_confounds(run.dir, acts, contrast=cfg.contrast, n_per_class=cfg.n_per_class, seed=cfg.seed,
                  prompt_format=cfg.prompt_format, position=cfg.position_value(),
                  get_lm=lambda: load(run), say=run.say)


def sweep_controls(config: RunConfig, acts: ActivationSet, vector: SteeringVector) -> list[Control]:
    """The controls a run's sweep steers with: the real direction and its controls, plus the real
    direction of every extra vector source."""
    positive, negative = vector.meta.get("positive", "reasoning"), vector.meta.get("negative", "memorization")
    controls = build_controls(acts, vector, positive=positive, negative=negative, n_null=config.n_null)
    for method in config.extra_methods:  # other vector sources: their real direction
        other = extract(acts, positive=positive, negative=negative, method=method, seed=config.seed)
        controls += build_controls(acts, other, positive=positive, negative=negative, n_null=0,
                                   n_shuffled=0, negated=False, isotropic=0)
    return controls


def save_controls(run_dir: Path, controls: Sequence[Control]) -> None:
    """``controls.json``: each control's kind, seed and cosine to the real direction (the report's table)."""
    write_json(run_dir / "controls.json",
               [{"kind": c.kind, "seed": c.seed, "cos_to_real": c.cos_to_real} for c in controls], indent=1)


def plan_sweep(run: Run) -> tuple[list[Control], SweepSpec]:
    """The one definition of a run's sweep, for the single-process, resumed and Ray paths alike:
    the controls of the run's vector and the grid of its config, at the config's layers, else the
    layer scan's choice (read back from ``layerscan.json``, or scanned now with the model), else
    the defaults of :func:`~linsteer.run.config.sweep_spec`. The model is loaded only to scan."""
    cfg = run.config
    acts, vector = run.extracted()
    controls = sweep_controls(cfg, acts, vector)
    n_layers = run.lm.n_layers if run.lm is not None else model_n_layers(cfg.model)
    spec = sweep_spec(cfg, n_layers)
    if cfg.layers is None and cfg.scan_top > 0:  # in every unit, damage units calibrated per layer
        scan = read_scan(run.dir)
        if scan is not None:
            chosen: tuple[int, ...] | None = scan.chosen
        elif scan_task(spec.tasks) is None:
            chosen = None
        else:
            chosen = stage_scan(run.dir, load(run), controls, spec.tasks, strengths=cfg.scan_strengths,
                                unit=spec.unit, top=cfg.scan_top, batch_size=spec.batch_size,
                                say=run.say, n_items=cfg.scan_items)
            if chosen and run.estimate and run.lm is not None and run.lm.device.type == "cpu":
                run.say(estimate_run(cfg, run.lm, chosen).line(None))
        spec = replace(spec, layers=chosen or spec.layers)
    return controls, spec


def stage_sweep(run: Run) -> None:
    """Every condition with its controls on every task split (``results.sqlite``, ``tables/``)."""
    say = run.say
    run.extracted()
    with ResultStore(store_path(run.dir)) as store:
        done = store.get_meta("sweep_complete") == _config_json(run.config)
        if done and (run.dir / "controls.json").exists():  # finished: no need for the model
            say("sweep: reusing the finished sweep in results.sqlite")
            run.rows = summarize(store)
            return
    lm = load(run)
    controls, spec = plan_sweep(run)
    with ResultStore(store_path(run.dir)) as store:
        store.check_settings(run.settings(lm.fingerprint))
        start = time.perf_counter()
        run_sweep(lm, controls, spec, store, progress=say, show_bars=run.progress)
        say(f"sweep: done in {time.perf_counter() - start:.1f}s")
        run.rows = summarize(store)
        store.export(run.dir / "tables")
        save_controls(run.dir, controls)
        store.set_meta("sweep_complete", _config_json(run.config))


def _config_json(config: RunConfig) -> str:
    return json.dumps(asdict(config), sort_keys=True, default=str)


def run_all(config: RunConfig, run_dir: Path, say: Say, progress: bool = True) -> Path:
    """The whole pipeline into ``run_dir``; returns the report's path."""
    run = Run(run_dir, validate_config(config), say, progress, estimate=True)  # the CLI checked it
    with run_lock(run_dir):  # one writer per run directory
        run.save_config()
        t0 = time.perf_counter()
        for stage in STAGES:
            stage(run)
        say(f"total {time.perf_counter() - t0:.1f}s")
    assert run.report is not None
    return run.report


def settings_block(run: Run, vector: SteeringVector) -> dict[str, Any]:
    out: dict[str, Any] = {"linsteer version": __version__, "run directory": str(run.dir)}
    out.update({f"config.{k}": v for k, v in asdict(run.config).items()})
    for key in ("model", "fingerprint", "contrast_sha256", "dataset_sha256", "prompts_sha256",
                "layer_convention", "method", "position", "prompt_format", "dtype"):
        if key in vector.meta:
            out[f"vector.{key}"] = vector.meta[key]
    out["vector.class counts"] = json.dumps(vector.counts)
    if run.lm is not None:  # the machine of this process (a resumed run's earlier stages may differ)
        out["machine"] = machine_text(run.lm.device)
    return out


def stage_report(run: Run) -> None:
    """The dev-selected headline, figures and tables (``report.html``, ``results.json``)."""
    cfg, say = run.config, run.say
    acts, vector = run.extracted()
    if run.rows is None:
        stage_sweep(run)
    rows = run.rows or []
    model = rows[0]["model"] if rows else cfg.model
    reasoning = [t for t in cfg.tasks if task_role(t) == "reasoning"]
    memorization = [t for t in cfg.tasks if task_role(t) == "memorization"]
    if not reasoning:
        raise LinsteerError("the report needs a reasoning task; add arith_mc to 'tasks'")
    with ResultStore(store_path(run.dir)) as store:  # phases survive a resumed or partial run
        extraction = next((p for p in store.phases() if p.name == "extraction"), None)
        dev_items = split_items(store, model, reasoning[0], "dev")  # the dev choices' bootstrap
    primary = [r for r in rows if r["source"] in ("", cfg.method)]  # extra sources: tables only
    scan = read_scan(run.dir)
    headline = headline_from_rows(
        primary, model=model, task=reasoning[0], memorization_task=memorization[0] if memorization else None,
        extraction_seconds=extraction.seconds if extraction else None,
        extraction_tokens=int(extraction.tokens) or None if extraction else None,
        damage_cap=cfg.damage_cap, format_cap=cfg.format_cap, dev_items=dev_items,
        layer_agreement=scan.agreement() if scan is not None else None)
    heads = [headline]
    if headline.best_layer is not None and headline.steered_acc is not None:  # transfer, no reselection
        fixed = SettingKey("real", 0, headline.best_layer, headline.best_operator, headline.best_strength,
                           cfg.unit)
        for other in reasoning[1:]:
            heads.append(headline_from_rows(primary, model=model, task=other, damage_cap=cfg.damage_cap,
                                            format_cap=cfg.format_cap,
                                            fixed=fixed, memorization_task=headline.memorization_task))
    figs, profile_rows = analysis_figures(acts, vector, cfg.analysis_layers)
    figs += steering_figures(primary, headline, cfg.unit, strengths_label(cfg.strengths, cfg.unit))
    alternatives = read_alternatives(run.dir)
    figs += cot_length_figures(primary, alternatives)  # generative tasks only: accuracy vs CoT length
    test_real = [r for r in rows if r["split"] == "test" and r["kind"] in ("baseline", "real")]
    controls_file = run.dir / "controls.json"
    controls = json.loads(controls_file.read_text()) if controls_file.exists() else []
    control_rows = [{"kind": c["kind"], "seed": c["seed"],
                     **{f"cos_L{k}": round(v, 3) for k, v in c["cos_to_real"].items()}} for c in controls]
    tables: list[tuple[str, Sequence[Row]]] = [
        ("Cost and benefit", cost_table(run.dir, headline) + cost_rows(alternatives)),
        *([("Steering vs the alternatives", table_rows(alternatives))] if alternatives else []),
        ("Test split: baseline and real direction", test_real),
        ("All cells", rows),
        ("Layer profile", profile_rows),
        ("Controls: cosine to the real direction", control_rows),
    ]
    confounds = read_confounds(run.dir)
    extra: dict[str, Any] = {"confounds": confounds} if confounds else {}
    if alternatives:
        extra["baselines"] = baselines_json(alternatives)
        figs.insert(0, ("Accuracy vs measured cost",
                        "Test accuracy (95% Wilson interval) of the unsteered base, the dev-selected "
                        "steering, each prompt, steering on top of each prompt and LoRA SFT, on the "
                        "same items, against the compute each one measurably took: FLOPs to obtain "
                        "it (extraction, training) plus FLOPs to answer the test items.",
                        cost_figure(alternatives)))
    if scan is not None:
        figs.insert(1 if alternatives else 0, ("Layer scan: every layer on dev", scan_caption(scan),
                                               scan_figure(scan)))
        extra["layer_scan"] = {k: v for k, v in scan.to_json().items()
                               if k not in ("cells", "baseline_item_gold_probs")}
    path = write_report(run.dir, summary=heads, figures=figs, tables=tables,
                        settings=settings_block(run, vector),
                        title=f"linsteer report: {model} ({vector.meta.get('dtype', '?')})",
                        extra=extra, notice_html=summary_html(alternatives) + confound_html(confounds))
    say(headline.verdict)
    if headline.selection_text:
        say(headline.selection_text)
    say(f"report: {path}")
    run.report = path


Stage = Callable[[Run], None]
STAGES: tuple[Stage, ...] = (stage_extract, stage_confounds, stage_sweep, stage_alternatives, stage_report)
