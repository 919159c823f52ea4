"""Model families: layer groups, inputs, and the artifact format."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from strata.models import artifact
from strata.models.artifact import ArtifactError
from strata.models.families import InputError, ModelSpec, build, featurize
from strata.v1 import common_pb2

CLASSES = ["a", "b", "c"]


def png(size: int, value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size, size), value, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def contents(family: str, n: int) -> list[common_pb2.ItemContent]:
    rng = np.random.default_rng(0)
    if family == "mlp":
        return [
            common_pb2.ItemContent(features=common_pb2.FeatureVector(values=rng.normal(size=8)))
            for _ in range(n)
        ]
    if family == "text-hash":
        return [common_pb2.ItemContent(text=f"item number {i} is here") for i in range(n)]
    return [common_pb2.ItemContent(image=common_pb2.Image(png=png(12, 10 * i))) for i in range(n)]


@pytest.mark.parametrize("family", ["mlp", "text-hash", "cnn"])
def test_every_parameter_is_in_exactly_one_layer_group_and_logits_have_the_right_shape(
    family: str,
) -> None:
    spec = ModelSpec(family, CLASSES, input_dim=8, image_size=12, buckets=1024)
    model = build(spec)
    grouped = [p for g in model.layer_groups() for p in g.parameters()]
    assert len(grouped) == len(list(model.parameters()))
    assert {id(p) for p in grouped} == {id(p) for p in model.parameters()}
    assert model.layer_groups()[0] is model.head  # group 1 is the output head
    x = featurize(spec, contents(family, 5))
    model.eval()
    assert model(*x).shape == (5, 3)
    assert model.features(*x).shape == (5, spec.hidden[1])


def test_inputs_of_the_wrong_modality_or_shape_are_refused_with_the_item() -> None:
    spec = ModelSpec("mlp", CLASSES, input_dim=8)
    with pytest.raises(InputError, match="item 1: a mlp model takes features, this item has text"):
        featurize(spec, [*contents("mlp", 1), common_pb2.ItemContent(text="hi")])
    short = common_pb2.ItemContent(features=common_pb2.FeatureVector(values=[1.0, 2.0]))
    with pytest.raises(InputError, match="takes 8 feature values, this item has 2"):
        featurize(spec, [short])
    cnn = ModelSpec("cnn", CLASSES, image_size=12)
    bad = common_pb2.ItemContent(image=common_pb2.Image(png=b"\x89PNG not really"))
    with pytest.raises(InputError, match="cannot be decoded"):
        featurize(cnn, [bad])


def test_spec_validation() -> None:
    with pytest.raises(ValueError, match="unknown model family"):
        ModelSpec("transformer", CLASSES)
    with pytest.raises(ValueError, match="two or more distinct classes"):
        ModelSpec("mlp", ["a"], input_dim=2)
    with pytest.raises(ValueError, match="input_dim"):
        ModelSpec("mlp", CLASSES)


def test_artifact_round_trip_and_refusals() -> None:
    spec = ModelSpec("mlp", CLASSES, input_dim=8)
    torch.manual_seed(0)
    model = build(spec)
    raw = artifact.dumps(spec, model, {"trained_on": 12})
    loaded = artifact.loads(raw)
    assert loaded.spec == spec and loaded.meta == {"trained_on": 12}
    x = featurize(spec, contents("mlp", 4))
    model.eval()
    assert torch.equal(model(*x), loaded.model(*x))
    with pytest.raises(ArtifactError, match="not a loadable"):
        artifact.loads(raw[: len(raw) // 2])
    # A pickle that would run code is refused by the weights-only loader.
    with pytest.raises(ArtifactError):
        artifact.loads(pickle.dumps(Exploit(), protocol=2))
    other = artifact.dumps(
        ModelSpec("mlp", CLASSES, input_dim=9), build(ModelSpec("mlp", CLASSES, input_dim=9))
    )
    blob = torch.load(io.BytesIO(other), weights_only=True)
    blob["spec"]["input_dim"] = 8  # weights no longer fit the spec
    buf = io.BytesIO()
    torch.save(blob, buf)
    with pytest.raises(ArtifactError, match="does not match"):
        artifact.loads(buf.getvalue())


class Exploit:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (print, ("this must never run",))


def test_file_artifacts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    uri = f"file://{tmp_path}/models/m1.pt"
    artifact.write(uri, b"bytes")
    assert artifact.read(uri) == b"bytes"
    with pytest.raises(ArtifactError, match="cannot read"):
        artifact.read(f"file://{tmp_path}/missing.pt")
    with pytest.raises(ArtifactError, match="use file:// or s3://"):
        artifact.read("http://example.invalid/m.pt")
