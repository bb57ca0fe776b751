"""The VQ codec's entropy model: context-conditioned frequency tables for codebook indices.

Indices are coded in raster order of latent positions; at each position level by level,
and within a level group by group. The table for index (level l, group g, position p) is
chosen by a context made of the *classes* of already-coded indices:

    left   the same level and group at the position to the left
    up     the same level and group at the position above
    group  the same level, group g - 1, same position
    level  level l - 1, same group, same position

Each codebook's entries are split into C classes by k-means of the codewords (entries
that look alike share a class). A missing neighbour (tile edge, first group, first level)
has class C. The context number is sum_j class_j * (C + 1)^j over the references j in
order. Frequencies are integers summing to 2^16 (the last one the rANS escape, never
used), so encoder and decoder need no arithmetic beyond table lookup: decoding is exact
on every machine. ``fit_tables`` tries a few reference sets and smoothing strengths and
keeps the one with the shortest code on held-out images.
"""

from typing import Dict, List, Sequence, Tuple

import numpy as np

TOTAL = 1 << 16
CANDIDATES = (
    (("left", "up"), 8),
    (("left", "up", "group"), 4),
    (("left", "up", "level"), 4),
    (("left", "up", "group", "level"), 3),
)
SMOOTHING = (4.0, 16.0, 64.0)


def codeword_classes(book: np.ndarray, classes: int, seed: int = 1) -> np.ndarray:
    """k-means (Lloyd, 30 iterations, seeded) of one codebook's entries into `classes`."""
    rng = np.random.default_rng(seed)
    centres = book[rng.choice(book.shape[0], classes, replace=False)].astype(np.float64)
    for _ in range(30):
        d = ((book[:, None, :] - centres[None]) ** 2).sum(-1)
        lab = d.argmin(1)
        for c in range(classes):
            if np.any(lab == c):
                centres[c] = book[lab == c].mean(0)
    d = ((book[:, None, :] - centres[None]) ** 2).sum(-1)
    # Classes numbered by their centre's norm: a stable, explainable order.
    order = np.argsort(np.linalg.norm(centres, axis=1), kind="stable")
    rank = np.empty(classes, dtype=np.int64)
    rank[order] = np.arange(classes)
    return rank[d.argmin(1)]


def contexts(idx: np.ndarray, classes: np.ndarray, refs: Sequence[str], c: int) -> np.ndarray:
    """idx [L, G, h, w], classes [L, G, K] -> context numbers [L, G, h, w]."""
    L, G, h, w = idx.shape
    cls = np.stack([np.stack([classes[l, g][idx[l, g]] for g in range(G)]) for l in range(L)])
    ctx = np.zeros_like(idx)
    base = 1
    for ref in refs:
        r = np.full_like(idx, c)
        if ref == "left":
            r[:, :, :, 1:] = cls[:, :, :, :-1]
        elif ref == "up":
            r[:, :, 1:, :] = cls[:, :, :-1, :]
        elif ref == "group":
            r[:, 1:] = cls[:, :-1]
        elif ref == "level":
            r[1:] = cls[:-1]
        else:
            raise ValueError(ref)
        ctx += r * base
        base *= c + 1
    return ctx


def quantise(p: np.ndarray) -> np.ndarray:
    """Probabilities of K symbols -> K + 1 integer frequencies (escape 1) summing to 2^16."""
    k = p.size
    budget = TOTAL - 1
    f = np.maximum(1, np.floor(p / p.sum() * (budget - k) + 0.5).astype(np.int64))
    f = np.maximum(f, 1)
    diff = budget - int(f.sum())
    order = np.argsort(-f, kind="stable")
    i = 0
    while diff != 0:
        j = order[i % k]
        step = 1 if diff > 0 else -1
        if f[j] + step >= 1:
            f[j] += step
            diff -= step
        i += 1
    return np.concatenate([f, [1]])


def fit_tables(books: np.ndarray, train: List[np.ndarray], test: List[np.ndarray]) -> Tuple[Dict, Dict]:
    L, G, K, _ = books.shape
    best = None
    trials = []
    for refs, c in CANDIDATES:
        classes = np.stack([np.stack([codeword_classes(books[l, g], c) for g in range(G)]) for l in range(L)])
        n_ctx = (c + 1) ** len(refs)
        counts = np.zeros((L, G, n_ctx, K))
        for idx in train:
            ctx = contexts(idx, classes, refs, c)
            for l in range(L):
                for g in range(G):
                    np.add.at(counts[l, g], (ctx[l, g].ravel(), idx[l, g].ravel()), 1)
        test_contexts = [contexts(idx, classes, refs, c) for idx in test]
        positions = sum(idx.shape[2] * idx.shape[3] for idx in test)
        marginal = counts.sum(2, keepdims=True) + 0.5
        marginal = marginal / marginal.sum(-1, keepdims=True)
        for beta in SMOOTHING:
            p = (counts + beta * marginal) / (counts.sum(-1, keepdims=True) + beta)
            freqs = np.stack([np.stack([np.stack([quantise(p[l, g, x]) for x in range(n_ctx)])
                                        for g in range(G)]) for l in range(L)])
            bits = np.zeros(L)
            for idx, ctx in zip(test, test_contexts):
                for l in range(L):
                    for g in range(G):
                        f = freqs[l, g][ctx[l, g].ravel(), idx[l, g].ravel()]
                        bits[l] += float(np.sum(np.log2(TOTAL / f)))
            per_position = np.cumsum(bits) / positions
            trials.append({"references": list(refs), "classes": c, "smoothing": beta,
                           "bits_per_position": per_position.tolist()})
            if best is None or per_position[-1] + per_position[0] < best[0]:
                best = (per_position[-1] + per_position[0], refs, c, beta, classes, freqs, per_position)
    _, refs, c, beta, classes, freqs, per_position = best
    fixed = np.arange(1, L + 1) * G * np.log2(K)
    tables = {
        "format": 1, "levels": L, "groups": G, "entries": K, "group_channels": int(books.shape[3]),
        "context": {
            "references": list(refs), "classes": c,
            "description": f"rANS, 16-bit frequencies per (level, group, context); context = classes of "
                           f"the {', '.join(refs)} indices ({c} classes + missing)",
        },
        "classes": classes.tolist(),
        "frequencies": freqs.tolist(),
    }
    report = {"chosen": {"references": list(refs), "classes": c, "smoothing": beta},
              "bits_per_position": per_position.tolist(),
              "fixed_bits_per_position": fixed.tolist(),
              "saving_over_fixed_length": (1 - per_position / fixed).tolist(),
              "trials": trials}
    return tables, report
