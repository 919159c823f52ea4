"""Generated protobuf and gRPC code for strata.v1 (`make protos`; never edit by hand)."""
