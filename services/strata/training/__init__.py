"""The training service: governed training on Ray, the influence ledger, feedback."""
