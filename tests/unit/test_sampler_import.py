"""The import's pure parts: chunk preparation, spliced announcements, the pipeline."""

from __future__ import annotations

import random
import re
import struct
import threading
import uuid

import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from PIL import Image
from strata.common import outbox, wire
from strata.common.topics import ITEMS_IMPORTED
from strata.sampler.announce import (
    CHUNK_BYTES,
    CHUNK_ITEMS,
    Announcement,
    announcements,
    outbox_rows,
)
from strata.sampler.dedup import MinHasher, NearDuplicateIndex, image_vector, normalize_text
from strata.sampler.pool import (
    Importer,
    ImportPipeline,
    ImportSummary,
    PreparedChunk,
    _decide,
    prepare_chunk,
)
from strata.v1 import common_pb2, events_pb2, sampler_pb2

from tests.pictures import picture, png_of, reencoded


def _fields(row: bytes) -> list[bytes | None]:
    """A binary COPY row back into its fields (None for NULL)."""
    (count,) = struct.unpack_from(">h", row)
    at, out = 2, []
    for _ in range(count):
        (size,) = struct.unpack_from(">i", row, at)
        at += 4
        if size < 0:
            out.append(None)
        else:
            out.append(row[at : at + size])
            at += size
    assert at == len(row)
    return out


ROWS = [
    sampler_pb2.ImportRow(line=1, content=common_pb2.ItemContent(text="Plain text, nothing else")),
    sampler_pb2.ImportRow(
        line=2,
        external_id="ext-2",
        content=common_pb2.ItemContent(text="ünïcødé " * 40),
        metadata={"source": "crawl", "lang": "de"},
    ),
    sampler_pb2.ImportRow(
        line=3,
        content=common_pb2.ItemContent(features=common_pb2.FeatureVector(values=[0.5] * 64)),
        gold_answer="cat",
    ),
    sampler_pb2.ImportRow(
        line=4, content=common_pb2.ItemContent(image=common_pb2.Image(png=png_of(picture(3))))
    ),
]


def test_announcements_are_the_messages_the_protobuf_api_builds() -> None:
    ids = [uuid.uuid4().hex for _ in ROWS]
    digests = [f"{i:064x}" for i in range(len(ROWS))]
    contents = [r.content.SerializeToString() for r in ROWS]
    before = Timestamp()
    before.GetCurrentTime()
    encoded = announcements("proj", ids, ROWS, digests, contents)
    (row_bytes,) = outbox_rows("proj", encoded)  # a handful of items: one message
    event_id, topic, key, event_type, schema, trace_id, payload, bulk = _fields(row_bytes)
    assert bulk == b"\x01"  # published after every other waiting event
    assert uuid.UUID(bytes=event_id).version == 4
    assert topic == ITEMS_IMPORTED.name.encode()
    assert event_type == ITEMS_IMPORTED.event_type.encode()
    assert schema == ITEMS_IMPORTED.schema.encode()
    assert key == ids[0].encode()  # keyed by the first item, continuing its trace
    chunk = events_pb2.ItemsImported.FromString(payload)
    assert trace_id.decode() == chunk.items[0].routing.trace_id
    assert chunk.routing == common_pb2.RoutingMetadata(
        source_service="sampler", project="proj", trace_id=trace_id.decode()
    )
    assert [a.item_id for a in encoded] == ids
    traces = set()
    for row, item_id, digest, got, announced in zip(
        ROWS, ids, digests, chunk.items, encoded, strict=True
    ):
        assert events_pb2.ItemImported.FromString(announced.payload) == got
        assert got.item.imported_at.ToNanoseconds() >= before.ToNanoseconds()
        reference = events_pb2.ItemImported(
            routing=common_pb2.RoutingMetadata(
                trace_id=got.routing.trace_id,
                source_service="sampler",
                project="proj",
                reason=common_pb2.ROUTING_REASON_GOLD if row.gold_answer else None,
            ),
            item=common_pb2.Item(
                item_id=item_id,
                project="proj",
                content=row.content,
                metadata=dict(row.metadata),
                content_hash=digest,
                external_id=row.external_id,
                imported_at=got.item.imported_at,
            ),
            gold_answer=row.gold_answer,
        )
        assert got == reference
        traces.add(got.routing.trace_id)
    assert len(traces) == len(ROWS)  # each item starts its own trace


