import numpy as np
import pytest
import torch

from jointseg._core.training import fit, tiles_with_nuclei


def _regression(seed: int = 0):
    torch.manual_seed(seed)
    net = torch.nn.Linear(1, 1)
    x = torch.linspace(-1, 1, 32)[:, None]
    return net, x, lambda: ((net(x) - 3 * x) ** 2).mean()


@pytest.mark.parametrize("steps", [1, 4, 10, 200])
def test_fit_runs_any_number_of_steps_and_learns(steps):
    net, _, loss = _regression()
    log = fit(net, loss, steps=steps, lr=0.1, weight_decay=0.0, progress=False)
    assert log.steps == len(log.losses) == steps
    if steps >= 200:
        assert log.losses[-1] < 0.01 * log.losses[0]
    assert not net.training  # left in eval mode


def test_fit_is_seeded_by_the_caller():
    runs = []
    for _ in range(2):
        net, _, loss = _regression(seed=3)
        runs.append(fit(net, loss, steps=20, lr=0.05, weight_decay=0.01, progress=False).losses)
    assert runs[0] == runs[1]


def test_validation_stops_early_and_keeps_the_best_weights():
    net, _, loss = _regression()
    values = iter([3.0, 1.0, 2.0, 2.5, 2.6, 9.0])
    seen = []

    def validation():
        seen.append(net.weight.detach().clone())
        return next(values)

    log = fit(net, loss, steps=100, lr=0.05, weight_decay=0.0, one_cycle=False, validation_loss=validation,
              eval_every=5, patience=3, progress=False)  # fmt: skip
    assert log.steps == 25  # evaluations at 5..25; no improvement after the 2nd for 3 evaluations
    assert log.best_validation_loss == 1.0
    assert [h["step"] for h in log.history] == [5, 10, 15, 20, 25]
    torch.testing.assert_close(net.weight, seen[1])  # the best weights are restored


def test_tiles_with_nuclei_picks_only_tiles_with_nuclei_in_slide_order():
    nuclei = np.zeros((40, 40), int)
    nuclei[5, 5] = nuclei[25, 35] = nuclei[35, 5] = 1
    all_tiles = tiles_with_nuclei(nuclei, 10, max_tiles=10, rng=np.random.default_rng(0), method="test")
    assert all_tiles == [(0, 10, 0, 10), (20, 30, 30, 40), (30, 40, 0, 10)]
    two = tiles_with_nuclei(nuclei, 10, max_tiles=2, rng=np.random.default_rng(0), method="test")
    assert len(two) == 2 and set(two) < set(all_tiles) and two == sorted(two)
    binned = tiles_with_nuclei(nuclei, 5, max_tiles=10, rng=np.random.default_rng(0), bin_size=2, method="test")
    assert binned == [(0, 5, 0, 5), (10, 15, 15, 20), (15, 20, 0, 5)]  # bins of 2 px hold a nucleus at their centre
    with pytest.raises(ValueError, match="No nuclei in the image: test"):
        tiles_with_nuclei(np.zeros((40, 40), int), 10, max_tiles=3, rng=np.random.default_rng(0), method="test")
