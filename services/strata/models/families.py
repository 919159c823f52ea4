"""The model families, their inputs, and their layer groups.

- `mlp`: feature vectors (scikit-learn's digits: 64 values).
- `text-hash`: text as hashed word unigrams and bigrams into an embedding bag.
- `cnn`: images (PNG), as grayscale squares of `image_size` pixels.

Each model returns logits from `forward(*inputs)` and its penultimate
representation from `features(*inputs)` (the embedding published for diversity
and deduplication); `layer_groups()` lists its parameters' groups from the
output head (group 1) back to the input (group K).
"""

from __future__ import annotations

import io
import re
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from strata.v1 import common_pb2

FAMILIES = ("mlp", "text-hash", "cnn")
MODALITY = {"mlp": "features", "text-hash": "text", "cnn": "image"}
_WORD = re.compile(r"\w+", re.UNICODE)


class InputError(ValueError):
    """Content the model cannot take (wrong modality, shape or encoding)."""


@dataclass(frozen=True)
class ModelSpec:
    family: str
    classes: list[str]
    input_dim: int = 0  # mlp: feature values per item
    image_size: int = 28  # cnn: images are resized to image_size x image_size
    buckets: int = 1 << 15  # text-hash: hashed vocabulary size
    hidden: list[int] = field(default_factory=lambda: [128, 64])
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"unknown model family {self.family!r}; known: {', '.join(FAMILIES)}")
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise ValueError("a model needs two or more distinct classes")
        if self.family == "mlp" and self.input_dim < 1:
            raise ValueError("an mlp needs input_dim (feature values per item)")
        if len(self.hidden) != 2 or min(self.hidden) < 1:
            raise ValueError("hidden must be two positive layer widths")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(raw: dict[str, Any]) -> ModelSpec:
        known = {f for f in ModelSpec.__dataclass_fields__}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown model spec fields: {', '.join(sorted(unknown))}")
        fields: dict[str, Any] = {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in raw.items()
        }
        return ModelSpec(**fields)


