"""Benchmark: Market-1501-scale evaluation, ours vs a numpy argsort-per-row implementation.

Prints, on the active Keras backend (set KERAS_BACKEND), the median of 5 runs and the peak
extra resident memory of:
  (a) features -> CMC + mAP (`ranking_scores_from_features`, distances never held in full),
  (b) distance matrix -> CMC + mAP (`ranking_scores`),
  (c) the same protocol in plain numpy, argsort of each query's row (as torchreid's
      `eval_market1501` does), with a stable sort so that ties are broken like ours,
  (d) fast-reid's `evaluate_rank_py` layout: one argsort of the whole matrix and a matrix of
      matches, then a loop over queries (quicker per row, but about 1.3 GB more memory),
and checks that (b), (c) and (d) agree (per-query AP to 1e-9, CMC identical).

Usage: KERAS_BACKEND=jax python benchmarks/evaluation.py [--queries 3368 --gallery 15913]
"""

import argparse
import os
import statistics
import time

import keras
import numpy as np

from keras_rollback.metrics import pairwise_distance
from keras_rollback.metrics import ranking_scores
from keras_rollback.metrics import ranking_scores_from_features


def market_like_split(num_queries, num_gallery, num_ids, num_cameras, dim, seed=0):
    """Random features with identity structure and Market-1501's junk/distractor shares."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(num_ids + 1, dim)).astype(np.float32)
    q_pids = rng.integers(1, num_ids + 1, num_queries)
    # Market-1501's gallery: ~24% junk (-1), ~18% distractors (0), the rest test identities.
    g_pids = rng.choice([-1, 0, 1], size=num_gallery, p=[0.24, 0.18, 0.58])
    g_pids[g_pids == 1] = rng.integers(1, num_ids + 1, int((g_pids == 1).sum()))
    q_cams = rng.integers(1, num_cameras + 1, num_queries)
    g_cams = rng.integers(1, num_cameras + 1, num_gallery)

    def features(pids):
        x = centers[np.maximum(pids, 0)] * 0.25 + rng.normal(size=(len(pids), dim)).astype(
            np.float32
        )
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    return features(q_pids), features(g_pids), q_pids, g_pids, q_cams, g_cams


def numpy_argsort_scores(distances, q_pids, g_pids, q_cams, g_cams, max_rank):
    """The common open-source evaluation: argsort every row, then walk the ranked list."""
    num_queries = len(q_pids)
    cmc_hits = np.zeros(max_rank)
    aps, traps, inps = [], [], []
    for q in range(num_queries):
        order = np.argsort(distances[q], kind="stable")
        keep = ~(
            (g_pids[order] == -1) | ((g_pids[order] == q_pids[q]) & (g_cams[order] == q_cams[q]))
        )
        matches = (g_pids[order][keep] == q_pids[q]).astype(np.float64)
        if not matches.any():
            continue
        positions = np.flatnonzero(matches)
        i = np.arange(len(positions), dtype=np.float64)
        precision = (i + 1) / (positions + 1)
        previous = np.where(positions > 0, i / np.maximum(positions, 1), 1.0)
        aps.append(precision.mean())
        traps.append(((previous + precision) / 2).mean())
        inps.append(len(positions) / (positions[-1] + 1))
        if positions[0] < max_rank:
            cmc_hits[positions[0] :] += 1
    return cmc_hits / len(aps), np.array(aps), np.array(traps), np.array(inps)


def numpy_whole_matrix_argsort_scores(distances, q_pids, g_pids, q_cams, g_cams, max_rank):
    """fast-reid's `evaluate_rank_py`: sort the whole matrix once, then walk each row."""
    order = np.argsort(distances, axis=1, kind="stable")
    matches = g_pids[order] == q_pids[:, None]
    cmc_hits = np.zeros(max_rank)
    aps = []
    for q in range(len(q_pids)):
        junk = (g_pids[order[q]] == -1) | (
            (g_pids[order[q]] == q_pids[q]) & (g_cams[order[q]] == q_cams[q])
        )
        raw_cmc = matches[q][~junk]
        if not raw_cmc.any():
            continue
        hits = raw_cmc.cumsum()
        aps.append((hits / np.arange(1, len(hits) + 1) * raw_cmc).sum() / raw_cmc.sum())
        first = np.argmax(raw_cmc)
        if first < max_rank:
            cmc_hits[first:] += 1
    return cmc_hits / len(aps), np.array(aps)


