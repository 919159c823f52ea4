"""Class boosts from training's depth profiles (pure).

A depth profile gives, per class and layer group (index 0 = group 1, the output
head; the last = group K, nearest the input), the entropy of a linear probe's
predictions on held-out items of the class, normalised by log(number of classes)
as training computes it (`strata.training.analysis.depth_profiles`): 0 = the group
tells the class apart with certainty, 1 = the probe cannot tell the classes apart.

The rule, per class:

1. Depth-weighted confusion: the mean of the class's entropies with group g (of K)
   weighing g, so group K counts K times the head. A class the representation
   cannot separate needs many labels to reshape the features; one confused at the
   head only, with a representation that already separates it, needs few labels to
   move a linear boundary. (Probes on the head's few logits also read higher than
   those on the wider representation for every class alike, which this discounts.)
2. An absolute ramp on that confusion, not a min-max over classes: below
   FINE_BELOW (0.1) the boost is 0, from CONFUSED_FROM (0.5) it is 1, linear in
   between. Normalised entropy h means the probe spreads its belief over about
   k**h classes: under 0.1 that is one class (a residue of the probe's
   regularisation), from 0.5 it is sqrt(k) or more, a class the model does not
   know. So when every class is learned, every boost is near 0, and a class gets
   the full boost only when it is genuinely confused, however the others fare.

Entries that are NaN or infinite (a group whose probe could not be fitted) are
left out of the mean; entries outside [0, 1] are clipped to it. A profile shorter
than the others is missing its deepest groups (the index is the group), so its
known groups keep their weights. A class with no finite entry gets no boost.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

FINE_BELOW = 0.1
CONFUSED_FROM = 0.5


def depth_confusion(entropy_by_group: Sequence[float]) -> float | None:
    """The profile's depth-weighted mean normalised entropy (None: no finite entry)."""
    total = weight = 0.0
    for group, value in enumerate(entropy_by_group, start=1):
        if not math.isfinite(value):
            continue
        total += group * min(max(value, 0.0), 1.0)
        weight += group
    return total / weight if weight else None


def confusion_weights(profiles: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """Class -> ranking boost in [0, 1] from its depth profile (see the module's rule)."""
    weights = {}
    for label, profile in profiles.items():
        confusion = depth_confusion(profile)
        if confusion is None:
            continue
        ramp = (confusion - FINE_BELOW) / (CONFUSED_FROM - FINE_BELOW)
        weights[label] = min(max(ramp, 0.0), 1.0)
    return weights
