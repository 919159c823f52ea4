"""A run's progress from Ray (Train's controller or a warm actor) into the run's row."""

from __future__ import annotations

from typing import Any

import psycopg

from strata.training import store


class Progress:
    """Ray Train callback (runs in Ray's controller): each epoch's progress into the run's row."""

    def __init__(self, dsn: str, schema: str, run_id: str) -> None:
        self.dsn, self.schema, self.run_id = dsn, schema, run_id

    def after_report(
        self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any
    ) -> None:
        if not metrics:
            return
        samples = sum(int(m.get("samples", 0)) for m in metrics)
        seconds = max(float(m.get("seconds", 0.0)) for m in metrics) or 1e-9
        with psycopg.connect(self.dsn, options=f"-c search_path={self.schema},public") as conn:
            store.record_progress(
                conn,
                self.run_id,
                int(metrics[0]["epoch"]),
                samples,
                samples / seconds,
                any(bool(m.get("resumed")) for m in metrics),
            )


def progress_callback(dsn: str, schema: str, run_id: str) -> Any:
    from ray.train import UserCallback

    class _Callback(UserCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.progress = Progress(dsn, schema, run_id)

        def after_report(self, run_context: Any, metrics: Any, checkpoint: Any) -> None:
            self.progress.after_report(run_context, metrics, checkpoint)

    return _Callback()
