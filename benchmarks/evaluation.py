"""Benchmark: re-identification evaluation, ours on every backend vs torchreid's Cython.

`--task compare` (default) prints Markdown tables from one run, at Market-1501 size
(3,368 x 15,913, 2048-D features) and CUHK03 size (1,400 x 5,332), each on the `hard`
problem (scores shaped like a trained model's: see `HARD`) and the `easy` one (random
features around random identity centres), with the problem's mAP beside each row; medians
of `--repeats` runs and the peak extra resident memory of each:
  - torchreid's `eval_market1501` with its Cython extension (`rank_cy.evaluate_cy`), the
    reference torchreid and fast-reid users run; it is given the distance matrix without
    the id -1 columns, as torchreid's datasets drop those images;
  - ours from the distance matrix (`ranking_scores`) and from the features
    (`ranking_scores_from_features`), in one process per Keras backend, beside the
    matmul alone (the same chunks of distances, converted to numpy, nothing ranked) and
    one pass over the distance matrix (`min`): ours from distances is also given in such
    passes;
  - the same protocol in plain numpy: an argsort of every row (a stable sort, so that
    ties are broken like ours), and fast-reid's `evaluate_rank_py` layout (one argsort of
    the whole matrix);
and checks that every row agrees with the numpy argsort reference (CMC identical,
per-query AP to 1e-9; torchreid's float32 mAP to 1e-5).

`--task identity_probe`: 256 queries x 16,000 gallery, one query whose identity has K
gallery images, K = 0, 1,000, 2,000, 10,000 (time and peak memory); `--problem` (hard by
default; easy: random distances) also chooses the features of the two tasks below.
`--task scale`: MSMT17 size (11,659 x 82,161, 2048-D synthetic features) from features,
with the progress bar; `--task distractors`: Market-1501's queries against its gallery
plus 500,000 distractors. Both print the time and the peak memory above the features.

torchreid's Cython row needs Cython (the `benchmark` extra) and torchreid's
`rank_cy.pyx`: from an installed torchreid built from its sources, or from a checkout
given by `--torchreid_source` (or $TORCHREID_SOURCE), compiled once into
`~/.cache/keras_rollback/rank_cy`. Without them the row says why it is missing.

Usage:
    python benchmarks/evaluation.py [--backends tensorflow jax torch] [--repeats 3]
    python benchmarks/evaluation.py --torchreid_source ~/src/deep-person-reid
    KERAS_BACKEND=torch python benchmarks/evaluation.py --task scale
"""

import argparse
import hashlib
import importlib
import importlib.util
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

SIZES = {  # name: queries, gallery, identities, cameras, junk share, distractor share
    "Market-1501": (3368, 15913, 750, 6, 0.24, 0.18),
    "CUHK03": (1400, 5332, 700, 2, 0.0, 0.0),
}
# "hard": scores shaped like a trained model's (mAP about 50%, true matches deep across
# cameras); "easy": random unit features around random identity centres (no camera or
# quality structure: true matches spread evenly through the ranking).
PROBLEMS = ("hard", "easy")
# The hard problem's features (all directions unit vectors, nearly orthogonal in 2048-D):
# quality x identity centre + camera bias + noise, L2-normalised. An identity shares part
# of its centre with the others of its "look" (similar clothes: hard negatives); a low
# quality image (occluded, blurred) is dominated by its camera's bias, so its true matches
# from other cameras rank behind many same-camera strangers; distractors (id 0) are drawn
# around fake identities, junk (id -1) around real ones at low quality.
HARD = {
    "looks": 40,  # clusters of similar identities
    "look_share": 0.5,  # of an identity centre's squared norm
    "quality": (0.2, 1.0),  # uniform range of the per-image factor on the centre
    "camera_bias": 0.36,
    "noise": 0.55,
    "fake_identities": 300,
}
BACKENDS = ("tensorflow", "jax", "torch")
RANK_CY_CACHE = pathlib.Path.home() / ".cache" / "keras_rollback" / "rank_cy"


