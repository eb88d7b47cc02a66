"""The run's time estimate: its arithmetic follows the config, and it says when a run is over budget."""

from __future__ import annotations

from dataclasses import replace

from archs import arch_lm
from linsteer.run.config import make_config
from linsteer.run.estimate import Estimate, estimate_run, run_flops
from linsteer.sweep.run import flops_per_token


def test_the_count_follows_the_config() -> None:
    lm = arch_lm("llama", layers=4)
    config = make_config()
    full = run_flops(config, lm)
    assert run_flops(replace(config, n_test=400), lm) > full  # more test items, more work
    assert run_flops(replace(config, baselines=()), lm) < full  # no alternatives, less
    assert run_flops(replace(config, n_null=1), lm) < full  # fewer controls, less
    # a condition replayed at the last layer runs no block above it: the cheapest sweep
    last, first = (run_flops(config, lm, steered_layers=(x,)) for x in (3, 0))
    assert last < first
    # without the scan, the scan's share is gone
    assert run_flops(config, lm, steered_layers=(3,), scan=False) < last
    # one more test item adds at least its unsteered pass through every block
    assert run_flops(replace(config, n_test=201), lm) - full >= 10 * flops_per_token(lm)


def test_the_line_says_when_the_budget_is_exceeded() -> None:
    fast = Estimate(300.0, 300.0, 100.0, "float32")
    slow = Estimate(900.0, 1500.0, 40.0, "float32")
    assert "over" not in fast.line() and "about 5 min" in fast.line()
    assert "over the default run's 10-minute budget" in slow.line()
    assert "15 to 25 min" in slow.line()
    assert "over" not in slow.line(None)  # no budget: only the estimate


def test_estimate_run_measures_this_machine() -> None:
    lm = arch_lm("llama")
    est = estimate_run(make_config(), lm)
    assert est.gflops > 0 and 0 < est.seconds <= est.seconds_hi
    rest = estimate_run(make_config(), lm, (2,))
    assert rest.seconds == rest.seconds_hi and rest.what == "the rest of the run"
