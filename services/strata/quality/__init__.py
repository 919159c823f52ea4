"""Quality: consensus, agreement, gold scoring, review routing, dataset reports."""
