"""Mask generators: counts, tube structure, the official algorithms, the in-graph batch mask."""

import numpy as np
import pytest

import keras
from videomae_keras import (
    RandomMaskingGenerator,
    RunningCellMaskingGenerator,
    TubeMaskingGenerator,
    random_tube_mask,
)


@pytest.mark.parametrize(
    "grid, ratio, per_slice",
    [((8, 14, 14), 0.9, 176), ((8, 14, 14), 0.75, 147), ((8, 16, 16), 0.9, 230), ((2, 3, 5), 0.5, 7)],
)
def test_tube_counts_and_tiling(grid, ratio, per_slice):
    generator = TubeMaskingGenerator(grid, ratio, seed=0)
    mask = generator()
    frames, height, width = grid
    assert mask.shape == (frames * height * width,)
    assert set(np.unique(mask)) <= {0.0, 1.0}
    slices = mask.reshape(frames, height * width)
    assert (slices.sum(axis=1) == per_slice).all()
    assert (slices == slices[0]).all(), "the same spatial mask must repeat in every slice"
    assert generator.total_masks == frames * per_slice == mask.sum()


def test_tube_matches_the_official_algorithm_under_numpy_global_seed():
    """With seed=None the generator draws from numpy's global state exactly as the official
    masking_generator.py does (np.random.shuffle of zeros-then-ones, tiled, flattened)."""
    frames, height, width, ratio = 8, 14, 14, 0.9
    np.random.seed(123)
    ours = [TubeMaskingGenerator((frames, height, width), ratio)() for _ in range(3)]
    np.random.seed(123)
    for mask in ours:
        m = int(ratio * height * width)
        per_frame = np.hstack([np.zeros(height * width - m), np.ones(m)])
        np.random.shuffle(per_frame)
        np.testing.assert_array_equal(mask, np.tile(per_frame, (frames, 1)).flatten())


def test_tube_is_deterministic_per_seed_and_varies_between_calls():
    a, b = TubeMaskingGenerator((8, 14, 14), 0.9, seed=7), TubeMaskingGenerator((8, 14, 14), 0.9, seed=7)
    first = a()
    np.testing.assert_array_equal(first, b())
    assert not np.array_equal(first, a())


@pytest.mark.parametrize("ratio, expected", [(0.0, 0), (0.004, 0), (0.01, 1), (0.02, 3), (0.999, 195)])
def test_tube_ratio_edges(ratio, expected):
    mask = TubeMaskingGenerator((8, 14, 14), ratio, seed=0)()
    assert mask.reshape(8, -1).sum(axis=1).tolist() == [expected] * 8


@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5])
def test_tube_rejects_bad_ratio(bad):
    with pytest.raises(ValueError, match="mask_ratio"):
        TubeMaskingGenerator((8, 14, 14), bad)


def test_bad_grid_is_explained():
    with pytest.raises(ValueError, match="token grid"):
        TubeMaskingGenerator((14, 14), 0.9)


def test_random_masking_counts():
    generator = RandomMaskingGenerator((8, 14, 14), 0.9, seed=1)
    mask = generator()
    assert mask.shape == (1568,) and mask.sum() == int(0.9 * 1568) == 1411
    slices = mask.reshape(8, -1).sum(axis=1)
    assert len(set(slices.tolist())) > 1, "random masking is not tube-shaped"


def test_running_cell_maps():
    generator = RunningCellMaskingGenerator((8, 14, 14), 0.5, seed=0)
    assert generator.all_mask_maps.shape == (4, 1568)
    # From start 0 the 2x2 cells of slices 0..3 are (facts file, section 5.3):
    expected = [[[1, 0], [0, 1]], [[0, 0], [1, 1]], [[0, 1], [1, 0]], [[1, 1], [0, 0]]]
    slices = generator.all_mask_maps[0].reshape(8, 14, 14)
    for t in range(8):
        np.testing.assert_array_equal(slices[t, :2, :2], expected[t % 4])
        np.testing.assert_array_equal(slices[t], np.tile(expected[t % 4], (7, 7)))
    for mask_map in generator.all_mask_maps:  # half of every slice is decoded
        assert (mask_map.reshape(8, -1).sum(axis=1) == 98).all()
    drawn = {tuple(generator()) for _ in range(40)}
    assert drawn == {tuple(m) for m in generator.all_mask_maps}


def test_running_cell_rejects_odd_grid_and_bad_ratio():
    with pytest.raises(ValueError, match="even"):
        RunningCellMaskingGenerator((8, 7, 7))
    with pytest.raises(ValueError, match="0.25"):
        RunningCellMaskingGenerator((8, 14, 14), 0.1)


def test_random_tube_mask_in_graph_counts_and_tubes():
    mask = keras.ops.convert_to_numpy(random_tube_mask(6, (8, 14, 14), 0.9, seed=3))
    assert mask.shape == (6, 1568) and mask.dtype == bool
    slices = mask.reshape(6, 8, 196)
    assert (slices.sum(-1) == 176).all()
    assert (slices == slices[:, :1]).all()
    assert len({tuple(m) for m in mask}) == 6, "each sample draws its own mask"


def test_random_tube_mask_with_seed_generator_under_jit():
    seed = keras.random.SeedGenerator(5)
    if keras.backend.backend() == "jax":
        import jax

        @jax.jit
        def draw(state):  # the stateless pattern Keras' JAX trainer uses
            with keras.StatelessScope(state_mapping=[(seed.state, state)]) as scope:
                mask = random_tube_mask(4, (2, 4, 4), 0.5, seed=seed)
            return mask, scope.get_current_value(seed.state)

        mask, new_state = draw(seed.state.value)
        mask = np.asarray(mask)
        assert not np.array_equal(np.asarray(draw(new_state)[0]), mask)
    elif keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        mask = tf.function(lambda: random_tube_mask(4, (2, 4, 4), 0.5, seed=seed), jit_compile=True)()
        mask = mask.numpy()
    else:
        mask = keras.ops.convert_to_numpy(random_tube_mask(4, (2, 4, 4), 0.5, seed=seed))
    assert mask.shape == (4, 32) and (mask.reshape(4, 2, 16).sum(-1) == 8).all()
