"""The model artifact: one file holding the spec and the weights, loaded without pickle code.

Artifacts are addressed by URI: `file://` (a shared volume) now; `s3://` goes
through boto3 when it is installed (the `s3` extra) and says so when it is not.
Loading uses `torch.load(weights_only=True)`: a tampered artifact can fail to
load, never run code.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from strata.models.families import GroupedModel, ModelSpec, build

FORMAT = "strata.model/1"


class ArtifactError(Exception):
    """An artifact that cannot be read or is not a Strata model."""


@dataclass
class LoadedModel:
    spec: ModelSpec
    model: GroupedModel
    meta: dict[str, Any]


def dumps(spec: ModelSpec, model: GroupedModel, meta: dict[str, Any] | None = None) -> bytes:
    buf = io.BytesIO()
    torch.save(
        {
            "format": FORMAT,
            "spec": spec.to_dict(),
            "meta": dict(meta or {}),
            "state_dict": model.state_dict(),
        },
        buf,
    )
    return buf.getvalue()


def loads(raw: bytes) -> LoadedModel:
    """A ready-to-serve model (eval mode, CPU) from artifact bytes."""
    try:
        blob = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a bad file
        raise ArtifactError(f"not a loadable model artifact (torch.load: {exc})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ArtifactError(f"not a {FORMAT} artifact")
    try:
        spec = ModelSpec.from_dict(dict(blob["spec"]))
        model = build(spec)
        model.load_state_dict(blob["state_dict"], strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ArtifactError(f"artifact does not match its model spec: {exc}") from None
    model.eval()
    return LoadedModel(spec, model, dict(blob.get("meta") or {}))


def read(uri: str) -> bytes:
    """The bytes an artifact URI points at."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        path = Path(parsed.path)
        try:
            return path.read_bytes()
        except OSError as exc:
            raise ArtifactError(f"cannot read {uri}: {exc.strerror}") from None
    if parsed.scheme == "s3":
        return _s3().get_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"))["Body"].read()  # type: ignore[no-any-return]
    raise ArtifactError(f"artifact uri {uri!r}: use file:// or s3://")


def write(uri: str, raw: bytes) -> None:
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        path = Path(parsed.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".part")
        tmp.write_bytes(raw)
        tmp.replace(path)  # readers never see half a file
        return
    if parsed.scheme == "s3":
        _s3().put_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"), Body=raw)
        return
    raise ArtifactError(f"artifact uri {uri!r}: use file:// or s3://")


def _s3() -> Any:
    try:
        import boto3  # type: ignore[import-not-found]
    except ImportError:
        raise ArtifactError("s3:// artifacts need boto3: pip install 'strata[s3]'") from None
    return boto3.client("s3")
