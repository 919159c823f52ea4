"""Annotation gateway: the annotators' door (tasks, gold, leases, labels, auth)."""