class _Route(torch.autograd.Function):
    """Identity forward; backward lets each example's gradient through only where
    `through` is true (the rest of the batch's gradient stops here)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, through: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(through)
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (through,) = ctx.saved_tensors
        shape = (grad.shape[0],) + (1,) * (grad.dim() - 1)
        return grad * through.reshape(shape).to(grad.dtype), None


def route(x: torch.Tensor, through: torch.Tensor) -> torch.Tensor:
    """`x` unchanged; in backward, example i's gradient passes only if `through[i]`
    (bool), or is multiplied by `through[i]` (float)."""
    if through.dtype == torch.bool and bool(through.all()):
        return x
    if through.dtype != torch.bool and bool((through == 1).all()):
        return x
    return _Route.apply(x, through)  # type: ignore[no-any-return]


def boundary_gains(scale: torch.Tensor) -> torch.Tensor:
    """[batch, K-1]: for per-group gradient scales [batch, K] (group 1 = head first,
    0 past each example's depth), the factor by which example i's gradient is
    multiplied where it passes from group g into group g+1 (column g-1), so that
    group g's parameters see it scaled by scale[i, g-1] once the loss is scaled by
    scale[i, 0]. 0 where the deeper group is not reached."""
    outer, inner = scale[:, :-1], scale[:, 1:]
    safe = torch.where(outer > 0, outer, torch.ones_like(outer))
    return torch.where(outer > 0, inner / safe, torch.zeros_like(inner))


class GroupedModel(nn.Module):
    """A classifier whose parameters are split into ordered layer groups."""

    head: nn.Linear

    def features(self, *inputs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(
        self,
        *inputs: torch.Tensor,
        depth: torch.Tensor | None = None,
        scale: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The logits; with `depth`, routed (see `forward_routed`), so that wrappers
        that call forward (DistributedDataParallel) can route too."""
        if depth is not None:
            return self.forward_routed(*inputs, depth=depth, scale=scale)
        return self.head(self.features(*inputs))

    def layer_groups(self) -> list[nn.Module]:
        """Group 1 (the output head) first, group K (nearest the input) last."""
        raise NotImplementedError

    def stages(self) -> list[Any]:
        """The forward pass as one callable per layer group, input first: stage i
        runs group K - i. The first takes the model's inputs, the others a tensor."""
        raise NotImplementedError

    # Whether every input tensor has the batch as its first dimension (vmap-able).
    batched_inputs = True

    def example_inputs(self, inputs: tuple[torch.Tensor, ...], i: int) -> tuple[torch.Tensor, ...]:
        """The inputs of example i alone, as a batch of one."""
        return tuple(t[i : i + 1] for t in inputs)

    def forward_routed(
        self, *inputs: torch.Tensor, depth: torch.Tensor, scale: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The logits of `forward`, with example i's gradient reaching groups
        1..depth[i] only: where its path enters a deeper group, it is stopped.

        With `scale` ([batch, K], 0 past each depth), example i's gradient is also
        rescaled at each boundary (`boundary_gains`), so that, once the caller
        multiplies its loss by scale[i, 0], group g's parameters get its gradient
        times scale[i, g-1]."""
        stages = self.stages()
        k = len(stages)
        gains = None if scale is None else boundary_gains(scale)
        h = stages[0](*inputs)
        for i in range(1, k):
            # `h` came out of group k - i + 1: examples routed no deeper than k - i stop here.
            through = depth > k - i
            if gains is not None:
                through = gains[:, k - i - 1] * through
            h = route(h, through)
            h = stages[i](h)
        return h  # type: ignore[no-any-return]


def _block(d_in: int, d_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_out), nn.ReLU(), nn.Dropout(dropout))


class MLP(GroupedModel):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        h1, h2 = spec.hidden
        self.input = _block(spec.input_dim, h1, spec.dropout)
        self.hidden = _block(h1, h2, spec.dropout)
        self.head = nn.Linear(h2, len(spec.classes))

    def features(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.hidden(self.input(inputs[0]))

    def layer_groups(self) -> list[nn.Module]:
        return [self.head, self.hidden, self.input]

    def stages(self) -> list[Any]:
        return [self.input, self.hidden, self.head]


class TextHash(GroupedModel):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        h1, h2 = spec.hidden
        self.bag = nn.EmbeddingBag(spec.buckets, h1, mode="sum")
        self.bag_act = nn.Sequential(nn.ReLU(), nn.Dropout(spec.dropout))
        self.hidden = _block(h1, h2, spec.dropout)
        self.head = nn.Linear(h2, len(spec.classes))

    def features(self, *inputs: torch.Tensor) -> torch.Tensor:
        indices, offsets, weights = inputs
        return self.hidden(self.bag_act(self.bag(indices, offsets, per_sample_weights=weights)))

    def layer_groups(self) -> list[nn.Module]:
        return [self.head, self.hidden, self.bag]

    def stages(self) -> list[Any]:
        def embed(indices: torch.Tensor, offsets: torch.Tensor, weights: torch.Tensor) -> Any:
            return self.bag_act(self.bag(indices, offsets, per_sample_weights=weights))

        return [embed, self.hidden, self.head]

    batched_inputs = False  # a flat bag of token ids with offsets

    def example_inputs(self, inputs: tuple[torch.Tensor, ...], i: int) -> tuple[torch.Tensor, ...]:
        indices, offsets, weights = inputs
        start = int(offsets[i])
        stop = int(offsets[i + 1]) if i + 1 < len(offsets) else len(indices)
        return (
            indices[start:stop],
            torch.zeros(1, dtype=offsets.dtype),
            weights[start:stop],
        )


class CNN(GroupedModel):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        h1, h2 = spec.hidden
        self.conv1 = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.conv2 = nn.Sequential(
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten()
        )
        self.hidden = _block(32 * 16, h2, spec.dropout)
        self.head = nn.Linear(h2, len(spec.classes))
        del h1

    def features(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.hidden(self.conv2(self.conv1(inputs[0])))

    def layer_groups(self) -> list[nn.Module]:
        return [self.head, self.hidden, self.conv2, self.conv1]

    def stages(self) -> list[Any]:
        return [self.conv1, self.conv2, self.hidden, self.head]


def build(spec: ModelSpec) -> GroupedModel:
    model: GroupedModel
    if spec.family == "mlp":
        model = MLP(spec)
    elif spec.family == "text-hash":
        model = TextHash(spec)
    else:
        model = CNN(spec)
    return model


# -- inputs -----------------------------------------------------------------------------------


def text_tokens(text: str, buckets: int) -> list[int]:
    """Hashed word unigrams and bigrams of a text (stable across processes)."""
    words = _WORD.findall(text.lower())
    grams = words + [f"{a} {b}" for a, b in pairwise(words)]
    return [zlib.crc32(g.encode()) % buckets for g in grams] or [0]


def _image(content: common_pb2.ItemContent, size: int) -> np.ndarray:  # type: ignore[type-arg]
    from PIL import Image, UnidentifiedImageError

    image = content.image
    try:
        if image.png:
            raw = Image.open(io.BytesIO(image.png))
        else:
            uri = image.uri.removeprefix("file://")
            if "://" in uri:
                raise InputError(f"image uri {image.uri!r}: only local paths and file:// load")
            raw = Image.open(Path(uri))
        gray = raw.convert("L").resize((size, size))
    except (OSError, UnidentifiedImageError) as exc:
        raise InputError(f"image cannot be decoded: {exc}") from None
    return np.asarray(gray, dtype=np.float32) / 255.0


def featurize(
    spec: ModelSpec, contents: Sequence[common_pb2.ItemContent]
) -> tuple[torch.Tensor, ...]:
    """Model inputs for a batch of item contents; InputError names the first bad one."""
    want = MODALITY[spec.family]
    for i, content in enumerate(contents):
        kind = content.WhichOneof("kind")
        if kind != want:
            raise InputError(
                f"item {i}: a {spec.family} model takes {want}, this item has {kind or 'nothing'}"
            )
    if spec.family == "mlp":
        lengths = {len(c.features.values) for c in contents}
        if lengths - {spec.input_dim}:
            bad = next(
                i for i, c in enumerate(contents) if len(c.features.values) != spec.input_dim
            )
            raise InputError(
                f"item {bad}: the model takes {spec.input_dim} feature values, "
                f"this item has {len(contents[bad].features.values)}"
            )
        matrix = np.array([c.features.values for c in contents], dtype=np.float32)
        if not np.isfinite(matrix).all():
            raise InputError("feature values must be finite")
        return (torch.from_numpy(matrix.reshape(len(contents), spec.input_dim)),)
    if spec.family == "text-hash":
        tokens = [text_tokens(c.text, spec.buckets) for c in contents]
        offsets = np.cumsum([0] + [len(t) for t in tokens[:-1]])
        indices = np.fromiter((i for t in tokens for i in t), dtype=np.int64)
        weights = np.concatenate([np.full(len(t), 1.0 / np.sqrt(len(t))) for t in tokens])
        return (
            torch.from_numpy(indices),
            torch.from_numpy(offsets.astype(np.int64)),
            torch.from_numpy(weights.astype(np.float32)),
        )
    images = np.stack([_image(c, spec.image_size) for c in contents])
    return (torch.from_numpy(images[:, None, :, :]),)
