"""The known-answer dataset's scorer measures what it claims: fill, centroid and colour."""

import numpy as np

from shapes import BACKGROUND, PALETTE, draw, make_shapes, nearest_colour, score


def test_square_fills_its_box_and_a_disc_pi_over_4():
    square = score(draw("square", 32, 16.0, 12.0, 6.0, PALETTE[2]))
    disc = score(draw("disc", 64, 32.0, 32.0, 20.0, PALETTE[1]))
    assert square.fill == 1.0 and square.centroid == (16.0, 12.0)
    assert abs(disc.fill - np.pi / 4) < 0.01 and np.allclose(disc.centroid, (32.0, 32.0), atol=0.01)
    assert nearest_colour(square.colour) == 2 and nearest_colour(disc.colour) == 1


def test_blank_image_scores_none_and_datasets_are_seeded():
    assert score(np.full((3, 16, 16), BACKGROUND, dtype=np.uint8)) is None
    a, b = make_shapes("disc", 20, seed=5), make_shapes("disc", 20, seed=5)
    assert np.array_equal(a.images, b.images) and a.images.shape == (20, 3, 32, 32)
    measured = [score(image) for image in a.images]
    assert all(np.hypot(*(np.array(m.centroid) - c)) < 0.5 for m, c in zip(measured, a.centres))
    assert [nearest_colour(m.colour) for m in measured] == a.colours.tolist()
