"""How sure an accuracy is: Wilson intervals, and McNemar's exact test for two models.

An accuracy on 10,000 test images is a proportion with about +/- 0.85 points of sampling error;
two models scored on the same images are compared on the images where they disagree.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from sepconv_contract import Interval, PairedComparison

# The 97.5th percentile of the standard normal: a two-sided 95% interval.
Z_95 = 1.959963984540054


def wilson_interval(correct: int, total: int, z: float = Z_95) -> Interval | None:
    """The Wilson score interval of ``correct / total``: sound near 0 and 1, unlike Wald's."""
    if total <= 0:
        return None
    share = correct / total
    denominator = 1 + z * z / total
    centre = (share + z * z / (2 * total)) / denominator
    half = z * math.sqrt(share * (1 - share) / total + z * z / (4 * total * total)) / denominator
    return Interval(
        low=round(max(0.0, centre - half), 6),
        high=round(min(1.0, centre + half), 6),
        method="wilson",
    )


def mcnemar_exact_p(only_first: int, only_second: int) -> float:
    """Two-sided exact McNemar p-value: a binomial test that the discordant pairs split 50/50."""
    discordant = only_first + only_second
    if discordant == 0:
        return 1.0
    tail = sum(math.comb(discordant, k) for k in range(min(only_first, only_second) + 1))
    # Exact integers until the one division: no overflow and no rounding of the binomials.
    return min(1.0, 2 * tail / (1 << discordant))


def paired_comparison(
    other: str,
    correct: npt.NDArray[np.bool_],
    other_correct: npt.NDArray[np.bool_],
    z: float = Z_95,
) -> PairedComparison:
    """This model against ``other`` on the same images: discordant counts, p-value, CI.

    The interval of the accuracy difference is the Wald interval for paired proportions,
    whose variance comes from the discordant counts only; with hundreds of discordant images,
    as here, it agrees with the score-based ones to the second decimal of a point.
    """
    if correct.shape != other_correct.shape:
        raise ValueError(
            f"paired comparison needs the same images: got {correct.shape} and "
            f"{other_correct.shape} results"
        )
    total = int(correct.size)
    both = int(np.sum(correct & other_correct))
    only_this = int(np.sum(correct & ~other_correct))
    only_other = int(np.sum(~correct & other_correct))
    difference = (only_this - only_other) / total if total else 0.0
    variance = (
        ((only_this + only_other) - (only_this - only_other) ** 2 / total) / total**2
        if total
        else 0.0
    )
    half = z * math.sqrt(max(variance, 0.0))
    return PairedComparison(
        other=other,
        images=total,
        both_correct=both,
        only_this_correct=only_this,
        only_other_correct=only_other,
        both_wrong=total - both - only_this - only_other,
        accuracy_difference=round(difference, 6),
        difference_interval=Interval(
            low=round(difference - half, 6), high=round(difference + half, 6), method="wald-paired"
        ),
        mcnemar_p=mcnemar_exact_p(only_this, only_other),
    )
