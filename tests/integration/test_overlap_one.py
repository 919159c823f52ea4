"""Overlap 1 without gold, on a real sampler, gateway and quality: where items labelled
once go, and whether the counts say so."""

from __future__ import annotations

import random
import uuid

from strata.common.channels import with_metadata
from strata.common.embedded import free_port
from strata.quality.__main__ import build as build_quality
from strata.quality.config import QualityConfig
from strata.sampler.__main__ import build as build_sampler
from strata.sampler.config import SamplerConfig
from strata.v1 import (
    common_pb2,
    gateway_pb2,
    quality_pb2,
    quality_pb2_grpc,
    sampler_pb2,
    sampler_pb2_grpc,
)

from tests.pki import client_channel

from .conftest import Infra, service_config, wait_until
from .gateway_support import contract_doc, gateway_settings, start_gateway
from .test_gateway import next_task, submit
from .test_sampler import import_rows, text_rows


def test_items_labelled_once_wait_for_an_expert_and_every_count_says_so(infra: Infra) -> None:
    """With one vote an item's posterior under quality's prior (0.7, the vote's class) stays
    under the contract's threshold (0.8) and overlap.max allows no second vote: quality
    sends every item to an expert; it asks for no more votes. The sampler shows the items
    in review (not in flight, where an expiring lease would hand them out again), the
    gateway shows them waiting for review (not completed); the experts' answers label them
    and the counts follow."""
    gateway_port = free_port()
    sampler = build_sampler(
        service_config(infra, "sampler"),
        SamplerConfig(gateway_address=f"127.0.0.1:{gateway_port}"),
    )
    sampler_address = f"127.0.0.1:{sampler.start().grpc_port}"
    gw = start_gateway(
        service_config(infra, "gateway", grpc_port=gateway_port), gateway_settings(sampler_address)
    )
    quality = build_quality(
        service_config(infra, "quality"),
        QualityConfig(
            gateway_address=f"127.0.0.1:{gateway_port}",
            estimate_interval_s=3600.0,
            label_error_interval_s=3600.0,
            auth_cache_s=0.0,
            contract_wait_s=3.0,
        ),
    )
    quality_channel = client_channel(f"127.0.0.1:{quality.start().grpc_port}")
    sampler_channel = with_metadata(client_channel(sampler_address), gw.admin)
    try:
        project = f"o{uuid.uuid4().hex[:8]}"
        gw.load_contract(
            contract_doc(project, overlap="{min: 1, max: 1}", gold="{rate: 0}")
        )  # consensus_threshold: 0.8 (the default)
        pool = sampler_pb2_grpc.SamplerStub(sampler_channel)
        rows = [
            sampler_pb2.ImportRow(line=i + 1, content=common_pb2.ItemContent(text=text))
            for i, text in enumerate(text_rows(6, random.Random(3)))
        ]
        assert import_rows(pool, project, rows).imported == 6
        annotator = gw.annotator(f"a-{project}", project=project)
        expert = gw.annotator(f"e-{project}", common_pb2.ROLE_REVIEWER, project)
        items = []
        for _ in range(6):
            task = next_task(gw, annotator, project, wait_s=30)
            submit(gw, annotator, task.task_id, "cat")
            items.append(task.item_id)
        assert len(set(items)) == 6

        def queue() -> gateway_pb2.QueueStatsResponse:
            return gw.stub.QueueStats(
                gateway_pb2.QueueStatsRequest(project=project), metadata=gw.admin
            )

        def by_state() -> dict[str, int]:
            reply = pool.PoolStats(sampler_pb2.PoolStatsRequest(project=project, counts_only=True))
            return dict(reply.items_by_state)

        wait_until(lambda: by_state() == {"review": 6}, 30, "the sampler to show 6 in review")
        wait_until(
            lambda: dict(queue().items_by_state) == {"review": 6}, 30, "the gateway to say review"
        )
        stats = queue()
        assert (stats.completed, stats.review_tasks, stats.labels_total) == (0, 6, 6)
        # No second vote was asked for: each item's label unit still wants one annotator.
        with gw.runtime.db.transaction() as conn:
            targets = conn.execute(
                "SELECT DISTINCT target FROM units WHERE project = %s AND kind = 'label'",
                (project,),
            ).fetchall()
        assert targets == [(1,)]
        reports = quality_pb2_grpc.QualityStub(quality_channel)
        consensus = reports.ItemConsensus(
            quality_pb2.ItemConsensusRequest(item_id=items[0]), metadata=gw.admin
        )
        assert consensus.review.kind == "expert"
        assert consensus.consensus.consensus_score < 0.8
        assert consensus.consensus.status == common_pb2.CONSENSUS_STATUS_NEEDS_REVIEW

        # The expert answers each: every item is labeled, and the counts follow.
        for _ in range(6):
            task = next_task(gw, expert, project, wait_s=30)
            assert task.review
            submit(gw, expert, task.task_id, "dog")
        wait_until(lambda: by_state() == {"labeled": 6}, 30, "the sampler to label all 6")
        wait_until(lambda: queue().completed == 6, 30, "the gateway to complete all 6")
        assert dict(queue().items_by_state) == {"completed": 6}
        assert queue().review_tasks == 0
    finally:
        sampler_channel.close()
        quality_channel.close()
        quality.stop(grace_s=1.0)
        gw.channel.close()
        gw.runtime.stop(grace_s=1.0)
        sampler.stop(grace_s=1.0)
