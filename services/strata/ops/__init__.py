"""Operations tooling: deployment manifests."""