def _rss_bytes(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


class PeakMemory:
    """Peak extra resident memory of a block (resets the kernel's high-water mark)."""

    def __enter__(self):
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")  # resets VmHWM to the current RSS
        self.start = _rss_bytes("VmRSS")
        return self

    def __exit__(self, *exc):
        self.peak = _rss_bytes("VmHWM") - self.start


def measure(name, function, repeats):
    times, peaks, result = [], [], None
    for _ in range(repeats):
        with PeakMemory() as memory:
            start = time.perf_counter()
            result = function()
            times.append(time.perf_counter() - start)
        peaks.append(memory.peak)
    print(
        f"{name:<44s} median {statistics.median(times):7.3f} s "
        f"(min {min(times):.3f}, max {max(times):.3f})   peak +{max(peaks) / 2**20:7.1f} MiB",
        flush=True,
    )
    return statistics.median(times), result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=3368)
    parser.add_argument("--gallery", type=int, default=15913)
    parser.add_argument("--ids", type=int, default=750)
    parser.add_argument("--cameras", type=int, default=6)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-rank", type=int, default=50)
    args = parser.parse_args()

    print(
        f"backend={keras.backend.backend()} "
        f"cpus={os.cpu_count()} queries={args.queries} gallery={args.gallery} dim={args.dim}"
    )
    q_feat, g_feat, q_pids, g_pids, q_cams, g_cams = market_like_split(
        args.queries, args.gallery, args.ids, args.cameras, args.dim
    )
    ids = (q_pids, g_pids, q_cams, g_cams)
    distances = pairwise_distance(q_feat, g_feat)
    # Warm-up (kernel compilation on JAX/TF) is excluded from the timings.
    ranking_scores(distances, *ids, max_rank=args.max_rank)
    ranking_scores_from_features(q_feat, g_feat, *ids, max_rank=args.max_rank)

    time_a, _ = measure(
        "(a) features -> CMC+mAP (ours)",
        lambda: ranking_scores_from_features(q_feat, g_feat, *ids, max_rank=args.max_rank),
        args.repeats,
    )
    measure(
        "    of which: distance matrix alone",
        lambda: pairwise_distance(q_feat, g_feat),
        args.repeats,
    )
    time_b, ours = measure(
        "(b) distances -> CMC+mAP (ours)",
        lambda: ranking_scores(
            distances, *ids, max_rank=args.max_rank, ap_method="non_interpolated"
        ),
        args.repeats,
    )
    time_c, reference = measure(
        "(c) distances -> CMC+mAP (numpy argsort per row)",
        lambda: numpy_argsort_scores(distances, *ids, args.max_rank),
        args.repeats,
    )
    time_d, whole_matrix = measure(
        "(d) distances -> CMC+mAP (numpy, whole-matrix argsort)",
        lambda: numpy_whole_matrix_argsort_scores(distances, *ids, args.max_rank),
        args.repeats,
    )
    trapezoidal = ranking_scores(distances, *ids, max_rank=args.max_rank, ap_method="trapezoidal")
    valid = ours.first_match_rank >= 0
    exact = (
        np.array_equal(ours.cmc, reference[0])
        and np.allclose(ours.average_precision[valid], reference[1], rtol=0, atol=1e-9)
        and np.allclose(trapezoidal.average_precision[valid], reference[2], rtol=0, atol=1e-9)
        and np.allclose(ours.inverse_negative_penalty[valid], reference[3], rtol=0, atol=1e-9)
        and np.array_equal(ours.cmc, whole_matrix[0])
        and np.allclose(ours.average_precision[valid], whole_matrix[1], rtol=0, atol=1e-9)
    )
    print(
        f"rank-1 {ours.cmc[0]:.4f}  mAP {ours.mean_average_precision:.4f} (trapezoidal "
        f"{trapezoidal.mean_average_precision:.4f})  mINP {ours.mean_inverse_negative_penalty:.4f}  "
        f"valid queries {ours.num_valid_queries}"
    )
    print(
        f"(b) vs (c): {time_c / time_b:.1f}x faster, vs (d): {time_d / time_b:.1f}x faster; "
        f"identical results: {exact}"
    )
    print(f"(a) vs (b): distance computation adds {time_a - time_b:.3f} s")


if __name__ == "__main__":
    main()
