"""The line search inside a real optimisation: Armijo against the same noise, floor when nothing passes."""

import pytest
import torch

import igos
from igos import _igos
from igos._options import IGOSOptions
from tests.igos.evidence import WindowEvidenceNet, evidence_images

SIZE = (32, 32)
WINDOW = (8, 16, 8, 8)


class LineSearchSpy:
    """Wraps backtracking_line_search and keeps what it was given and what it returned."""

    def __init__(self) -> None:
        self.calls = []
        self.real = _igos.backtracking_line_search

    def __call__(self, evaluate, masks, direction, base, start, options):
        step = self.real(evaluate, masks, direction, base, start, options)
        self.calls.append((evaluate, masks, direction, base, start, options, step))
        return step


@pytest.fixture
def spy(monkeypatch) -> LineSearchSpy:
    spy = LineSearchSpy()
    monkeypatch.setattr(_igos, "backtracking_line_search", spy)
    return spy


def run(method: str, **options) -> igos.Explanation:
    model = WindowEvidenceNet(SIZE, WINDOW).double()
    settings = {"iterations": 6, "ig_steps": 4, **options}
    return igos.explain(model, evidence_images(3, SIZE, WINDOW), method=method, mask_size=16, seed=0, **settings)


@pytest.mark.parametrize("method", ["igos++", "igos"])
def test_fast_mode_accepts_steps_that_satisfy_armijo_on_the_same_noise(spy, method):
    run(method, mode="fast", early_stop=False)
    assert len(spy.calls) == 6
    for evaluate, masks, direction, base, _start, options, step in spy.calls:
        local = torch.arange(len(masks))
        # common random numbers: re-evaluating reproduces the line search's numbers exactly
        assert torch.equal(evaluate(local, masks), evaluate(local, masks))
        # the base loss reused from the IG pass is the line-search objective at the current masks
        torch.testing.assert_close(evaluate(local, masks), base, rtol=1e-12, atol=1e-12)
        candidate = (masks - step[:, None, None, None] * direction).clamp(0, 1)
        decrease = options.armijo_c * step * direction.pow(2).flatten(1).sum(1)
        passed = evaluate(local, candidate) <= base - decrease
        floor = step < options.min_step
        assert (passed | floor).all()
        # the previous (larger) trial failed, unless the step is the first trial
        larger = step / options.step_shrink
        tried_larger = larger <= _start * (1 + 1e-12)
        bigger = (masks - larger[:, None, None, None] * direction).clamp(0, 1)
        failed = evaluate(local, bigger) > base - options.armijo_c * larger * direction.pow(2).flatten(1).sum(1)
        assert failed[tried_larger].all()


def test_floor_step_is_applied_when_no_trial_passes():
    options = IGOSOptions().resolved(full_resolution_mask=False, default_regularizer="btv")
    masks, direction = torch.full((2, 1, 3, 3), 0.5), torch.ones(2, 1, 3, 3)
    calls = []

    def never_decreases(local, candidate):
        calls.append(len(local))
        return torch.full((len(local),), 10.0)

    step = _igos.backtracking_line_search(never_decreases, masks, direction, torch.zeros(2),
                                          torch.full((2,), 1000.0), options)
    torch.testing.assert_close(step, torch.full((2,), 1000 * 0.2**12))
    assert len(calls) == 13


def test_warm_start_begins_one_shrink_above_the_previous_step(spy):
    run("igos++", mode="fast", early_stop=False)
    for previous, current in zip(spy.calls, spy.calls[1:], strict=False):
        expected = torch.clamp(previous[-1] / 0.2, max=1000.0)
        torch.testing.assert_close(current[4], expected)


def test_faithful_mode_restarts_at_init_step_with_fresh_noise(spy):
    run("igos++", mode="faithful")
    for evaluate, masks, *_rest, start, _options, _step in spy.calls:
        assert torch.equal(start, torch.full_like(start, 1000.0))
        local = torch.arange(len(masks))
        assert not torch.equal(evaluate(local, masks), evaluate(local, masks))


def test_fixed_step_ablation_skips_the_line_search(spy):
    explanation = run("igos++", line_search=False, fixed_step=2.0)
    assert spy.calls == []
    assert torch.equal(explanation.history["step"], torch.full_like(explanation.history["step"], 2.0))


def test_parallel_trials_give_the_sequential_steps():
    sequential = run("igos++", mode="fast", parallel_trials=1)
    batched = run("igos++", mode="fast", parallel_trials=4)
    torch.testing.assert_close(batched.history["step"], sequential.history["step"], equal_nan=True)
    torch.testing.assert_close(batched.saliency, sequential.saliency)


def test_early_stop_needs_quiet_iterations_in_a_row():
    # a step of 1e-12 never moves the masks, so every iteration is quiet
    still = run("igos++", mode="fast", line_search=False, fixed_step=1e-12, iterations=10, early_stop_patience=3)
    ran = (~torch.isnan(still.history["loss"])).sum(dim=0)
    assert (ran == 3).all()
    moving = run("igos++", mode="fast", line_search=False, fixed_step=1.0, iterations=10, early_stop_patience=3)
    assert (~torch.isnan(moving.history["loss"])).all()
    never = run("igos++", mode="faithful", line_search=False, fixed_step=1e-12, iterations=10)
    assert (~torch.isnan(never.history["loss"])).all()
