"""The contracts: generated code matches the protos, and the v1 API is complete."""

from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from strata.common.protogen import OUT_ROOT, generate, proto_files
from strata.v1 import (
    common_pb2,
    events_pb2,
    gateway_pb2,
    inference_pb2,
    quality_pb2,
    sampler_pb2,
    training_pb2,
)


def test_committed_generated_code_matches_protos(tmp_path: Path) -> None:
    written = generate(tmp_path)
    assert written, "protoc wrote nothing"
    drifted = []
    for fresh in written:
        rel = fresh.relative_to(tmp_path)
        committed = OUT_ROOT / rel
        if not committed.exists() or committed.read_bytes() != fresh.read_bytes():
            drifted.append(str(rel))
    assert not drifted, f"run `make protos` and commit: out of date: {drifted}"


def test_no_generated_file_without_a_proto() -> None:
    expected = {p.stem for p in proto_files()}
    generated = {p.name.split("_pb2")[0] for p in (OUT_ROOT / "strata" / "v1").glob("*_pb2*.py")}
    assert generated == expected


REQUIRED_RPCS = {
    sampler_pb2: ("Sampler", {"ImportItems", "NextBatch", "PoolStats"}),
    gateway_pb2: (
        "AnnotationGateway",
        {
            "NextTask",
            "SubmitLabel",
            "SkipTask",
            "GetContract",
            "LoadContract",
            "IssueToken",
            "CreateAnnotator",
        },
    ),
    inference_pb2: ("Inference", {"Predict", "ModelInfo"}),
    quality_pb2: (
        "Quality",
        {"ItemConsensus", "AnnotatorScores", "AgreementReport", "ResolveReview", "DatasetReport"},
    ),
    training_pb2: ("Training", {"StartRun", "GetRun", "TraceInfluence", "DepthProfile"}),
}


@pytest.mark.parametrize("module", list(REQUIRED_RPCS), ids=lambda m: m.__name__)
def test_service_has_the_design_rpcs_each_with_its_own_messages(module) -> None:
    name, required = REQUIRED_RPCS[module]
    service = module.DESCRIPTOR.services_by_name[name]
    methods = {m.name: m for m in service.methods}
    assert required <= set(methods), f"{name} lacks {required - set(methods)}"
    for m in methods.values():
        assert m.input_type.name == f"{m.name}Request", m.full_name
        assert m.output_type.name == f"{m.name}Response", m.full_name


def test_every_event_carries_routing_metadata() -> None:
    for msg in events_pb2.DESCRIPTOR.message_types_by_name.values():
        if msg.name == "DeadLetter" or msg.name == "GoldLogits":
            continue  # a wrapper of another event / a nested value type
        field = msg.fields_by_name.get("routing")
        assert field is not None, f"{msg.name} has no routing field"
        assert field.message_type is common_pb2.RoutingMetadata.DESCRIPTOR


def test_routing_reasons_cover_the_design() -> None:
    names = {
        v.name.removeprefix("ROUTING_REASON_") for v in common_pb2.RoutingReason.DESCRIPTOR.values
    }
    assert {
        "UNCERTAINTY",
        "DIVERSITY",
        "RARE_CLASS",
        "DEPTH_FEEDBACK",
        "RANDOM_QA",
        "GOLD",
        "OVERLAP",
        "REVIEW",
        "RELABEL",
    } <= names


def test_annotator_task_cannot_reveal_gold() -> None:
    fields = {f.name for f in gateway_pb2.Task.DESCRIPTOR.fields}
    assert not {"routing", "gold", "gold_answer", "reason"} & fields


def test_descriptors_build_a_valid_file_set() -> None:
    fds = descriptor_pb2.FileDescriptorSet()
    for module in (common_pb2, events_pb2, *REQUIRED_RPCS):
        module.DESCRIPTOR.CopyToProto(fds.file.add())
    assert {f.package for f in fds.file} == {"strata.v1"}
