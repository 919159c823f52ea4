"""Near-duplicate detection: precision and recall against brute force, and import speed.

1. Quality. 20,000 items each of texts, non-negative feature vectors and PNG images, a
   tenth of them planted near duplicates of an earlier item, deduplicated the way an
   import does it (chunks of 5,000, in order) at the contract's default thresholds
   (STRATA_SAMPLER_TEXT_DUP_THRESHOLD 0.8, ..._VECTOR_... 0.98, ..._IMAGE_... 0.97).
   Every decision is checked against brute force: a flagged item is a true positive
   when its exact similarity to the canonical item it was linked to passes the
   threshold (Jaccard of its word 3-gram shingles for text, cosine for vectors and
   thumbnails); an item kept as canonical is a miss when the exact similarity to any
   earlier canonical item passes it (every pair compared).
   - texts: sentences of Zipf-distributed words, copies with 1-3 word edits;
   - vectors: ReLU features (64 values, about 40% zeros) of a 32-d mixture of 10
     clusters, copies with additive or multiplicative noise, a few features zeroed, a
     rescale;
   - images: scikit-learn's bundled digits, upscaled to 32x32, turned, shifted and
     set on a gradient; copies brightened, noisy, rescaled or through JPEG.
2. Speed of the dedup path (hashing or signing, then the near-duplicate index) and of
   the import path without Postgres (`pool.prepare_chunk` and the per-row decisions)
   for 10k, 100k and 1M texts and vectors; with `--postgres N`, the sampler's real
   import path (`Importer`, binary COPY into an embedded Postgres) for N of each.

Prints a table and writes bench/results/dedup.json.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from harness import report
from numpy.typing import NDArray
from PIL import Image
from scipy import sparse
from sklearn.datasets import load_digits
from strata.common.db import Database, kit_migrations, load_migrations, migrate, package_migrations
from strata.common.embedded import EmbeddedPostgres, free_port
from strata.sampler.config import SamplerConfig
from strata.sampler.dedup import (
    MinHasher,
    NearDuplicateIndex,
    band_keys,
    image_vector,
    normalize_text,
    shingles,
)
from strata.sampler.pool import Importer, ImportSummary, _decide, prepare_chunk
from strata.sampler.vectors import unit_rows
from strata.v1 import common_pb2, sampler_pb2

CHUNK = 5_000
DIM = 64
Floats = NDArray[np.float32]


# -- data -----------------------------------------------------------------------------------


def _planted(n: int, rng: np.random.Generator, share: float = 0.1) -> NDArray[np.int64]:
    """For each item, the earlier item it copies, or -1 (about `share` are copies)."""
    source = (rng.random(n) * np.arange(n)).astype(np.int64)
    return np.where((rng.random(n) < share) & (np.arange(n) > 0), source, -1)


def texts(n: int, seed: int = 0) -> tuple[list[str], NDArray[np.int64]]:
    """Sentences of 8-40 Zipf-distributed words from a 20,000-word vocabulary; a tenth
    are copies of an earlier one with 1-3 words substituted, inserted or deleted, or
    its case changed."""
    rng = np.random.default_rng(seed)
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    picks = rng.integers(0, len(syllables), (20_000, 3))
    vocab = np.array(["".join(syllables[s] for s in p[: 2 + i % 2]) for i, p in enumerate(picks)])
    lengths = rng.integers(8, 41, n)
    words = vocab[np.minimum(rng.zipf(1.3, lengths.sum()), len(vocab)) - 1]
    ends = np.cumsum(lengths)
    out = [" ".join(words[e - k : e]) for e, k in zip(ends.tolist(), lengths.tolist(), strict=True)]
    source = _planted(n, rng)
    for i in np.flatnonzero(source >= 0).tolist():
        edited = out[source[i]].split()
        for _ in range(int(rng.integers(1, 4))):
            at = int(rng.integers(0, len(edited)))
            op = rng.integers(0, 4)
            if op == 0:
                edited[at] = str(vocab[rng.integers(0, len(vocab))])
            elif op == 1:
                edited.insert(at, str(vocab[rng.integers(0, len(vocab))]))
            elif op == 2 and len(edited) > 3:
                del edited[at]
            else:
                edited[at] = edited[at].upper()
        out[i] = " ".join(edited)
    return out, source


def relu_features(n: int, seed: int = 0) -> tuple[Floats, NDArray[np.int64]]:
    """Non-negative feature vectors: ReLU of a linear map of a 32-d mixture of 10
    Gaussian clusters (per-feature offsets, about 40% zeros); a tenth are copies of an
    earlier one with additive or multiplicative noise, 1-3 features zeroed, rescaled."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(DIM, 32)) / np.sqrt(32)
    offsets = rng.normal(0.3, 0.5, DIM)
    centres = rng.normal(size=(10, 32))
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(n, start + 100_000) - start
        latent = centres[rng.integers(0, 10, m)] + rng.normal(size=(m, 32))
        out[start : start + m] = np.maximum(0, latent @ weights.T + offsets)
    source = _planted(n, rng)
    copies = np.flatnonzero(source >= 0)
    original = out[source[copies]].astype(np.float64)
    scale = rng.uniform(0.02, 0.3, (len(copies), 1)) * original.std(axis=1, keepdims=True)
    noisy = np.maximum(0, original + rng.normal(size=original.shape) * scale)
    jitter = original * np.exp(
        rng.normal(size=original.shape) * rng.uniform(0.02, 0.2, (len(copies), 1))
    )
    copy = np.where(rng.random((len(copies), 1)) < 0.5, noisy, jitter)
    for row, drop in enumerate(rng.integers(0, 4, len(copies)).tolist()):
        copy[row, rng.integers(0, DIM, drop)] = 0
    out[copies] = copy * rng.uniform(0.5, 2.0, (len(copies), 1))
    return out, source


