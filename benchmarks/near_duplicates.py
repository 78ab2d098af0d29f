"""Finding near-duplicates at 100k and 1M images: time and what is found.

The Explore page's "Find near-duplicates" (a worker job above 20,000 images) searches the faiss
index for every image's 5 nearest neighbours, a slice at a time, then groups the close pairs
(``mumic_core.model.duplicates.group_near_duplicates``). This runs that pass on synthetic
embeddings with planted near-duplicates:

- Unit vectors (dimension 512, like ViT-B-32) around 1,000 cluster centres, spread so that an
  image's nearest neighbour sits at cosine ~0.95 (the starter model's real embeddings of
  generated scenes: 0.97 / 0.95 / 0.86 for the 1st / 10th / 1,000th neighbour, see search.md).
- 1 % of the images get a near copy (cosine 0.990 to 0.9998: from a re-encoded photo to a
  lightly edited one), a fifth of those a second copy, so the truth is pairs and triples.
- Reported per size: the HNSW build (done once at promotion in the product, not by the job),
  the search pass, the grouping (vectorised, and the first version's pair-by-pair union-find
  as the baseline), the planted sets found whole, and grouped images that were not planted.

A seed changes the data draw and the planting; the index is built anew for each seed.

    .venv/bin/python benchmarks/near_duplicates.py [--runs 100000:3 1000000:3] [--smoke [DIR]]

Writes benchmarks/results/near_duplicates.{json,md}. ``--smoke``: 3,000 vectors, 2 seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._smoke import add_smoke_option, check_written, require, smoke_folder  # noqa: E402
from mumic_core.encoders.cache import in_slices  # noqa: E402
from mumic_core.model.duplicates import group_near_duplicates  # noqa: E402
from mumic_core.model.vector_index import VectorIndex  # noqa: E402
from mumic_core.pipeline.search import nearest_of_each  # noqa: E402

RESULTS = ROOT / "benchmarks/results"
NEIGHBOURS = 5  # as pipeline.search.near_duplicate_groups asks
# Planted sets by the cosine of their least similar pair.
BINS = (("0.990-0.995", 0.990, 0.995), ("0.995-0.998", 0.995, 0.998), ("0.998-1", 0.998, 1.01))


def union_find_groups(ids, found, sims, min_similarity=0.97, relative=0.1) -> list[list[int]]:
    """The first version's grouping, one pair at a time in Python: the baseline (and the
    tests' statement of the rule)."""
    ids = [int(i) for i in ids]
    first = [
        1.0 - next((float(s) for j, s in zip(row, row_sims) if j >= 0 and j != i), 0.0)
        for i, row, row_sims in zip(ids, found, sims)
    ]
    max_distance = min(1.0 - min_similarity, relative * float(np.median(first)))
    parent = {i: i for i in ids}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, row, row_sims in zip(ids, found, sims):
        for j, s in zip(row, row_sims):
            if j >= 0 and j != i and 1.0 - float(s) <= max_distance and int(j) in parent:
                parent[root(i)] = root(int(j))
    groups: dict[int, list[int]] = {}
    for i in ids:
        groups.setdefault(root(i), []).append(i)
    return sorted((g for g in groups.values() if len(g) > 1), key=len, reverse=True)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def collection(n: int, dim: int, seed: int, clusters: int = 1000) -> tuple[np.ndarray, list[set[int]]]:
    """(n unit embeddings in a shuffled order, the planted sets of row numbers)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    originals = int(n * 0.01)
    seconds = originals // 5
    base = n - originals - seconds
    emb = np.empty((n, dim), dtype=np.float32)
    for start in range(0, base, 100_000):
        m = min(100_000, base - start)
        block = centres[rng.integers(clusters, size=m)] + 0.23 * rng.standard_normal((m, dim)).astype(np.float32)
        emb[start : start + m] = _unit(block)
    sources = rng.choice(base, size=originals, replace=False)

    def copies(of: np.ndarray) -> np.ndarray:
        tilt = _unit(rng.standard_normal((len(of), dim)).astype(np.float32))
        size = rng.uniform(0.02, 0.14, size=(len(of), 1)).astype(np.float32)  # cosine 0.990-0.9998
        return _unit(emb[of] + size * tilt)

    emb[base : base + originals] = copies(sources)
    emb[base + originals :] = copies(sources[:seconds])
    sets = [{int(s), base + k} for k, s in enumerate(sources)]
    for k in range(seconds):
        sets[k].add(base + originals + k)
    shuffle = rng.permutation(n)  # copies are not next to their originals in id order
    where = np.empty(n, dtype=np.int64)
    where[shuffle] = np.arange(n)
    return emb[shuffle], [{int(where[r]) for r in planted} for planted in sets]


def one_run(n: int, dim: int, seed: int, baseline: bool) -> dict:
    emb, planted = collection(n, dim, seed)
    ids = np.arange(1, n + 1, dtype=np.int64)  # image ids as the store gives them
    t = time.perf_counter()
    index = VectorIndex.for_size(dim, n)
    for start, block in in_slices(emb):
        index.add(ids[start : start + len(block)], block)
    build_s = time.perf_counter() - t
    t = time.perf_counter()
    found, sims = nearest_of_each(index, emb, NEIGHBOURS + 1)
    search_s = time.perf_counter() - t
    t = time.perf_counter()
    groups = group_near_duplicates(ids, found, sims)
    group_s = time.perf_counter() - t
    other = (found >= 0) & (found != ids[:, None])
    nearest = sims[np.arange(n), other.argmax(axis=1)]
    row: dict = {
        "seed": seed,
        "nearest_neighbour_median": round(float(np.median(nearest)), 4),
        "index": "hnsw" if index.approximate else "exact",
        "build_s": round(build_s, 2),
        "search_s": round(search_s, 2),
        "group_s": round(group_s, 3),
    }
    if baseline:
        t = time.perf_counter()
        assert union_find_groups(ids, found, sims) == groups
        row["union_find_s"] = round(time.perf_counter() - t, 3)
    truth = {frozenset(int(ids[r]) for r in s) for s in planted}
    found_sets = {frozenset(g) for g in groups}
    closeness = {  # a planted set's least similar pair
        frozenset(int(ids[r]) for r in s): float((emb[sorted(s)] @ emb[sorted(s)].T).min()) for s in planted
    }
    by_bin = {}
    for name, low, high in BINS:
        in_bin = [t for t in truth if low <= closeness[t] < high]
        by_bin[name] = round(sum(t in found_sets for t in in_bin) / len(in_bin), 4) if in_bin else None
    planted_ids = set().union(*truth)
    grouped = {i for g in groups for i in g}
    row.update(
        planted_sets=len(truth),
        found_whole=round(len(truth & found_sets) / len(truth), 4),
        found_at_least_a_pair=round(sum(any(len(s & f) >= 2 for f in found_sets) for s in truth) / len(truth), 4),
        groups=len(groups),
        grouped_not_planted=len(grouped - planted_ids),
        found_whole_by_similarity=by_bin,
    )
    print(f"{n:>9,} seed {seed}: {row}", flush=True)
    return row


def _mean_sd(values: list[float]) -> str:
    return f"{np.mean(values):.4g} ± {np.std(values, ddof=1):.2g}" if len(values) > 1 else f"{values[0]:.4g}"


def markdown(r: dict) -> str:
    lines = [
        "# Near-duplicates: the Explore page's search, at scale",
        "",
        f"`{r['command']}` ({r['machine']}; faiss threads: {r['faiss_threads']}).",
        "",
        "Synthetic 512-d embeddings around 1,000 centres; 1 % of the images have a planted near copy "
        "(cosine 0.990-0.9998), a fifth of those a second one. Each image's "
        f"{NEIGHBOURS} nearest neighbours are searched (the job's pass), then grouped. Mean ± sd over seeds "
        "(each seed a new draw, planting and index); one value where one seed ran.",
        "",
        "| images | seeds | index | build (once, at promotion) | search pass | grouping | "
        "grouping pair by pair (first version) |",
        "|---|---|---|---|---|---|---|",
    ]

    def col(rows: list[dict], key: str, unit: str = " s") -> str:
        values = [x[key] for x in rows if x.get(key) is not None]
        return _mean_sd(values) + unit if values else "not run"

    for size in r["sizes"]:
        rows = size["runs"]
        lines.append(
            f"| {size['images']:,} | {len(rows)} | {rows[0]['index']} | {col(rows, 'build_s')} | "
            f"{col(rows, 'search_s')} | {col(rows, 'group_s')} | {col(rows, 'union_find_s')} |"
        )
    lines += [
        "",
        "What was found: a planted set counts when one group is exactly its images; by the cosine of its "
        "least similar pair. The rule links pairs closer than 0.1 x the median distance to the nearest "
        "neighbour (and than 0.03), so how close a copy must be depends on how crowded the collection is.",
        "",
        "| images | nearest neighbour (median cosine) | found whole | "
        + " | ".join(f"copy at {name}" for name, _, _ in BINS)
        + " | found at least a pair | grouped images not planted |",
        "|---|---|---|" + "---|" * len(BINS) + "---|---|",
    ]
    for size in r["sizes"]:
        rows = size["runs"]
        bins = [col([{"v": x["found_whole_by_similarity"][name]} for x in rows], "v", "") for name, _, _ in BINS]
        lines.append(
            f"| {size['images']:,} | {col(rows, 'nearest_neighbour_median', '')} | {col(rows, 'found_whole', '')} | "
            + " | ".join(bins)
            + f" | {col(rows, 'found_at_least_a_pair', '')} | {col(rows, 'grouped_not_planted', '')} |"
        )
    lines += [
        "",
        "The job's time is the search pass plus the grouping (plus reading the embedding cache, which the "
        "scale benchmark measures).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="*", default=["100000:3", "1000000:3"], help="IMAGES:SEEDS ...")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--baseline-up-to", type=int, default=1_000_000, help="time the pair-by-pair grouping up to")
    ap.add_argument("--out", type=Path, default=RESULTS / "near_duplicates")
    add_smoke_option(ap)
    args = ap.parse_args()
    if args.smoke is not None:
        args.runs, args.out = ["3000:2"], smoke_folder(args.smoke, "near_duplicates") / "near_duplicates"
    result: dict = {
        "command": "python benchmarks/near_duplicates.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "faiss_threads": __import__("faiss").omp_get_max_threads(),
        "sizes": [],
    }
    for spec in args.runs:
        n, seeds = (int(x) for x in spec.split(":"))
        runs = [one_run(n, args.dim, seed, n <= args.baseline_up_to) for seed in range(seeds)]
        result["sizes"].append({"images": n, "runs": runs})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    check_written(args.out.with_suffix(".json"), args.out.with_suffix(".md"))
    for size in result["sizes"]:
        for run in size["runs"]:
            require(run, ["build_s", "search_s", "group_s", "found_whole", "grouped_not_planted"], "a run's row")


if __name__ == "__main__":
    main()
