"""Near-duplicate texts: the index's decisions agree with brute force over word 3-gram
sets (precision and recall at the threshold), and an index rebuilt from stored rows,
with or without their shingle sets, decides alike."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse
from strata.sampler import store
from strata.sampler.dedup import MinHasher, NearDuplicateIndex, normalize_text
from strata.sampler.pool import Importer, ImportSummary, _decide
from strata.v1 import common_pb2, sampler_pb2

THRESHOLD = 0.8


def sentences(n: int, seed: int) -> list[str]:
    """Sentences of 8-40 Zipf-distributed words; about a tenth are copies of an earlier
    one with 1-3 words replaced, inserted, deleted or upper-cased, so many copies sit
    close to the threshold on either side."""
    rng = np.random.default_rng(seed)
    vocab = [f"w{k}" for k in range(5000)]
    out: list[str] = []
    for i in range(n):
        if i and rng.random() < 0.1:
            words = out[int(rng.integers(0, i))].split()
            for _ in range(int(rng.integers(1, 4))):
                at, op = int(rng.integers(0, len(words))), int(rng.integers(0, 4))
                if op == 0:
                    words[at] = vocab[int(rng.integers(0, len(vocab)))]
                elif op == 1:
                    words.insert(at, vocab[int(rng.integers(0, len(vocab)))])
                elif op == 2 and len(words) > 3:
                    del words[at]
                else:
                    words[at] = words[at].upper()
        else:
            length = int(rng.integers(8, 41))
            picks = np.minimum(rng.zipf(1.3, length), len(vocab)) - 1
            words = [vocab[k] for k in picks]
        out.append(" ".join(words))
    return out


def grams(text: str) -> set[tuple[str, ...]]:
    """The word 3-grams themselves (the whole text when shorter): no hashing, so an
    independent reference for the index's hashed shingles."""
    words = normalize_text(text).split()
    return {tuple(words[i : i + 3]) for i in range(max(1, len(words) - 2))}


def decide(index: NearDuplicateIndex, texts: list[str], chunk: int = 1000) -> list[int]:
    """Import-style decisions: each text's canonical text (an earlier position), or -1."""
    hasher = index.hasher
    out: list[int] = []
    for start in range(0, len(texts), chunk):
        batch = index.text.prepare(hasher.keys(texts[start : start + chunk]))
        for i in range(len(batch.signatures)):
            found = index.text.match(batch, i)
            out.append(-1 if found is None else int(found[0]))
            if found is None:
                index.text.add(batch, i, str(start + i))
        index.text.commit(batch)
    return out


def test_text_near_duplicates_agree_with_brute_force_at_the_threshold() -> None:
    texts = sentences(4000, seed=5)
    linked = np.array(decide(NearDuplicateIndex(THRESHOLD, hasher=MinHasher()), texts))
    sets = [grams(t) for t in texts]
    vocabulary: dict[tuple[str, ...], int] = {}
    cols = [[vocabulary.setdefault(g, len(vocabulary)) for g in s] for s in sets]
    sizes = np.array([len(c) for c in cols])
    matrix = sparse.csr_matrix(
        (np.ones(sizes.sum()), (np.repeat(np.arange(len(texts)), sizes), np.concatenate(cols))),
        shape=(len(texts), len(vocabulary)),
    )

    def exact(a: int, b: int) -> float:
        return len(sets[a] & sets[b]) / len(sets[a] | sets[b])

    # Every linked text is at or above the threshold with its canonical text.
    flagged = np.flatnonzero(linked >= 0)
    right = sum(exact(int(i), int(linked[i])) >= THRESHOLD for i in flagged)
    # A miss: a text kept as canonical though an earlier canonical one is at or above it.
    canonical = np.flatnonzero(linked < 0)
    kept = matrix[canonical]
    shared = (kept @ kept.T).tocoo()
    earlier = shared.col < shared.row
    i, j, common = shared.row[earlier], shared.col[earlier], shared.data[earlier]
    similarity = common / (sizes[canonical[i]] + sizes[canonical[j]] - common)
    missed = len(set(canonical[i[similarity >= THRESHOLD]].tolist()))
    assert len(flagged) > 100  # the copies that are near enough, and only them
    precision = right / len(flagged)
    recall = right / (right + missed)
    print(f"precision {precision:.4f} recall {recall:.4f} of {len(flagged)}")
    assert precision >= 0.99 and recall >= 0.95, (precision, recall, missed)
    # The sample holds copies within the MinHash estimate's error (about 0.05) of the
    # threshold on both sides: what the estimate alone got wrong either way.
    close = similarity[(similarity > THRESHOLD - 0.05) & (similarity < THRESHOLD + 0.05)]
    linked_close = [exact(int(k), int(linked[k])) for k in flagged]
    assert (close < THRESHOLD).sum() > 20
    assert sum(THRESHOLD <= x < THRESHOLD + 0.05 for x in linked_close) > 20


def text_row(text: str, line: int) -> sampler_pb2.ImportRow:
    return sampler_pb2.ImportRow(line=line, content=common_pb2.ItemContent(text=text))


@pytest.mark.parametrize("with_shingles", [True, False])
def test_a_restarted_importer_rebuilds_the_same_text_index(
    monkeypatch: pytest.MonkeyPatch, with_shingles: bool
) -> None:
    """What an import stores (signature, shingle set, import number) is what another
    replica's importer loads; rows stored before shingle sets were kept are read from
    their content. Either way the next import's copies are linked alike."""
    texts = sentences(3000, seed=7)
    rows = [text_row(t, line) for line, t in enumerate(texts)]
    live, summary = Importer(None), ImportSummary()  # type: ignore[arg-type]
    stored = []
    for seq, start in enumerate(range(0, 3000, 600)):
        chunk = live.prepare("p", rows[start : start + 600])
        for item in _decide(chunk, live._index("p").index, {}, [], summary):
            if item.state == "pool":
                assert item.shingles is not None and item.signature is not None
                stored.append(
                    store.IndexRow(
                        item.item_id,
                        item.signature,
                        item.shingles if with_shingles else None,
                        None if with_shingles else item.content,
                        None,
                        None,
                        seq,
                    )
                )
            else:
                assert item.shingles is None  # a copy is never compared with
    monkeypatch.setattr(store, "index_material", lambda conn, project, after: stored)
    restarted = Importer(None)  # type: ignore[arg-type]
    index = restarted._index("p")
    restarted._refresh(None, "p", index)  # type: ignore[arg-type]
    assert index.watermark == 4 and len(index.index) == len(stored)
    rng = np.random.default_rng(8)
    queries = [f"{t} {t.split()[0]}" for t in rng.choice(texts, 300).tolist()]
    chunk = live.prepare("p", [text_row(t, line) for line, t in enumerate(queries)])
    before = [i.canonical_item_id for i in _decide(chunk, live._index("p").index, {}, [], summary)]
    after = [i.canonical_item_id for i in _decide(chunk, index.index, {}, [], summary)]
    assert after == before and sum(c is not None for c in before) >= 250
