"""Shortest-path labels and per-user stratum counts (DESIGN.md §2).

Q_uv is the user→item distance in the bipartite train graph (1, 3, 5, … or ∞).

| label | meaning                         | Q-class t |
|-------|---------------------------------|-----------|
| 0     | v ∈ A₁ (Q = 1)                  | 0         |
| 1     | v ∈ A₂ (Q = 3, above threshold) | 1         |
| 2     | Q = 3, not in A₂                | 1         |
| 3     | Q = 5                           | 2         |
| 4     | Q ≥ 7 or unreachable            | 3         |

The zeros of row k are the items whose label is not that row's positive label
(row 1: label 0, row 2: label 1), split into strata by Q-class. So
``strata[u, k, t]`` = N_{u,k,t}, the number of zeros of row k in Q-class t:
row 1 → [0, n1 + n2, n3, n4], row 2 → [n0, n2, n3, n4] (n_l = count of label l).
"""

from __future__ import annotations

import numpy as np

__all__ = ["NUM_LABELS", "NUM_STRATA", "POSITIVE_LABEL", "Q_CLASS", "make_labels", "label_counts",
           "strata_from_label_counts"]

NUM_LABELS = 5
NUM_STRATA = 4
POSITIVE_LABEL = (0, 1)                      # the positive label of row k = 1, 2
Q_CLASS = np.array([0, 1, 1, 2, 3], np.uint8)  # label -> Q-class (Q = 1, 3, 5, >= 7)


def make_labels(a1: np.ndarray, a2: np.ndarray, reach3: np.ndarray, reach5: np.ndarray) -> np.ndarray:
  """[n, |V|] uint8 labels from boolean masks (a1 ⊆ reach3 ⊆ reach5, a2 ⊆ reach3 \\ a1)."""
  labels = np.full(a1.shape, 4, dtype=np.uint8)
  labels[reach5] = 3
  labels[reach3] = 2
  labels[a2] = 1
  labels[a1] = 0
  return labels


def label_counts(labels: np.ndarray) -> np.ndarray:
  """[n, 5] int32 number of items with each label, per row."""
  return np.stack([(labels == k).sum(axis=1) for k in range(NUM_LABELS)], axis=1).astype(np.int32)


def strata_from_label_counts(counts: np.ndarray) -> np.ndarray:
  """[n, 2, 4] int32 N_{u,k,t}: zeros of row k (1st, 2nd order) in Q-class t."""
  n0, n1, n2, n3, n4 = (counts[:, k] for k in range(NUM_LABELS))
  zero = np.zeros_like(n0)
  row1 = np.stack([zero, n1 + n2, n3, n4], axis=1)
  row2 = np.stack([n0, n2, n3, n4], axis=1)
  return np.stack([row1, row2], axis=1).astype(np.int32)