def _unit_rows(rng, num_rows, dim):
    rows = rng.standard_normal((num_rows, dim), dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _in_blocks(num_rows, dim, fill):
    """A float32 (num_rows, dim) array of unit rows, filled by `fill(block, start, stop)` in
    blocks, in place: a 500k-image gallery takes no temporary of its own size."""
    x = np.empty((num_rows, dim), dtype=np.float32)
    for start in range(0, num_rows, 2**16):
        block = x[start : start + 2**16]
        fill(block, start, start + len(block))
        block /= np.linalg.norm(block, axis=1, keepdims=True)
    return x


def hard_features_fn(rng, num_ids, num_cameras, dim):
    """`features(pids, cams)` of the hard problem (see `HARD`) for one random draw."""
    looks = _unit_rows(rng, HARD["looks"], dim)
    num_centres = num_ids + 1 + HARD["fake_identities"]
    share = HARD["look_share"]
    centres = np.sqrt(share) * looks[rng.integers(0, HARD["looks"], num_centres)]
    centres += np.sqrt(1.0 - share) * _unit_rows(rng, num_centres, dim)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    biases = HARD["camera_bias"] * _unit_rows(rng, num_cameras + 1, dim)
    low, high = HARD["quality"]

    def features(pids, cams):
        # Distractors around fake identities (indices above the real ones), junk around
        # real ones at low quality.
        centre = np.where(
            pids > 0, pids, num_ids + 1 + rng.integers(0, HARD["fake_identities"], len(pids))
        )
        is_junk = pids == -1
        centre[is_junk] = rng.integers(1, num_ids + 1, int(is_junk.sum()))
        quality = rng.uniform(low, high, len(pids)).astype(np.float32)
        quality[is_junk] *= 0.5

        def fill(block, start, stop):
            rng.standard_normal(out=block, dtype=np.float32)
            block *= HARD["noise"] / np.sqrt(dim)
            block += quality[start:stop, None] * centres[centre[start:stop]]
            block += biases[cams[start:stop]]

        return _in_blocks(len(pids), dim, fill)

    return features


def reid_split(
    num_queries, num_gallery, num_ids, num_cameras, junk, distractors, dim, problem="hard", seed=0
):
    """Unit features of a query and a gallery split with identity structure and the given
    junk/distractor shares: `(q_feat, g_feat, q_pids, g_pids, q_cams, g_cams)`."""
    rng = np.random.default_rng(seed)
    if problem == "easy":  # drawn first, as before the hard problem existed
        centers = rng.normal(size=(num_ids + 1, dim)).astype(np.float32)
    q_pids = rng.integers(1, num_ids + 1, num_queries)
    g_pids = rng.choice([-1, 0, 1], size=num_gallery, p=[junk, distractors, 1 - junk - distractors])
    g_pids[g_pids == 1] = rng.integers(1, num_ids + 1, int((g_pids == 1).sum()))
    q_cams = rng.integers(1, num_cameras + 1, num_queries)
    g_cams = rng.integers(1, num_cameras + 1, num_gallery)
    if problem == "easy":

        def features(pids, cams):
            def fill(block, start, stop):
                rng.standard_normal(out=block, dtype=np.float32)
                block += centers[np.maximum(pids[start:stop], 0)] * 0.25

            return _in_blocks(len(pids), dim, fill)

    else:
        features = hard_features_fn(rng, num_ids, num_cameras, dim)
    q_feat = features(q_pids, q_cams)
    return q_feat, features(g_pids, g_cams), q_pids, g_pids, q_cams, g_cams


def distance_matrix(q_feat, g_feat):
    """Squared euclidean distances of unit features, float32, as the library computes them."""
    return np.maximum(2.0 - 2.0 * q_feat @ g_feat.T, 0.0).astype(np.float32)


def numpy_argsort_scores(distances, q_pids, g_pids, q_cams, g_cams, max_rank):
    """The common open-source evaluation: argsort every row, then walk the ranked list."""
    num_queries = len(q_pids)
    cmc_hits = np.zeros(max_rank)
    aps = np.full(num_queries, np.nan)
    for q in range(num_queries):
        order = np.argsort(distances[q], kind="stable")
        keep = ~(
            (g_pids[order] == -1) | ((g_pids[order] == q_pids[q]) & (g_cams[order] == q_cams[q]))
        )
        matches = g_pids[order][keep] == q_pids[q]
        if not matches.any():
            continue
        positions = np.flatnonzero(matches)
        aps[q] = ((np.arange(len(positions)) + 1) / (positions + 1)).mean()
        if positions[0] < max_rank:
            cmc_hits[positions[0] :] += 1
    return cmc_hits / np.isfinite(aps).sum(), aps


def numpy_whole_matrix_argsort_scores(distances, q_pids, g_pids, q_cams, g_cams, max_rank):
    """fast-reid's `evaluate_rank_py`: sort the whole matrix once, then walk each row."""
    order = np.argsort(distances, axis=1, kind="stable")
    matches = g_pids[order] == q_pids[:, None]
    cmc_hits = np.zeros(max_rank)
    aps = np.full(len(q_pids), np.nan)
    for q in range(len(q_pids)):
        junk = (g_pids[order[q]] == -1) | (
            (g_pids[order[q]] == q_pids[q]) & (g_cams[order[q]] == q_cams[q])
        )
        raw_cmc = matches[q][~junk]
        if not raw_cmc.any():
            continue
        hits = raw_cmc.cumsum()
        aps[q] = (hits / np.arange(1, len(hits) + 1) * raw_cmc).sum() / raw_cmc.sum()
        first = np.argmax(raw_cmc)
        if first < max_rank:
            cmc_hits[first:] += 1
    return cmc_hits / np.isfinite(aps).sum(), aps


def _rank_cy_pyx(source):
    """Path of torchreid's rank_cy.pyx in a checkout, an installed torchreid, or None."""
    candidates = []
    if source:
        source = pathlib.Path(source).expanduser()
        candidates += [source, *source.glob("**/rank_cylib/rank_cy.pyx")]
    try:
        spec = importlib.util.find_spec("torchreid")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidates += list(pathlib.Path(location).glob("**/rank_cylib/rank_cy.pyx"))
    return next((p for p in candidates if p.is_file() and p.name == "rank_cy.pyx"), None)


def load_torchreid_cython(source):
    """`(evaluate_cy, description)` of torchreid's Cython evaluation, or `(None, reason)`."""
    for module in (
        "torchreid.metrics.rank_cylib.rank_cy",  # torchreid built from its sources
        "torchreid.reid.metrics.rank_cylib.rank_cy",  # the layout of torchreid >= 0.2.4
    ):
        try:
            return importlib.import_module(module).evaluate_cy, f"installed {module}"
        except ImportError:
            pass
    pyx = _rank_cy_pyx(source)
    if pyx is None:
        return None, (
            "not built: no torchreid with a compiled rank_cy and no rank_cy.pyx (the pip "
            "package ships without it); pass --torchreid_source=<deep-person-reid checkout>"
        )
    try:
        import Cython  # noqa: F401
    except ImportError:
        return None, "not built: Cython is missing (pip install -e '.[benchmark]')"
    build = RANK_CY_CACHE / hashlib.sha256(pyx.read_bytes()).hexdigest()[:16]
    if not list(build.glob("rank_cy*.so")):
        build.mkdir(parents=True, exist_ok=True)
        (build / "rank_cy.pyx").write_bytes(pyx.read_bytes())
        # torchreid's own build: one Extension, numpy's headers, default compiler flags.
        (build / "setup.py").write_text(
            "import numpy\nfrom setuptools import Extension, setup\n"
            "from Cython.Build import cythonize\n"
            "setup(ext_modules=cythonize([Extension('rank_cy', ['rank_cy.pyx'], "
            "include_dirs=[numpy.get_include()])], quiet=True))\n"
        )
        done = subprocess.run(
            [sys.executable, "setup.py", "build_ext", "--inplace"],
            cwd=build,
            capture_output=True,
            text=True,
        )
        if done.returncode:
            return None, f"not built: compiling {pyx} failed: {done.stderr.strip()[-300:]}"
    sys.path.insert(0, str(build))
    return importlib.import_module("rank_cy").evaluate_cy, f"compiled from {pyx}"


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


def measure(jobs, repeats):
    """`{name: (median seconds, peak MiB, result, seconds of each repeat)}`, the jobs run in
    turn `repeats` times.

    Interleaved, so that on shared cores every job sees the same load; each is called once
    first, untimed (kernel compilation on JAX and TensorFlow).
    """
    for job in jobs.values():
        job()
    times = {name: [] for name in jobs}
    peaks = {name: [] for name in jobs}
    results = {}
    for _ in range(repeats):
        for name, job in jobs.items():
            with PeakMemory() as memory:
                start = time.perf_counter()
                results[name] = job()
                times[name].append(time.perf_counter() - start)
            peaks[name].append(memory.peak)
    return {
        name: (
            statistics.median(times[name]),
            max(peaks[name]) / 2**20,
            results[name],
            times[name],
        )
        for name in jobs
    }


def paired_ratio(numerator, denominator):
    """The median over the repeats of `numerator / denominator` (worker rows), each ratio of
    two jobs run one after the other: on shared cores a ratio of medians mixes repeats
    under different loads (a features / matmul ratio of 1.37 that repeated timing put at
    1.06)."""
    return statistics.median(
        a / b for a, b in zip(numerator["times"], denominator["times"], strict=True)
    )


def _torchreid_job(evaluate_cy, data, max_rank):
    """torchreid's call on the distances without the id -1 columns (its datasets drop them)."""
    kept = data["g_pids"] != -1
    distances = np.ascontiguousarray(data["distances"][:, kept])
    ids = (data["q_pids"], data["g_pids"][kept], data["q_cams"], data["g_cams"][kept])
    return lambda: evaluate_cy(distances, *ids, max_rank)


def _cases(problems):
    """`(size, problem)` pairs, Market-1501 size first."""
    return [(size, problem) for size in SIZES for problem in problems]


def _data_path(directory, size, problem):
    return pathlib.Path(directory) / f"{size.replace('-', '')}-{problem}.npz"


def _make_data(directory, dim, problems):
    """Features, ids and the float32 distance matrix of every case, saved for the workers."""
    for size, problem in _cases(problems):
        q_feat, g_feat, *ids = reid_split(*SIZES[size], dim, problem=problem)
        np.savez(
            _data_path(directory, size, problem),
            q_feat=q_feat,
            g_feat=g_feat,
            distances=distance_matrix(q_feat, g_feat),
            q_pids=ids[0],
            g_pids=ids[1],
            q_cams=ids[2],
            g_cams=ids[3],
        )


def _worker(directory, repeats, max_rank, torchreid_source, problems):
    """Ours on the active backend, beside torchreid and one pass over the distance matrix
    (`min`) in the same process: row dicts."""

    from keras_rollback.metrics import _validation
    from keras_rollback.metrics import distance as distance_lib
    from keras_rollback.metrics import ranking
    from keras_rollback.metrics import ranking_scores
    from keras_rollback.metrics import ranking_scores_from_features

    evaluate_cy, _ = load_torchreid_cython(torchreid_source)
    rows = []
    for size, problem in _cases(problems):
        data = dict(np.load(_data_path(directory, size, problem)))
        ids = (data["q_pids"], data["g_pids"], data["q_cams"], data["g_cams"])
        options = dict(max_rank=max_rank, ap_method="non_interpolated", verbose=0)
        kept_gallery = data["g_feat"][data["g_pids"] != -1]
        chunk_size = ranking._chunk_size(None, len(data["q_pids"]), len(kept_gallery))

        def matmul_alone(kept_gallery=kept_gallery, chunk_size=chunk_size, data=data):
            for _, _, chunk in distance_lib.iter_distance_chunks(
                data["q_feat"], kept_gallery, chunk_size=chunk_size
            ):
                _validation.to_numpy(chunk)  # The engine's own read of a chunk.

        # Each job right after the one it is compared with (`paired_ratio`).
        jobs = {
            "distances": lambda data=data, ids=ids, options=options: ranking_scores(
                data["distances"], *ids, **options
            ),
            # The floor of any exact evaluation from distances: reading every distance once.
            "one pass": lambda data=data: data["distances"].min(),
            "features": lambda data=data, ids=ids, options=options: ranking_scores_from_features(
                data["q_feat"], data["g_feat"], *ids, **options
            ),
            "matmul alone": matmul_alone,
        }
        if evaluate_cy is not None:
            jobs["torchreid"] = _torchreid_job(evaluate_cy, data, max_rank)
        for name, (seconds, peak, result, times) in measure(jobs, repeats).items():
            row = {
                "size": size,
                "problem": problem,
                "input": name,
                "seconds": seconds,
                "times": times,
                "peak_mib": peak,
            }
            if name in ("distances", "features"):
                row["cmc"] = result.cmc.tolist()
                row["ap"] = np.nan_to_num(result.average_precision, nan=-1).tolist()
            elif name == "torchreid":
                row["cmc"] = np.asarray(result[0]).tolist()
                row["map"] = float(result[1])
            rows.append(row)
    return rows


def _is_exact(row, cmc, aps):
    """Whether a worker row agrees with the numpy argsort reference `(cmc, aps)`: CMC
    identical and per-query AP to 1e-9 (ours), CMC to 1e-6 and mAP to 1e-5 (torchreid's
    float32)."""
    valid = np.isfinite(aps)
    if "map" in row:
        return bool(
            np.allclose(row["cmc"], cmc, atol=1e-6) and abs(row["map"] - aps[valid].mean()) < 1e-5
        )
    return bool(
        np.array_equal(np.asarray(row["cmc"]), cmc)
        and np.allclose(np.asarray(row["ap"])[valid], aps[valid], rtol=0, atol=1e-9)
    )


def compare(args):
    with tempfile.TemporaryDirectory() as directory:
        cases = _cases(args.problems)
        print(
            f"Making the data ({', '.join(f'{s} {p}' for s, p in cases)}; {args.dim}-D "
            "features)...",
            flush=True,
        )
        _make_data(directory, args.dim, args.problems)
        _, description = load_torchreid_cython(args.torchreid_source)
        print(f"torchreid Cython: {description}", flush=True)
        worker_rows = {}
        for backend in args.backends:
            print(f"Ours on {backend}, beside torchreid...", flush=True)
            command = [
                sys.executable,
                __file__,
                "--task=worker",
                f"--data={directory}",
                f"--repeats={args.repeats}",
                f"--max_rank={args.max_rank}",
                "--problems",
                *args.problems,
            ]
            if args.torchreid_source:
                command.append(f"--torchreid_source={args.torchreid_source}")
            done = subprocess.run(
                command,
                # As run_all: waiting threads do not spin on the shared cores.
                env={**os.environ, "KERAS_BACKEND": backend, "OMP_WAIT_POLICY": "PASSIVE"},
                capture_output=True,
                text=True,
            )
            if done.returncode:
                print(f"{backend} failed:\n{done.stderr[-2000:]}")
                continue
            for row in json.loads(done.stdout.strip().splitlines()[-1]):
                worker_rows[backend, row["size"], row["problem"], row["input"]] = row
        print("Reference rows in plain numpy (no Keras)...", flush=True)
        references = {}
        numpy_lines = [
            "| size | problem (mAP) | numpy, argsort per row, s | numpy, whole-matrix argsort "
            "(fast-reid), s | its peak MiB | exact |",
            "|---|---|---:|---:|---:|---|",
        ]
        for size, problem in cases:
            data = dict(np.load(_data_path(directory, size, problem)))
            ids = (data["q_pids"], data["g_pids"], data["q_cams"], data["g_cams"])
            measured = measure(
                {
                    "per row": lambda data=data, ids=ids: numpy_argsort_scores(
                        data["distances"], *ids, args.max_rank
                    ),
                    "whole matrix": lambda data=data, ids=ids: numpy_whole_matrix_argsort_scores(
                        data["distances"], *ids, args.max_rank
                    ),
                },
                args.repeats,
            )
            cmc, aps = measured["per row"][2]
            references[size, problem] = cmc, aps
            whole_cmc, whole_aps = measured["whole matrix"][2]
            exact = _is_exact({"cmc": whole_cmc, "ap": np.nan_to_num(whole_aps, nan=-1)}, cmc, aps)
            numpy_lines.append(
                f"| {size} | {_problem_label(problem, aps)} | {measured['per row'][0]:.3f} | "
                f"{measured['whole matrix'][0]:.3f} | {measured['whole matrix'][1]:.0f} | "
                f"{exact} |"
            )
        lines = [
            "| size | problem (mAP) | backend | torchreid Cython, s | ours from distances, s "
            "| speed-up | ours in passes over the matrix (one `min`, s) | ours from features, s "
            "| matmul alone, s | features / matmul | peak MiB: torchreid / ours (distances, "
            "features) | exact |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
        ]
        for size, problem in cases:
            cmc, aps = references[size, problem]
            for backend in args.backends:
                row = {
                    name: worker_rows.get((backend, size, problem, name))
                    for name in ("torchreid", "distances", "features", "matmul alone", "one pass")
                }
                if row["distances"] is None:
                    continue
                ours, torchreid = row["distances"], row["torchreid"]
                exact = [_is_exact(ours, cmc, aps)]
                if torchreid is None:
                    torchreid_cell, speed_up, torchreid_peak = description, "n/a", "n/a"
                else:
                    torchreid_cell = f"{torchreid['seconds']:.3f}"
                    speed_up = f"{torchreid['seconds'] / ours['seconds']:.1f}x"
                    torchreid_peak = f"{torchreid['peak_mib']:.0f}"
                    exact.append(_is_exact(torchreid, cmc, aps))
                one_pass = row["one pass"]["seconds"]
                features, matmul = row["features"], row["matmul alone"]
                lines.append(
                    f"| {size} | {_problem_label(problem, aps)} | {backend} | {torchreid_cell} | "
                    f"{ours['seconds']:.3f} | {speed_up} | "
                    f"{paired_ratio(ours, row['one pass']):.1f} ({one_pass:.4f}) | "
                    f"{features['seconds']:.3f} | {matmul['seconds']:.3f} | "
                    f"{paired_ratio(features, matmul):.2f} | {torchreid_peak} / "
                    f"{ours['peak_mib']:.0f}, {features['peak_mib']:.0f} | "
                    f"{' / '.join(map(str, exact))} |"
                )
        print("\n".join(lines))
        print()
        print("\n".join(numpy_lines))


def _problem_label(problem, aps):
    """`hard (52.5%)`: the problem and its mAP (non-interpolated, the numpy reference)."""
    return f"{problem} ({100 * np.nanmean(aps):.1f}%)"


def identity_probe(args):
    """One query whose identity has K gallery images, among 255 ordinary ones."""
    from keras_rollback.metrics import ranking_scores

    print(f"{args.problem} problem, 256 queries x 16,000 gallery, {args.dim}-D")
    print("| K (gallery images of one query's identity) | mAP | median s | peak MiB |")
    print("|---:|---:|---:|---:|")
    for size in (0, 1000, 2000, 10000):
        rng = np.random.default_rng(size)
        num_queries, num_gallery, num_ids, num_cameras = 256, 16000, 700, 6
        q_pids = rng.integers(2, num_ids + 1, num_queries)
        q_pids[0] = 1
        g_pids = rng.integers(2, num_ids + 1, num_gallery)
        g_pids[rng.choice(num_gallery, size, replace=False)] = 1
        q_cams = rng.integers(1, num_cameras + 1, num_queries)
        g_cams = rng.integers(1, num_cameras + 1, num_gallery)
        if args.problem == "easy":  # random distances: no identity structure at all
            distances = rng.random((num_queries, num_gallery), dtype=np.float32)
        else:
            features = hard_features_fn(rng, num_ids, num_cameras, args.dim)
            distances = distance_matrix(features(q_pids, q_cams), features(g_pids, g_cams))
        ids = (q_pids, g_pids, q_cams, g_cams)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # queries without a true match
            seconds, peak, scores, _ = measure(
                {"ours": lambda d=distances, ids=ids: ranking_scores(d, *ids, verbose=0)},
                args.repeats,
            )["ours"]
        print(
            f"| {size:,} | {100 * scores.mean_average_precision:.1f}% | {seconds:.3f} | "
            f"{peak:.0f} |",
            flush=True,
        )


def large_gallery(args, num_queries, num_gallery, num_ids, distractors, label):
    """From features at a large size, with the progress bar: time and peak memory.

    No junk (id -1): dropping it from the gallery would copy the gallery's features once.
    """
    import keras

    from keras_rollback.metrics import ranking_scores_from_features

    q_feat, g_feat, *ids = reid_split(
        num_queries, num_gallery, num_ids, 15, 0.0, distractors, args.dim, problem=args.problem
    )
    with PeakMemory() as memory:
        start = time.perf_counter()
        scores = ranking_scores_from_features(q_feat, g_feat, *ids, verbose=1)
        seconds = time.perf_counter() - start
    features_mib = (q_feat.nbytes + g_feat.nbytes) / 2**20
    print(
        f"| {label} ({num_queries:,} x {num_gallery:,}, {args.dim}-D, {args.problem}) | "
        f"{keras.backend.backend()} | {seconds:.1f} s | +{memory.peak / 2**20:.0f} MiB above "
        f"the {features_mib:.0f} MiB of features | rank-1 {scores.cmc[0]:.4f}, "
        f"mAP {scores.mean_average_precision:.4f} |"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--task",
        default="compare",
        choices=["compare", "identity_probe", "scale", "distractors", "worker"],
    )
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument(
        "--problems", nargs="+", default=list(PROBLEMS), choices=PROBLEMS, help="For compare."
    )
    parser.add_argument(
        "--problem",
        default="hard",
        choices=PROBLEMS,
        help="For identity_probe, scale and distractors.",
    )
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max_rank", type=int, default=50)
    parser.add_argument(
        "--torchreid_source",
        default=os.environ.get("TORCHREID_SOURCE"),
        help="A deep-person-reid checkout (or its rank_cy.pyx) for torchreid's Cython row.",
    )
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.task == "worker":
        print(
            json.dumps(
                _worker(
                    args.data, args.repeats, args.max_rank, args.torchreid_source, args.problems
                )
            )
        )
    elif args.task == "compare":
        compare(args)
    elif args.task == "identity_probe":
        identity_probe(args)
    elif args.task == "scale":
        large_gallery(args, 11659, 82161, 3060, 0.0, "MSMT17 size")
    else:
        num_gallery = 15913 + 500_000
        distractors = (2793 + 500_000) / num_gallery  # Market-1501's own 2,793 and 500k
        large_gallery(args, 3368, num_gallery, 750, distractors, "Market-1501 + 500k distractors")


if __name__ == "__main__":
    main()
