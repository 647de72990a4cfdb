"""The review queue's strategies: which rows come next, in what order, and why."""

from __future__ import annotations

import numpy as np
import pytest

from ad_core.runs import (
    DEFAULT_QUEUE_MODE,
    DIVERSE_POOL,
    QUEUE_MODES,
    QUEUE_REASONS,
    review_queue,
)

SCORES = np.array([0.1, 0.9, 0.5, 0.7, 0.3, 0.8, 0.45, 0.2])
UNLABELLED = np.full(SCORES.size, -1)


def test_highest_shows_the_top_scores_first_and_passes_over_labelled_and_skipped_rows():
    labels = UNLABELLED.copy()
    labels[1] = 1  # the top score is labelled already
    queue = review_queue("highest", SCORES, labels, skipped={5}, n=3)
    assert queue.positions.tolist() == [3, 2, 6]
    assert queue.reasons == ("top score",) * 3
    assert queue.remaining == SCORES.size - 2


def test_threshold_shows_the_scores_nearest_the_threshold_first():
    queue = review_queue("threshold", SCORES, UNLABELLED, threshold=0.48, n=3)
    assert queue.positions.tolist() == [2, 6, 4]  # |0.5-.48| < |0.45-.48| < |0.3-.48|
    assert queue.reasons == ("near the threshold",) * 3
    with pytest.raises(ValueError, match="needs a threshold"):
        review_queue("threshold", SCORES, UNLABELLED)


def test_random_is_a_seeded_sample_that_labels_do_not_reshuffle():
    first = review_queue("random", SCORES, UNLABELLED, n=8, seed=3)
    assert sorted(first.positions.tolist()) == list(range(8))
    assert first.positions.tolist() != np.argsort(-SCORES).tolist()
    assert first.reasons == ("random sample",) * 8
    labels = UNLABELLED.copy()
    labels[first.positions[0]] = 0
    after = review_queue("random", SCORES, labels, n=7, seed=3)
    assert after.positions.tolist() == first.positions[1:].tolist()
    other = review_queue("random", SCORES, UNLABELLED, n=8, seed=4)
    assert other.positions.tolist() != first.positions.tolist()


def test_map_keeps_the_order_the_rows_were_sent_in():
    queue = review_queue("map", SCORES, UNLABELLED, map_positions=np.array([4, 0, 7]), n=5)
    assert queue.positions.tolist() == [4, 0, 7]
    assert queue.reasons == ("sent from the map",) * 3
    assert queue.remaining == 3


def _two_groups(n: int = 120) -> tuple[np.ndarray, np.ndarray]:
    """Scores and codes: the top rows sit in group A (x ~ 0) but for a few in group B (x ~ 10)."""
    rng = np.random.default_rng(0)
    scores = np.linspace(1.0, 0.0, n)  # row i has rank i
    codes = rng.normal(scale=0.1, size=(n, 2))
    in_b = np.array([7, 30])  # B rows among the top of the ranking
    codes[in_b, 0] += 10.0
    return scores, codes


def test_diverse_starts_at_the_top_score_then_picks_rows_unlike_it():
    scores, codes = _two_groups()
    queue = review_queue("diverse", scores, np.full(scores.size, -1), codes=codes, n=3)
    assert queue.positions[0] == 0
    assert queue.reasons[0] == "top score"
    # the row of group B with the best score is the farthest from row 0, so it comes next
    assert queue.positions[1] in (7, 30)
    assert queue.reasons[1:] == ("unlike the rows labelled so far",) * 2
    # highest would have shown rows 0, 1, 2: all of group A
    assert review_queue("highest", scores, np.full(scores.size, -1), n=3).positions.tolist() == [
        0,
        1,
        2,
    ]


def test_diverse_first_shows_the_top_row_least_like_the_labelled_ones():
    scores, codes = _two_groups()
    labels = np.full(scores.size, -1)
    labels[[0, 1, 2]] = 1  # labelled so far: all of group A
    queue = review_queue("diverse", scores, labels, codes=codes, n=2)
    assert queue.positions[0] in (7, 30)
    # once one row of group B is picked, the other is like it: the next is not of group B
    assert queue.positions[1] not in (7, 30)
    assert queue.reasons == ("unlike the rows labelled so far",) * 2


def test_diverse_picks_only_among_the_top_ranked_rows():
    scores, codes = _two_groups(DIVERSE_POOL * 3)
    far = DIVERSE_POOL + 20  # far from everything, but ranked below the pool
    codes[far] = [-100.0, -100.0]
    queue = review_queue("diverse", scores, np.full(scores.size, -1), codes=codes, n=10)
    assert far not in queue.positions
    assert (queue.positions < DIVERSE_POOL).all()


def test_diverse_one_row_at_a_time_follows_the_batch_order():
    # Labelling the shown row and asking again gives the batch's next row: the rows
    # labelled so far are the k-centre's centres.
    rng = np.random.default_rng(1)
    scores = rng.random(DIVERSE_POOL)  # the pool is every row: it cannot shift
    codes = rng.normal(size=(scores.size, 4))
    labels = np.full(scores.size, -1)
    batch = review_queue("diverse", scores, labels, codes=codes, n=6).positions.tolist()
    one_by_one = []
    for _ in range(6):
        nxt = review_queue("diverse", scores, labels, codes=lambda r: codes[r], n=1)
        one_by_one.append(int(nxt.positions[0]))
        labels[nxt.positions[0]] = 0
    assert one_by_one == batch


def test_diverse_needs_codes_and_unknown_queues_are_refused():
    with pytest.raises(ValueError, match="codes"):
        review_queue("diverse", SCORES, UNLABELLED)
    with pytest.raises(ValueError, match="Unknown review queue"):
        review_queue("newest", SCORES, UNLABELLED)


def test_every_queue_names_its_reason_and_the_default_is_one_of_them():
    assert set(QUEUE_MODES) == {"highest", "threshold", "diverse", "random", "map"}
    assert DEFAULT_QUEUE_MODE in QUEUE_MODES and DEFAULT_QUEUE_MODE != "map"
    assert set(QUEUE_REASONS.values()) == {
        "top score",
        "near the threshold",
        "unlike the rows labelled so far",
        "random sample",
        "sent from the map",
    }
