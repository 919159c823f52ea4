-- A running run belongs to the process that claimed it (its host name: the pod's name on
-- Kubernetes) for as long as that process heartbeats it. A process that starts again
-- queues its own cut-off runs again at once; another process's run is queued again only
-- once its heartbeat has gone stale, so a replica that starts during a rollout no longer
-- takes a run that is still training elsewhere.
ALTER TABLE runs ADD COLUMN owner text, ADD COLUMN heartbeat_at timestamptz;
