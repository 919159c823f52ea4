"""A simulated annotator crowd with known skill (pure: numpy in, answers out).

Each annotator answers from a confusion matrix P[true, answer]: careful people
mostly answer right and, when wrong, mostly confuse a class with its look-alike
(3/8, 1/7, 4/9, 5/6, 0/6, 2/7 for digits); a careless one answers at random part
of the time; a spammer answers without looking; a copycat copies whatever pre-label
the task shows (and answers like a good annotator when it shows none). Experts
(reviewer role) resolve the reviews quality asks for. Known skill is what the
campaign report ranks quality's annotator scores against.

Corruptors are a ring that colludes: they answer gold like good annotators (so gold
never blocks them), take their tasks together so that they fill both of an item's
slots, and on a share of the items they hold together all answer the true class's
look-alike. Two confident votes for the same class are consensus, so those wrong
labels reach training, as a ring's would in a real operation (until quality's
label-error audit or a memorization flag sends one to an expert).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

# Look-alike digits: a careful annotator's mistakes mostly land on the partner.
DIGIT_LOOKALIKES = {0: 6, 1: 7, 2: 7, 3: 8, 4: 9, 5: 6, 6: 5, 7: 1, 8: 3, 9: 4}


@dataclass(frozen=True)
class Annotator:
    annotator_id: str
    kind: str  # expert, good, average, careless, spammer, copycat, corruptor
    confusion: NDArray[np.float64]  # [k, k], rows sum to 1
    seconds_per_label: float
    reviewer: bool = False
    copies_prelabels: bool = False
    # A ring member: the share of the ordinary items the ring holds together that it
    # answers wrong (0: not in a ring).
    ring_share: float = 0.0

    @property
    def accuracy(self) -> float:
        """Expected accuracy over classes drawn uniformly (without pre-labels)."""
        return float(np.mean(np.diag(self.confusion)))

    def answer(self, true_class: int, rng: np.random.Generator, prelabel: int | None = None) -> int:
        """The class this annotator answers, given the truth and the pre-label shown."""
        if self.copies_prelabels and prelabel is not None:
            return prelabel
        return int(rng.choice(len(self.confusion), p=self.confusion[true_class]))


def lookalike(true_class: int, k: int) -> int:
    """The class a digit is most often taken for (the next class when not digits)."""
    return DIGIT_LOOKALIKES[true_class] if k == 10 else (true_class + 1) % k


def ring_targets(item_id: str, share: float) -> bool:
    """Whether the ring corrupts this item: the same decision for every member (they agree
    on it among themselves), a `share` of the items, by a hash of the item id."""
    digest = hashlib.sha256(item_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64 < share


def ring_answer(
    member: Annotator,
    true_class: int,
    seen_as: int,
    rng: np.random.Generator,
    *,
    item_id: str,
    held_by_ring: int,
    gold: bool,
    k: int,
    prelabel: int | None = None,
) -> int:
    """What a ring member answers: the true class's look-alike when two or more members
    hold the item (so nobody outside the ring votes on it), it is not gold and the ring
    targets it; otherwise an honest answer to what the member sees (`seen_as`)."""
    if held_by_ring >= 2 and not gold and ring_targets(item_id, member.ring_share):
        return lookalike(true_class, k)
    return member.answer(seen_as, rng, prelabel)


def confusion(
    accuracy: float,
    k: int,
    lookalikes: dict[int, int] | None = None,
    lookalike_share: float = 0.6,
) -> NDArray[np.float64]:
    """P[true, answer]: `accuracy` on the diagonal; of the rest, `lookalike_share`
    goes to the class's look-alike (when it has one) and the remainder spreads
    evenly over the other classes."""
    if not 0.0 <= accuracy <= 1.0 or k < 2:
        raise ValueError("accuracy must be in [0, 1] and there must be two or more classes")
    m = np.zeros((k, k))
    for c in range(k):
        wrong = 1.0 - accuracy
        partner = (lookalikes or {}).get(c)
        others = [o for o in range(k) if o != c]
        if partner is not None and partner != c:
            m[c, partner] += wrong * lookalike_share
            wrong *= 1.0 - lookalike_share
        m[c, others] += wrong / len(others)
        m[c, c] = accuracy
    return m


def careless(accuracy_when_looking: float, looks: float, k: int) -> NDArray[np.float64]:
    """Looks at a share `looks` of items (then answers like a careful person), clicks at
    random on the rest."""
    return looks * confusion(accuracy_when_looking, k, DIGIT_LOOKALIKES if k == 10 else None) + (
        1.0 - looks
    ) * np.full((k, k), 1.0 / k)


def spammer(k: int, favourite: int) -> NDArray[np.float64]:
    """Answers without looking: mostly the same class, now and then another."""
    m = np.full((k, k), 0.3 / (k - 1))
    m[:, favourite] = 0.7
    return m


# The share of the items a ring holds together that it answers wrong: a quarter of the
# few dozen a campaign gives it, a handful of wrong labels; its members still look like
# good annotators to Dawid-Skene (their wrong answers are the consensus).
RING_SHARE = 0.25


def digits_crowd(k: int = 10, experts: int = 2, prefix: str = "") -> list[Annotator]:
    """About a dozen annotators of known, different skill and speed: experts (who
    review), good and average annotators, a careless one, a spammer, a copycat and a
    ring of two corruptors. `prefix` names a second crowd of the same skills (annotator
    ids are global)."""
    look = DIGIT_LOOKALIKES if k == 10 else None
    crowd = [
        Annotator(f"{prefix}expert-{i + 1}", "expert", confusion(0.99, k, look), 6.0, True)
        for i in range(experts)
    ]
    for i, (acc, secs) in enumerate(
        [(0.95, 3.0), (0.93, 2.5), (0.92, 4.0), (0.9, 2.0), (0.88, 3.5), (0.86, 2.2)]
    ):
        crowd.append(Annotator(f"{prefix}good-{i + 1}", "good", confusion(acc, k, look), secs))
    for i, (acc, secs) in enumerate([(0.8, 1.8), (0.75, 2.8)]):
        crowd.append(
            Annotator(f"{prefix}average-{i + 1}", "average", confusion(acc, k, look), secs)
        )
    crowd.append(Annotator(f"{prefix}careless-1", "careless", careless(0.9, 0.5, k), 1.0))
    crowd.append(Annotator(f"{prefix}spammer-1", "spammer", spammer(k, favourite=1), 0.5))
    # Fast, because copying takes no thought; without a pre-label, a good annotator, so
    # that gold accuracy alone is slow to tell: what catches it is agreeing with wrong
    # pre-labels.
    crowd.append(
        Annotator(
            f"{prefix}copycat-1", "copycat", confusion(0.9, k, look), 1.0, copies_prelabels=True
        )
    )
    # A small ring: two members at a careful annotator's speed.
    crowd.extend(
        Annotator(
            f"{prefix}corruptor-{i + 1}",
            "corruptor",
            confusion(0.93, k, look),
            3.0,
            ring_share=RING_SHARE,
        )
        for i in range(2)
    )
    return crowd
