"""The sampler: owns the unlabeled pool, deduplicates it, ranks it, hands out batches."""
