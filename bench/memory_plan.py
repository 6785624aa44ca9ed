"""The README's memory table: `videomae_keras.plan` for every size, fine-tuning and
pretraining, data parallel against fully sharded, remat off and on, at 16x224 on 8 devices.

    python bench/memory_plan.py [--sizes S16 B16 ...] [--modes data fsdp fsdp-remat ...]
    python bench/memory_plan.py --readme      # only rewrite README.md's table from the JSON

Each plan compiles the real training step on 8 virtual CPU devices (nothing is allocated) at
one and two clips per replica, then each chip's largest batch (`plan.largest_batches`).
Results go to bench/results/memory_plan.json (merged with what is there, so the table can be
built in parts, by runs side by side too) and the table is printed.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common  # noqa: E402

from videomae_keras.plan import CHIPS, GiB, plan  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                       "memory_plan.json")
BEGIN, END = "<!-- memory-plan:begin -->", "<!-- memory-plan:end -->"
SIZES = ("S16", "B16", "L16", "H16", "g14")
MODES = {  # name: (distribution, remat, mixed precision)
    "data": ("data", False, False),
    "fsdp": ("fsdp", False, False),
    "fsdp-remat": ("fsdp", True, False),
    "fsdp-remat-bf16": ("fsdp", True, True),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES))
    parser.add_argument("--tasks", nargs="+", default=["FT", "PT"])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--readme", action="store_true",
                        help="only rewrite README.md's table from the results file")
    args = parser.parse_args()
    results = {}
    if os.path.exists(RESULTS):
        with open(RESULTS, encoding="utf-8") as f:
            results = json.load(f)
    if args.readme:
        write_readme(table(results))
        return
    for task in args.tasks:
        for size in args.sizes:
            for mode in args.modes:
                distribution, remat, mixed = MODES[mode]
                key = f"{size}{task} {mode}"
                start = time.perf_counter()
                result = plan(f"{size}{task}", devices=args.devices, distribution=distribution,
                              remat=remat, mixed_precision=mixed, progress=False)
                result["seconds"] = round(time.perf_counter() - start, 1)
                print(f"{key}: {row(result)}  ({result['seconds']} s)", flush=True)
                results = _merged(key, result)
    print("\n".join(table(results)))
    write_readme(table(results))


def _merged(key, result):
    """The results file with `key` set, read again first (another run may have added rows)."""
    results = {}
    if os.path.exists(RESULTS):
        with open(RESULTS, encoding="utf-8") as f:
            results = json.load(f)
    results[key] = result
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    temporary = f"{RESULTS}.{os.getpid()}.tmp"  # two runs may merge at once
    with open(temporary, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1, sort_keys=True)
    os.replace(temporary, RESULTS)
    return results


def write_readme(lines):
    """Puts the table between README.md's memory-plan markers."""
    _common.replace_readme_block(BEGIN, END, "\n".join(lines) + "\n")


def row(result):
    memory = result["per_device_bytes"]
    fits = result["max_batch_per_replica"]
    return (f"state {memory['model_state'] / GiB:.2f} GiB, total {memory['total'] / GiB:.2f} "
            f"GiB at 1 clip, +{result['per_clip_bytes'] / GiB:.2f} GiB per clip; fits " +
            ", ".join(f"{chip} {fits[chip]}" for chip in CHIPS))


def table(results):
    """Markdown: one row per model and mode."""
    lines = ["| model | mode | weights + optimizer / device | total at 1 clip / device | "
             "per extra clip | " + " | ".join(f"{c} ({s} GiB)" for c, s in CHIPS.items()) +
             " |", "|---|---|---|---|---|" + "---|" * len(CHIPS)]
    order = {name: i for i, name in enumerate(MODES)}
    for key in sorted(results, key=lambda k: (k.split()[0][-2:], SIZES.index(k.split()[0][:-2])
                                              if k.split()[0][:-2] in SIZES else 9,
                                              order.get(k.split()[1], 9))):
        result = results[key]
        memory = result["per_device_bytes"]
        fits = result["max_batch_per_replica"]
        lines.append(
            f"| {key.split()[0]} | {key.split()[1]} | {memory['model_state'] / GiB:.2f} GiB | "
            f"{memory['total'] / GiB:.2f} GiB | {result['per_clip_bytes'] / GiB:.2f} GiB | "
            + " | ".join(str(fits[c]) for c in CHIPS) + " |")
    return lines


if __name__ == "__main__":
    main()