def test_announcements_travel_in_chunks_of_bounded_items_and_bytes() -> None:
    def announced(n: int, size: int) -> list[Announcement]:
        return [
            Announcement(
                f"i{k}",
                events_pb2.ItemImported(
                    routing=common_pb2.RoutingMetadata(trace_id=f"t{k}"),
                    item=common_pb2.Item(item_id=f"i{k}", content_hash="x" * size),
                ).SerializeToString(),
            )
            for k in range(n)
        ]

    def chunks(rows: list[bytes]) -> list[list[str]]:
        out = []
        for raw in rows:
            fields = _fields(raw)
            items = events_pb2.ItemsImported.FromString(fields[6]).items
            assert fields[2] == items[0].item.item_id.encode()  # keyed by its first item
            assert fields[5] == items[0].routing.trace_id.encode()
            out.append([i.item.item_id for i in items])
        return out

    assert outbox_rows("p", []) == []
    small = chunks(outbox_rows("p", announced(2 * CHUNK_ITEMS + 3, 10)))
    assert [len(c) for c in small] == [CHUNK_ITEMS, CHUNK_ITEMS, 3]
    assert [i for c in small for i in c] == [f"i{k}" for k in range(2 * CHUNK_ITEMS + 3)]
    # Items of 100 kB: two to a message at most; one larger than a message goes alone.
    big = announced(5, 100_000) + announced(1, 300_000)
    rows = outbox_rows("p", big)
    assert [len(c) for c in chunks(rows)] == [2, 2, 1, 1]
    assert all(len(_fields(r)[6] or b"") <= CHUNK_BYTES for r in rows[:3])


def test_wire_pieces() -> None:
    assert wire.varint(0) == b"\x00" and wire.varint(127) == b"\x7f"
    assert wire.varint(300) == b"\xac\x02" and wire.varint(2**32) == b"\x80\x80\x80\x80\x10"
    assert wire.length_delimited(2, b"") == b""
    assert common_pb2.Item.FromString(wire.length_delimited(1, b"abc")).item_id == "abc"
    assert common_pb2.Item.FromString(wire.tag(1) + wire.varint(200) + b"x" * 200).item_id == (
        "x" * 200
    )


def test_prepare_reports_bad_rows_by_line_and_keeps_the_good() -> None:
    rows = [
        *ROWS,
        sampler_pb2.ImportRow(line=9, content=common_pb2.ItemContent(text="   ")),
        sampler_pb2.ImportRow(line=10),
    ]
    chunk = prepare_chunk("p", rows, MinHasher(), bands=16)
    assert chunk.received == 6
    assert [r.line for r in chunk.rows] == [1, 2, 3, 4]
    assert chunk.errors == [
        (9, "text is empty"),
        (10, "no content: give text, features or an image"),
    ]
    assert chunk.kinds == ["text", "text", "features", "image"]
    assert chunk.texts.signatures.shape == (2, 64) and chunk.band_keys.shape == (2, 16)
    assert len(chunk.texts.shingles) == 2
    assert list(chunk.vectors) == [2] and chunk.vectors[2].shape == (64,)
    assert len(set(chunk.item_ids)) == 4 and len(chunk.announcements) == 4


def test_normalize_text_fast_path_agrees_with_the_word_regex() -> None:
    words = re.compile(r"\w+", re.UNICODE)
    rng = random.Random(5)
    alphabet = [chr(c) for c in range(128)] + list("éßİ\u0131KΣς汉\u00a0\u2003٣")
    for _ in range(20_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 25)))
        assert normalize_text(text) == " ".join(words.findall(text.lower())), repr(text)


