"""Layout model of histoprog.synth: grids, planted SOF variation, determinism."""

import numpy as np
import pytest

from histoprog.errors import InputError
from histoprog.sof import CLASSES, compute_sofs
from histoprog.synth.clinical import TRUE_THRESHOLDS
from histoprog.synth.layout import CODE, MIN_TUM_TILES, make_grid, sample_latent
from histoprog.synth.seeding import rng_for


def _grids(n, kind="crlm", size=24):
    out = []
    for i in range(n):
        rng = rng_for(3, "layout", i)
        out.append(make_grid(sample_latent(rng, kind), size, size, rng))
    return out


def test_grid_shape_codes_and_margins():
    for g in _grids(10):
        assert g.shape == (24, 24) and g.dtype == np.int8
        assert g.min() >= 0 and g.max() < len(CLASSES)
        # BACK margin all around: the tissue outline never touches the grid edge.
        edge = np.concatenate([g[0], g[-1], g[:, 0], g[:, -1]])
        assert (edge == CODE["BACK"]).all()
        assert (g == CODE["TUM"]).sum() >= 50
        assert (g == CODE["HEP"]).sum() > 0


@pytest.mark.parametrize("kind", ["crlm", "hcc"])
def test_every_grid_gets_a_tumour_region(kind):
    size = 24 if kind == "crlm" else 16
    for g in _grids(40, kind, size):
        s = compute_sofs(g, TRUE_THRESHOLDS)
        assert s["status"] == "ok"
        assert s["tumour_region_tiles"] >= 64
        assert (g == CODE["TUM"]).sum() >= min(MIN_TUM_TILES, 60)


def test_planted_sofs_vary_widely():
    sofs = [compute_sofs(g, TRUE_THRESHOLDS) for g in _grids(80)]
    for col, min_sd in [
        ("interaction_LYM", 0.03),
        ("infiltrating_LYM", 0.03),
        ("overall_STR", 0.04),
        ("interaction_STR", 0.03),
        ("interaction_HEP", 0.025),
        ("overall_DEB", 0.04),
    ]:
        values = np.array([s[col] for s in sofs])
        assert values.std() > min_sd, col
        assert values.min() < 0.5 * np.median(values) or values.min() == 0, col


def test_same_seed_same_grid():
    a, b = _grids(3), _grids(3)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    other = make_grid(sample_latent(rng_for(4, "layout", 0)), 24, 24, rng_for(4, "x"))
    assert not np.array_equal(a[0], other)


def test_too_small_grid_is_an_input_error():
    rng = rng_for(0, "layout", 0)
    with pytest.raises(InputError, match="too small"):
        make_grid(sample_latent(rng), 10, 30, rng)


def test_smallest_allowed_grid_always_generates():
    from histoprog.synth.cohort import make_patient
    from histoprog.synth.spec import parse_spec

    for seed in range(6):
        spec = parse_spec(
            {"name": "x", "n_patients": 8, "seed": seed, "grid": {"rows": 16, "cols": 16}}
        )
        for index in range(spec.n_patients):
            assert make_patient(spec, index).grid.shape == (16, 16)
