"""What a campaign is set to do and what it records: its settings, the accuracy curve,
the labels the crowd submitted, the planted twins, its result and its progress ticks."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CampaignSettings:
    project: str = "digits"
    strategy: str = "margin"
    pool: int = 1000  # items imported into the pool
    gold: int = 100  # gold items (held out by training: it measures on them)
    # Human labels the campaign may spend: random sampling labels about 780 of the 1000
    # pool items with it, ending at 0.966-0.977 test accuracy over runs.
    label_budget: int = 2000
    # On the test split nobody labels: about what this model reaches on the whole pool,
    # and at or above what random sampling reaches on the budget, so active learning
    # does not stop before it matches the baseline's final model.
    target_accuracy: float = 0.98
    retrain_every: int = 12
    # Items per sampler batch; the gateway keeps about one batch of slots open, so what
    # annotators label was ranked by a recent model.
    batch_size: int = 16
    overlap_min: int = 2
    overlap_max: int = 4
    gold_rate: float = 0.1
    # Of the gold tasks that show a pre-label, the share whose pre-label is wrong on
    # purpose: what catches an annotator who copies pre-labels.
    honeypot_rate: float = 0.5
    pace: float = 0.6  # each annotator waits pace x their seconds per label
    max_seconds: float = 480.0
    seed: int = 0
    stop_at_target: bool = True  # a baseline spends its whole budget
    # Planted mislabeled twins (each with its original, imported and labelled first).
    twins: int = 12
    # How long the crowd may take to be handed every twin and original before the rest of
    # the pool is imported anyway.
    pairs_wait_seconds: float = 30.0


@dataclass
class CurvePoint:
    model_version: str
    human_labels: int  # spent when the version's run read its training labels
    test_accuracy: float
    gold_accuracy: float
    seconds: float  # since the campaign began, when the version was measured
    labels_when_served: int = 0
    run_id: str = ""


@dataclass(frozen=True)
class Submitted:
    """One human label the crowd gave, with the truth the campaign knows."""

    at: float  # wall-clock seconds
    annotator_id: str
    item_id: str
    answer: int
    truth: int
    prelabel: int | None = None  # the class the task's pre-label showed, if any


@dataclass(frozen=True)
class TwinPair:
    """A planted twin and its original, by the item ids the sampler gave them ("" when
    the crowd was never handed it)."""

    original_item: str
    twin_item: str
    true_class: int
    misread_as: int  # what every annotator takes the twin for


@dataclass
class CampaignResult:
    settings: CampaignSettings
    imported: dict[str, int]
    labels_by_annotator: dict[str, int]
    curve: list[CurvePoint]
    blocked: dict[str, str]
    stopped_because: str
    seconds: float
    errors: list[str] = field(default_factory=list)
    submitted: list[Submitted] = field(default_factory=list)
    twins: list[TwinPair] = field(default_factory=list)
    # item id -> its features, for every item the crowd was handed
    features: dict[str, list[float]] = field(default_factory=dict)

    @property
    def human_labels(self) -> int:
        return sum(self.labels_by_annotator.values())

    @property
    def final_accuracy(self) -> float:
        return self.curve[-1].test_accuracy if self.curve else 0.0


@dataclass(frozen=True)
class Tick:
    """What the campaign shows while it runs."""

    project: str
    strategy: str
    labels: int
    budget: int
    consensus: int  # pool items labelled (accepted consensus or propagated)
    model: str
    accuracy: float
    alpha: float | None  # Krippendorff's alpha over the project so far
    blocked: tuple[str, ...]
    seconds: float