class _RecordingImporter:
    """Stores chunks by number; fails on the chunk numbered `fail_on`."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.fail_on = fail_on
        self.stored: list[int] = []
        self.chunks: list[list[int]] = []
        self.threads: set[str] = set()

    def prepare(self, project: str, rows: list) -> PreparedChunk:  # type: ignore[type-arg]
        return rows  # type: ignore[return-value]

    def store(self, chunk: list, summary: ImportSummary) -> None:  # type: ignore[type-arg]
        self.threads.add(threading.current_thread().name)
        if chunk[0] == self.fail_on:
            raise RuntimeError(f"chunk {chunk[0]} failed")
        self.stored.append(chunk[0])
        self.chunks.append(list(chunk))
        summary.imported += len(chunk)


def test_pipeline_stores_every_chunk_in_order_in_its_writer_thread() -> None:
    importer = _RecordingImporter()
    summary = ImportSummary()
    with ImportPipeline(importer, summary) as pipeline:  # type: ignore[arg-type]
        for n in range(20):
            pipeline.submit("p", [n])
    assert importer.stored == list(range(20)) and summary.imported == 20
    assert importer.threads == {"import-writer"}


def test_a_failed_chunk_fails_the_stream_and_nothing_after_it_is_stored() -> None:
    importer = _RecordingImporter(fail_on=3)
    with (
        pytest.raises(RuntimeError, match="chunk 3 failed"),
        ImportPipeline(importer, ImportSummary()) as pipeline,  # type: ignore[arg-type]
    ):
        for n in range(50):
            pipeline.submit("p", [n])
    assert importer.stored == [0, 1, 2]


def test_when_the_caller_fails_what_it_submitted_is_still_stored() -> None:
    importer = _RecordingImporter()
    with (
        pytest.raises(KeyError),
        ImportPipeline(importer, ImportSummary()) as pipeline,  # type: ignore[arg-type]
    ):
        for n in range(5):
            pipeline.submit("p", [n])
        raise KeyError("the client's stream broke")
    assert importer.stored == [0, 1, 2, 3, 4]


def test_rows_are_gathered_into_chunks_whatever_the_request_size() -> None:
    importer = _RecordingImporter()
    summary = ImportSummary()
    with ImportPipeline(importer, summary, chunk_rows=5) as pipeline:  # type: ignore[arg-type]
        for n in range(12):
            pipeline.submit("p", [n])
        pipeline.submit("p", list(range(12, 20)))
        pipeline.submit("p", [20, 21])  # the rest goes at the end
    assert importer.chunks == [
        [0, 1, 2, 3, 4],
        [5, 6, 7, 8, 9],
        list(range(10, 20)),
        [20, 21],
    ]
    assert summary.imported == 22


def _cosine(a: np.ndarray, b: np.ndarray) -> float:  # type: ignore[type-arg]
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_image_vectors_of_altered_copies_stay_close_and_of_other_pictures_do_not() -> None:
    rng = np.random.default_rng(0)
    for seed in range(20):
        pixels = picture(seed)
        original = image_vector(png_of(pixels))
        assert original is not None and original.shape == (256,)
        smaller = np.asarray(Image.fromarray(pixels).resize((50, 37), Image.Resampling.LANCZOS))
        jpeg = reencoded(pixels)
        brighter = np.clip(pixels.astype(np.int16) + 25, 0, 255).astype(np.uint8)
        noisy = np.clip(pixels + rng.normal(0, 4, pixels.shape), 0, 255).astype(np.uint8)
        rgb = np.stack([pixels] * 3, axis=-1)
        for copy in (smaller, jpeg, brighter, noisy, rgb):
            near = image_vector(png_of(copy))
            assert near is not None and _cosine(original, near) >= 0.97, seed
        for other in range(20, 40):
            far = image_vector(png_of(picture(other)))
            assert far is not None and _cosine(original, far) < 0.9, (seed, other)


def test_a_flat_image_has_no_vector_and_a_broken_one_is_an_error() -> None:
    assert image_vector(png_of(np.full((20, 30), 128, dtype=np.uint8))) is None
    with pytest.raises(ValueError, match="image does not decode"):
        image_vector(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)


def test_prepare_rejects_an_undecodable_png_and_keys_the_good_ones() -> None:
    good = sampler_pb2.ImportRow(
        line=1, content=common_pb2.ItemContent(image=common_pb2.Image(png=png_of(picture(1))))
    )
    flat = sampler_pb2.ImportRow(
        line=2,
        content=common_pb2.ItemContent(
            image=common_pb2.Image(png=png_of(np.zeros((8, 8), np.uint8)))
        ),
    )
    broken = sampler_pb2.ImportRow(
        line=3, content=common_pb2.ItemContent(image=common_pb2.Image(png=b"\x89PNG broken"))
    )
    by_uri = sampler_pb2.ImportRow(
        line=4, content=common_pb2.ItemContent(image=common_pb2.Image(uri="file:///x.png"))
    )
    chunk = prepare_chunk("p", [good, flat, broken, by_uri], MinHasher(), bands=16)
    assert [r.line for r in chunk.rows] == [1, 2, 4]
    assert [line for line, _ in chunk.errors] == [3]
    assert chunk.errors[0][1].startswith("image does not decode")
    assert list(chunk.thumbnails) == [0]  # the flat one and the uri one: exact only
    assert chunk.thumbnails[0].shape == (256,)


def test_the_importer_reports_to_the_activity_the_relay_gives_way_to() -> None:
    """An idle Activity is falsy: the importer must keep the one it is given, or the
    outbox relay never knows an import runs and competes with it."""
    activity = outbox.Activity()
    importer = Importer(None, activity=activity)  # type: ignore[arg-type]
    assert importer.activity is activity
    with importer.activity.running():
        assert activity
    assert not activity


def test_feature_vectors_of_two_lengths_are_deduplicated_each_among_their_own() -> None:
    """A chunk mixing vector lengths imports (it used to fail); a rescaled, slightly
    noisy copy is linked to its original of the same length."""
    rng = np.random.default_rng(2)
    originals = [*rng.normal(size=(20, 8)), *rng.normal(size=(20, 32))]
    copies = [v * 2 + rng.normal(scale=0.01, size=v.shape) for v in originals[::5]]
    rows = [
        sampler_pb2.ImportRow(
            line=line,
            content=common_pb2.ItemContent(features=common_pb2.FeatureVector(values=v.tolist())),
        )
        for line, v in enumerate([*originals, *copies], start=1)
    ]
    index, summary = NearDuplicateIndex(), ImportSummary()
    chunk = prepare_chunk("p", rows, index.hasher, index.bands)
    stored = list(_decide(chunk, index, {}, [], summary))
    assert (summary.imported, summary.near_duplicates) == (40, 8)
    ids = [item.item_id for item in stored]
    assert [item.canonical_item_id for item in stored[40:]] == ids[:40:5]
    assert len(index.features(8)) == len(index.features(32)) == 20