def _png(pixels: NDArray[np.uint8], fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def digit_images(n: int, seed: int = 0) -> tuple[list[bytes], NDArray[np.int64]]:
    """PNGs of scikit-learn's digits upscaled to 32x32, turned up to 15 degrees, shifted
    up to 3 pixels, on a random grey gradient; a tenth are copies of an earlier one
    brightened or darkened, with pixel noise, rescaled to 24-48 pixels or through JPEG."""
    rng = np.random.default_rng(seed)
    digits = load_digits().images  # 1,797 of 8x8, levels 0-16
    y, x = np.mgrid[0:32, 0:32].astype(np.float32) / 32
    pixels: list[NDArray[np.uint8]] = []
    for _ in range(n):
        glyph = Image.fromarray((digits[rng.integers(0, len(digits))] * 15).astype(np.uint8))
        glyph = glyph.resize((32, 32), Image.Resampling.BILINEAR).rotate(
            float(rng.uniform(-15, 15)), translate=tuple(rng.integers(-3, 4, 2).tolist())
        )
        ground = 20 + 60 * (rng.uniform(-1, 1) * x + rng.uniform(-1, 1) * y + 1)
        pixels.append(np.clip(ground + np.asarray(glyph), 0, 255).astype(np.uint8))
    source = _planted(n, rng)
    pngs = []
    for i, picture in enumerate(pixels):
        if source[i] < 0:
            pngs.append(_png(picture))
            continue
        copy = pixels[source[i]].astype(np.float32)
        copy += rng.uniform(-30, 30) + rng.normal(0, rng.uniform(1, 6), copy.shape)
        copy8 = np.clip(copy, 0, 255).astype(np.uint8)
        way = rng.integers(0, 3)
        if way == 0:
            side = int(rng.integers(24, 49))
            copy8 = np.asarray(
                Image.fromarray(copy8).resize((side, side), Image.Resampling.LANCZOS)
            )
        elif way == 1:
            copy8 = np.asarray(Image.open(io.BytesIO(_png(copy8, "JPEG"))))
        pngs.append(_png(copy8))
    return pngs, source


# -- quality against brute force --------------------------------------------------------------


def _decisions(
    index_of: Callable[[NearDuplicateIndex], object],
    keys: Callable[[int, int], object],
    n: int,
    hasher: MinHasher | None = None,
) -> NDArray[np.int64]:
    """Each item's canonical item as the index decides (-1: kept as canonical), in
    chunks of CHUNK as an import decides them."""
    index = NearDuplicateIndex(hasher=hasher or MinHasher())
    target = index_of(index)
    linked = np.full(n, -1, dtype=np.int64)
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        batch = target.prepare(*keys(start, stop))  # type: ignore[attr-defined]
        for i in range(stop - start):
            found = target.match(batch, i)  # type: ignore[attr-defined]
            if found is None:
                target.add(batch, i, str(start + i))  # type: ignore[attr-defined]
            else:
                linked[start + i] = int(found[0])
        target.commit(batch)  # type: ignore[attr-defined]
    return linked


def _score(
    linked: NDArray[np.int64],
    pair_similarity: Callable[[NDArray[np.int64], NDArray[np.int64]], NDArray[np.float64]],
    best_earlier: NDArray[np.float64],
    threshold: float,
    source: NDArray[np.int64],
) -> dict[str, object]:
    """Precision and recall of the decisions (`best_earlier`: each canonical item's
    highest exact similarity to an earlier canonical item, by brute force)."""
    flagged = np.flatnonzero(linked >= 0)
    similarity = pair_similarity(flagged, linked[flagged])
    right = similarity >= threshold
    missed = best_earlier >= threshold
    tp, fp, fn = int(right.sum()), int((~right).sum()), int(missed.sum())
    return {
        "items": len(linked),
        "planted": int((source >= 0).sum()),
        "near_duplicates_found": len(flagged),
        "true_positives": tp,
        "false_positives": fp,
        "missed": fn,
        "precision": round(tp / max(1, tp + fp), 4),
        "recall": round(tp / max(1, tp + fn), 4),
        # How far from the threshold the mistakes are (exact similarity).
        "false_positives_down_to": round(float(similarity[~right].min()), 4) if fp else None,
        "missed_up_to": round(float(best_earlier[missed].max()), 4) if fn else None,
    }


def _best_earlier_cosine(units: Floats, linked: NDArray[np.int64]) -> NDArray[np.float64]:
    """Each canonical item's highest cosine to an earlier canonical item (every pair)."""
    canonical = np.flatnonzero(linked < 0)
    kept = units[canonical].astype(np.float64)
    best = np.full(len(linked), -np.inf)
    for start in range(0, len(canonical), 2_000):
        block = canonical[start : start + 2_000]
        cosine = kept[start : start + 2_000] @ kept.T
        cosine[canonical[None, :] >= block[:, None]] = -np.inf
        best[block] = cosine.max(axis=1)
    return best


def _score_cosine(
    linked: NDArray[np.int64], vectors: Floats, threshold: float, source: NDArray[np.int64]
) -> dict[str, object]:
    """`_score` of vector-like decisions by their exact cosine."""
    units = unit_rows(vectors)
    return _score(
        linked,
        lambda a, b: np.einsum("ij,ij->i", units[a].astype(float), units[b].astype(float)),
        _best_earlier_cosine(units, linked),
        threshold,
        source,
    )


def quality_vectors(n: int, threshold: float) -> dict[str, object]:
    values, source = relu_features(n)
    started = time.perf_counter()
    linked = _decisions(lambda ix: ix.features(DIM), lambda a, b: (values[a:b],), n)
    seconds = time.perf_counter() - started
    return {
        **_score_cosine(linked, values, threshold, source),
        "items_per_s": round(n / seconds),
        "zeros_share": round(float((values == 0).mean()), 2),
    }


def quality_images(n: int, threshold: float) -> dict[str, object]:
    pngs, source = digit_images(n)
    started = time.perf_counter()
    thumbs = [image_vector(png) for png in pngs]
    assert all(t is not None for t in thumbs)
    stacked = np.stack(thumbs)  # type: ignore[arg-type]
    linked = _decisions(lambda ix: ix.images, lambda a, b: (stacked[a:b],), n)
    seconds = time.perf_counter() - started
    return {
        **_score_cosine(linked, stacked, threshold, source),
        "items_per_s_with_png_decoding": round(n / seconds),
    }


def quality_texts(n: int, threshold: float, num_perm: int = 64) -> dict[str, object]:
    items, source = texts(n)
    hasher = MinHasher(num_perm=num_perm)
    started = time.perf_counter()
    keys = hasher.keys_of_normalized([normalize_text(t) for t in items])
    signatures = keys.signatures
    linked = _decisions(lambda ix: ix.text, lambda a, b: (keys.slice(a, b),), n, hasher)
    seconds = time.perf_counter() - started
    # Exact Jaccard of the shingle sets, every pair: a sparse item x shingle matrix.
    sets = [np.unique(np.asarray(shingles(t), dtype=np.int64)) for t in items]
    _, column = np.unique(np.concatenate(sets), return_inverse=True)
    sizes = np.array([len(s) for s in sets])
    rows = np.repeat(np.arange(n), sizes)
    matrix = sparse.csr_matrix((np.ones(len(rows)), (rows, column)), shape=(n, column.max() + 1))

    def jaccard(a: NDArray[np.int64], b: NDArray[np.int64]) -> NDArray[np.float64]:
        shared = np.asarray(matrix[a].multiply(matrix[b]).sum(axis=1)).ravel()
        return shared / (sizes[a] + sizes[b] - shared)

    canonical = np.flatnonzero(linked < 0)
    kept = matrix[canonical]
    shared = (kept @ kept.T).tocoo()
    earlier = shared.col < shared.row
    i, j, common = shared.row[earlier], shared.col[earlier], shared.data[earlier]
    exact = common / (sizes[canonical[i]] + sizes[canonical[j]] - common)
    best = np.full(n, -np.inf)
    np.maximum.at(best, canonical[i], exact)
    scores = _score(linked, jaccard, best, threshold, source)
    passing = exact >= threshold
    # A miss the LSH caused: no bucket shared with any earlier canonical text above the
    # threshold (a candidate is then decided by the exact Jaccard of the shingle sets).
    buckets = band_keys(signatures, max(1, num_perm // 4))
    a, b = canonical[i[passing]], canonical[j[passing]]
    candidate = (buckets[a] == buckets[b]).any(axis=1)
    unseen = len(set(a.tolist()) - set(a[candidate].tolist()))
    return {
        **scores,
        "missed_never_a_candidate": unseen,
        "minhash_permutations": num_perm,
        "items_per_s": round(n / seconds),
    }


# -- speed -----------------------------------------------------------------------------------


def _text_rows(items: list[str], start: int) -> list[sampler_pb2.ImportRow]:
    return [
        sampler_pb2.ImportRow(line=start + k + 1, content=common_pb2.ItemContent(text=t))
        for k, t in enumerate(items)
    ]


def _vector_rows(values: Floats, start: int) -> list[sampler_pb2.ImportRow]:
    return [
        sampler_pb2.ImportRow(
            line=start + k + 1,
            content=common_pb2.ItemContent(features=common_pb2.FeatureVector(values=v)),
        )
        for k, v in enumerate(values.tolist())
    ]


def _chunks(kind: str, n: int) -> Iterator[tuple[int, list[str] | Floats]]:
    if kind == "texts":
        items, _ = texts(n, seed=1)
        for start in range(0, n, CHUNK):
            yield start, items[start : start + CHUNK]
    else:
        values, _ = relu_features(n, seed=1)
        for start in range(0, n, CHUNK):
            yield start, values[start : start + CHUNK]


def dedup_speed(kind: str, n: int) -> dict[str, object]:
    """Items/s of the dedup path alone (text: normalising, MinHash, the LSH index;
    vectors: the vector index) and of the import path without Postgres
    (`prepare_chunk`, then the decisions of `_decide`), by the clock and by this
    process's CPU time (the machine is shared: the second is the steadier figure)."""
    index = NearDuplicateIndex()
    dedup = np.zeros(2)
    for start, part in _chunks(kind, n):
        began = np.array([time.perf_counter(), time.process_time()])
        if kind == "texts":
            keys = index.hasher.keys_of_normalized([normalize_text(t) for t in part])
            target: object = index.text
            batch = index.text.prepare(keys, band_keys(keys.signatures, index.bands))
        else:
            target = index.features(DIM)
            batch = index.features(DIM).prepare(np.asarray(part))
        for i in range(len(part)):
            if target.match(batch, i) is None:  # type: ignore[attr-defined]
                target.add(batch, i, str(start + i))  # type: ignore[attr-defined]
        target.commit(batch)  # type: ignore[attr-defined]
        dedup += np.array([time.perf_counter(), time.process_time()]) - began
    index = NearDuplicateIndex()
    known: dict[str, str] = {}
    summary = ImportSummary()
    path = np.zeros(2)
    for start, part in _chunks(kind, n):
        make = _text_rows if kind == "texts" else _vector_rows
        rows = make(part, start)  # type: ignore[operator]
        began = np.array([time.perf_counter(), time.process_time()])
        chunk = prepare_chunk("bench", rows, index.hasher, index.bands)
        for _ in _decide(chunk, index, known, [], summary):
            pass
        path += np.array([time.perf_counter(), time.process_time()]) - began
    return {
        "dedup_items_per_s": round(n / dedup[0]),
        "dedup_items_per_cpu_s": round(n / dedup[1]),
        "import_without_postgres_items_per_s": round(n / path[0]),
        "import_without_postgres_items_per_cpu_s": round(n / path[1]),
        "near_duplicates": summary.near_duplicates,
        "exact_duplicates": summary.exact_duplicates,
    }


def postgres_speed(n: int) -> dict[str, object]:
    """Items/s of `Importer` (the sampler's import path: chunks prepared while the
    previous one is deduplicated and COPYed) into an embedded Postgres."""
    figures: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as home:
        pg = EmbeddedPostgres(Path(home) / "pgdata", free_port())
        pg.start()
        try:
            migrations = load_migrations("sampler", package_migrations("strata.sampler"))
            migrate(pg.dsn, "sampler", [*kit_migrations(), *migrations])
            db = Database(pg.dsn, "sampler")
            db.open()
            importer = Importer(db, chunk_rows=CHUNK)
            for kind in ("texts", "vectors"):
                make = _text_rows if kind == "texts" else _vector_rows
                requests = [make(part, start) for start, part in _chunks(kind, n)]  # type: ignore[operator]
                summary = ImportSummary()
                began = time.perf_counter()
                with importer.pipeline(summary) as stream:
                    for rows in requests:
                        stream.submit(f"bench-{kind}", rows)
                seconds = time.perf_counter() - began
                del requests
                figures[f"postgres_{kind}_{n}"] = {
                    "items_per_s": round(n / seconds),
                    "imported": summary.imported,
                    "near_duplicates": summary.near_duplicates,
                }
            db.close()
        finally:
            pg.stop()
    return figures


def table(figures: dict[str, Any]) -> str:
    """The figures as two small tables: quality, then speed."""
    lines = ["kind      items  found  precision  recall  missed (up to)"]
    for kind in ("texts", "vectors", "images"):
        for key, q in figures.items():
            if key.startswith(f"quality_{kind}_"):
                lines.append(
                    f"{kind:<8}{q['items']:>7}{q['near_duplicates_found']:>7}"
                    f"{q['precision']:>11.4f}{q['recall']:>8.4f}"
                    f"  {q['missed']} ({q['missed_up_to']})"
                )
    lines += ["", "kind      items  dedup/s  (per CPU s)  import w/o Postgres/s  (per CPU s)"]
    for key, f in figures.items():
        if key.startswith("speed_"):
            _, kind, size = key.split("_")
            lines.append(
                f"{kind:<8}{int(size):>8}{f['dedup_items_per_s']:>9}{f['dedup_items_per_cpu_s']:>13}"
                f"{f['import_without_postgres_items_per_s']:>23}"
                f"{f['import_without_postgres_items_per_cpu_s']:>13}"
            )
    for key, f in figures.items():
        if key.startswith("postgres_"):
            lines.append(f"{key}: {f['items_per_s']} items/s (Importer, COPY into Postgres)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quality-items", type=int, default=20_000)
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--postgres", type=int, default=0, help="items for the Importer run")
    args = parser.parse_args()
    config = SamplerConfig()
    figures: dict[str, object] = {
        "thresholds": {
            "text": config.text_threshold,
            "vector": config.vector_threshold,
            "image": config.image_threshold,
        }
    }
    n = args.quality_items
    figures[f"quality_texts_{n}"] = quality_texts(n, config.text_threshold)
    figures[f"quality_vectors_{n}"] = quality_vectors(n, config.vector_threshold)
    figures[f"quality_images_{n}"] = quality_images(n, config.image_threshold)
    for size in args.sizes:
        for kind in ("texts", "vectors"):
            figures[f"speed_{kind}_{size}"] = dedup_speed(kind, size)
            print(kind, size, figures[f"speed_{kind}_{size}"], flush=True)
    if args.postgres:
        figures.update(postgres_speed(args.postgres))
    print(table(figures))
    report("dedup", figures)


if __name__ == "__main__":
    main()
