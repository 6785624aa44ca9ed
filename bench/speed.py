#!/usr/bin/env python
"""Model speed and memory, ours on each backend side by side with transformers' PyTorch
VideoMAE (SDPA attention), in one run on one machine.

Usage: python bench/speed.py [--quick] [--repeats 5] [--variants jax,tensorflow,torch,...]

Cases (16 frames at 224x224, random weights: speed does not depend on their values):
  ft-S-b1, ft-S-b4, ft-B-b1, ft-B-b4  fine-tuned inference (400 classes), batch 1 and 4
  pt-B-b1, pt-B-b4                    pretraining forward at 90% tube masking
  train-B-b2                          one pretraining train step (forward, loss, backward,
                                      AdamW update), batch 2
  int8-B-b1                           fine-tuned inference with int8 weights (Keras quantize)
  memory                              peak RSS of a fresh process running ViT-B fine-tuned
                                      inference at batch 1 (own row per backend)

Variants: transformers (PyTorch eager, torch.inference_mode for inference); jax and
tensorflow (jit_compile: XLA); torch (eager); torch-compile (jit_compile=True, i.e.
torch.compile; ft-B-b1, ft-B-b4 and train-B-b2 only, since compiling takes minutes per case
on 2 cores: about 1 for inference and 8 for the train step). Every variant runs in its own
process. Prints a table per case (median seconds, clips per second, ratio to transformers)
and writes bench/results/speed.json.

Paired rows: the torch and torch-compile workers also time transformers in their own
process for the target cases (ft-B-b1, ft-B-b4, train-B-b2), alternating calls. Both use the
same PyTorch, and the machine's speed drifts by 10-30% between processes, so these
same-process ratios are the ones to read against a 1.0x target. Likewise, where a run has
both pt-B-bN and ft-B-bN, each variant's worker times the two models alternating in one
process for the PT / FT ratio (a ptft-B-bN pseudo-case).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import _common  # noqa: E402

VARIANTS = ("transformers", "jax", "tensorflow", "torch", "torch-compile")
CASES = ("ft-S-b1", "ft-S-b4", "ft-B-b1", "ft-B-b4", "pt-B-b1", "pt-B-b4", "train-B-b2",
         "int8-B-b1")
QUICK_CASES = ("ft-S-b1", "ft-B-b1", "pt-B-b1", "train-B-b2")
# torch.compile takes minutes per case on 2 cores: the compiled variant times these only,
# within COMPILE_TIMEOUT seconds (compiling included), and has no memory row.
COMPILE_CASES = ("ft-B-b1", "ft-B-b4", "train-B-b2")
COMPILE_TIMEOUT = 2400
# Cases the torch workers (eager and compiled) also time against transformers in the same
# process, alternating.
PAIRED_CASES = ("ft-B-b1", "ft-B-b4", "train-B-b2")
FRAMES, SIZE, MASK_RATIO = 16, 224, 0.9


def parse_case(case):
    """'ft-B-b4' -> ('ft', 'B', 4)."""
    kind, size, batch = case.split("-")
    return kind, size, int(batch[1:])


# ---------------------------------------------------------------------------------------------
# Worker side: one variant, several cases, in this process.


def _inputs(size, batch, kind, seed=0):
    import numpy as np

    from videomae_keras.configs import grid_size
    from videomae_keras.masking import random_tube_mask

    rng = np.random.default_rng(seed)
    video = rng.standard_normal((batch, FRAMES, SIZE, SIZE, 3)).astype("float32")
    if kind == "ft" or kind == "int8":
        return video, None
    grid = grid_size(FRAMES, SIZE, 16, 2)
    mask = np.asarray(random_tube_mask(batch, grid, MASK_RATIO, seed=seed), bool)
    return video, mask


def _keras_model(kind, size):
    from videomae_keras.models import factories

    if kind in ("ft", "int8"):
        return getattr(factories, f"VideoMAE_ViT{size}16FT")(num_classes=400)
    return getattr(factories, f"VideoMAE_ViT{size}16PT")(mask_ratio=MASK_RATIO)


def _keras_step(variant, case):
    """(model, a no-argument function running one call of the case) on this backend."""
    import numpy as np

    from videomae_keras.training.optimizers import pretraining_optimizer

    kind, size, batch = parse_case(case)
    model = _keras_model(kind, size)
    video, mask = _inputs(size, batch, kind)
    jit = variant != "torch"
    if kind == "int8":
        model.quantize("int8")
    if kind == "train":
        model.compile(optimizer=pretraining_optimizer(1000, batch, 1.5e-4, 10), jit_compile=jit)
        step = lambda: model.train_on_batch([video, mask])  # noqa: E731
    else:
        model.compile(jit_compile=jit)
        x = video if mask is None else [video, mask]
        step = lambda: model.predict_on_batch(x)  # noqa: E731
    out = step()
    if kind != "train":
        out = np.asarray(out)
        assert np.isfinite(out).all(), "non-finite output"
    return model, step


def _keras_case(variant, case, repeats):
    """(median seconds, runs) of our model for one case on this process's backend; for the
    torch variants (eager, compiled) and a paired case, also the same-process comparison
    with transformers."""
    import keras

    model, step = _keras_step(variant, case)
    seconds, runs = _common.median_seconds(step, repeats, warmup=1)
    paired = None
    if _backend_of(variant) == "torch" and case in PAIRED_CASES:
        reference = _transformers_step(case)
        ref_seconds, our_seconds, ratio = _common.paired_seconds(reference, step, repeats)
        paired = {"paired_ratio": ratio, "paired_seconds": our_seconds,
                  "paired_transformers_seconds": ref_seconds, "paired_runs": repeats}
        del reference
    del model
    keras.backend.clear_session()
    return seconds, runs, paired


def _transformers_model(kind, size):
    import transformers

    from videomae_keras.configs import OFFICIAL_EPSILONS
    from videomae_keras.convert.transformers import arguments_to_config
    from videomae_keras.presets import SIZES

    task = "classifier" if kind in ("ft", "int8") else "pretrainer"
    preset = SIZES[size + "16"]  # the sizes benched here all use patch 16
    config = dict(preset.backbone, num_frames=FRAMES, image_size=SIZE, tubelet_size=2,
                  num_channels=3, qv_bias=True, num_classes=400, use_mean_pooling=True,
                  mask_ratio=MASK_RATIO, **OFFICIAL_EPSILONS,
                  **(preset.decoder if task == "pretrainer" else {}))
    hf_config = transformers.VideoMAEConfig(**arguments_to_config(config, task))
    hf_config._attn_implementation = "sdpa"
    cls = (transformers.VideoMAEForVideoClassification if task == "classifier"
           else transformers.VideoMAEForPreTraining)
    return cls(hf_config)


def _transformers_step(case):
    """A no-argument function running one call of the case on transformers' model."""
    import numpy as np
    import torch

    kind, size, batch = parse_case(case)
    model = _transformers_model(kind, size)
    video, mask = _inputs(size, batch, kind)
    pixels = torch.from_numpy(np.ascontiguousarray(video.transpose(0, 1, 4, 2, 3)))
    masks = None if mask is None else torch.from_numpy(mask)
    if kind == "train":
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95),
                                      weight_decay=0.05)

        def step():
            loss = model(pixel_values=pixels, bool_masked_pos=masks).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    else:
        model.eval()

        def step():
            with torch.inference_mode():
                if masks is None:
                    return model(pixel_values=pixels).logits
                return model(pixel_values=pixels, bool_masked_pos=masks).logits

    step()
    return step


def _pt_over_ft_case(variant, case, repeats):
    """Pretraining over fine-tuned forward of one variant, both models timed alternating in
    this process ('ptft-B-b1'): a ratio that the machine's drift between processes and over
    minutes does not move."""
    import keras

    _, size, batch = parse_case(case)
    ft_case, pt_case = f"ft-{size}-b{batch}", f"pt-{size}-b{batch}"
    if variant == "transformers":
        ft_step, pt_step = _transformers_step(ft_case), _transformers_step(pt_case)
    else:
        (_, ft_step), (_, pt_step) = _keras_step(variant, ft_case), _keras_step(variant, pt_case)
    ft_seconds, pt_seconds, ratio = _common.paired_seconds(ft_step, pt_step, repeats)
    del ft_step, pt_step
    if variant != "transformers":
        keras.backend.clear_session()
    return {"ft_seconds": ft_seconds, "pt_seconds": pt_seconds, "pt_over_ft": ratio,
            "runs": repeats}


def _transformers_case(case, repeats):
    if parse_case(case)[0] == "int8":
        return None, 0
    return _common.median_seconds(_transformers_step(case), repeats, warmup=1)


def _memory(variant):
    """Peak RSS of this fresh process: imports, ViT-B/16 FT built, batch-1 inference x3."""
    before = _common.peak_rss_mb()
    if variant == "transformers":
        import numpy as np
        import torch

        model = _transformers_model("ft", "B").eval()
        video, _ = _inputs("B", 1, "ft")
        pixels = torch.from_numpy(np.ascontiguousarray(video.transpose(0, 1, 4, 2, 3)))
        after_import = _common.peak_rss_mb()
        with torch.inference_mode():
            for _ in range(3):
                model(pixel_values=pixels)
    else:
        import keras  # noqa: F401

        model = _keras_model("ft", "B")
        model.compile(jit_compile=variant != "torch")
        video, _ = _inputs("B", 1, "ft")
        after_import = _common.peak_rss_mb()
        for _ in range(3):
            model.predict_on_batch(video)
    return {"peak_rss_mb": _common.peak_rss_mb(), "rss_before_model_mb": before,
            "rss_model_built_mb": after_import}


def worker(variant, cases, repeats):
    results = {}
    if cases == ["memory"]:
        return {"memory": _memory(variant)}
    for case in cases:
        paired = None
        try:
            if parse_case(case)[0] == "ptft":
                results[case] = _pt_over_ft_case(variant, case, repeats)
                continue
            if variant == "transformers":
                seconds, runs = _transformers_case(case, repeats)
            else:
                seconds, runs, paired = _keras_case(variant, case, repeats)
        except Exception as error:  # one failing case must not hide the others
            results[case] = {"error": f"{type(error).__name__}: {error}"[:300]}
            continue
        if seconds is not None:
            results[case] = {"seconds": seconds, "runs": runs, **(paired or {})}
    return results


# ---------------------------------------------------------------------------------------------
# Driver side.


def _backend_of(variant):
    """The Keras backend a variant runs on (None: transformers, no Keras)."""
    return {"torch-compile": "torch", "transformers": None}.get(variant, variant)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--cases", help="comma-separated cases (default: all; see above)")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated: " + ", ".join(VARIANTS))
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case")
    parser.add_argument("--quick", action="store_true",
                        help="fewer cases and runs (" + ", ".join(QUICK_CASES) + "; 3 runs)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-RSS rows")
    parser.add_argument("--out", default="speed", help="results name under bench/results/")
    args = parser.parse_args()
    cases = (args.cases.split(",") if args.cases else
             list(QUICK_CASES if args.quick else CASES))
    repeats = 3 if args.quick else args.repeats

    if args.worker:
        _common.emit(worker(args.worker, cases, repeats))
        return

    script = os.path.abspath(__file__)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    rows, memory, pt_vs_ft = [], [], []
    for variant in variants:
        compiled = variant == "torch-compile"
        variant_cases = [c for c in cases if c in COMPILE_CASES] if compiled else cases
        if not variant_cases:
            continue
        same_process = [] if compiled else [
            f"ptft-B-b{b}" for b in (1, 4) if f"pt-B-b{b}" in cases and f"ft-B-b{b}" in cases]
        print(f"[{variant}] {', '.join(variant_cases + same_process)} ...", file=sys.stderr,
              flush=True)
        answer = _run(script, variant,
                      ["--cases", ",".join(variant_cases + same_process),
                       "--repeats", str(repeats)],
                      timeout=COMPILE_TIMEOUT if compiled else 3600)
        for case in same_process:
            result = answer.get(case, {"error": answer.get("error", "not run")})
            pt_vs_ft.append({"backend": variant, "batch": parse_case(case)[2],
                             "same_process": result.get("pt_over_ft"),
                             **({"error": result["error"]} if "error" in result else {})})
        for case in variant_cases:
            result = answer.get(case, {"error": answer.get("error", "not run")})
            kind, size, batch = parse_case(case)
            if variant == "transformers" and kind == "int8":
                continue
            row = {"case": case, "backend": variant, **result}
            if "seconds" in result:
                row["clips_per_s"] = batch / result["seconds"]
            rows.append(row)
        if not args.no_memory and not compiled:
            answer = _run(script, variant, ["--cases", "memory"])
            memory.append({"backend": variant, **answer.get("memory", answer)})
    # int8 rows compare with transformers' float32 model (it has no int8 path)
    _common.add_ratios(rows, reference_case={"int8-B-b1": "ft-B-b1"})
    for row in pt_vs_ft:  # the ratio of the separately timed cases, beside the paired one
        pt = _find(rows, f"pt-B-b{row['batch']}", row["backend"])
        ft = _find(rows, f"ft-B-b{row['batch']}", row["backend"])
        if pt and ft:
            row["pt_over_ft"] = pt["seconds"] / ft["seconds"]
    payload = {"machine": _common.machine(), "frames": FRAMES, "image_size": SIZE,
               "mask_ratio": MASK_RATIO, "repeats": repeats, "rows": rows,
               "pt_over_ft": pt_vs_ft, "memory": memory,
               "command": _common.command()}
    path = _common.save(args.out, payload)
    print(render(payload))
    print(f"\nwritten: {os.path.relpath(path, _common.ROOT)}")


def _run(script, variant, extra, timeout=3600):
    return _common.run_worker(script, variant, extra, backend=_backend_of(variant),
                              timeout=timeout)


def _find(rows, case, variant):
    return next((r for r in rows if r["case"] == case and r["backend"] == variant
                 and "seconds" in r), None)


def render(payload):
    """The speed tables as Markdown."""
    parts = ["Median seconds per call (ratio: ours / transformers; below 1 is faster).", "",
             _common.table(payload["rows"], [("case", "case"), ("backend", "variant"),
                                             ("seconds", "median s"),
                                             ("clips_per_s", "clips/s"),
                                             ("ratio", "x transformers"),
                                             ("error", "error")])]
    paired = [r for r in payload["rows"] if "paired_ratio" in r]
    if paired:
        parts += ["", "Same process, alternating calls (torch and transformers share one "
                  "PyTorch; median of the per-pair ratios):", "",
                  _common.table(paired, [("case", "case"), ("backend", "variant"),
                                         ("paired_seconds", "median s"),
                                         ("paired_transformers_seconds",
                                          "transformers median s"),
                                         ("paired_ratio", "x transformers")])]
    if payload.get("pt_over_ft"):
        parts += ["", "Pretraining forward (90% masked) over fine-tuned forward, ViT-B (same "
                  "process: both models timed alternating in one process, median of the "
                  "per-pair ratios; cases: the ratio of the two case rows above):", "",
                  _common.table(payload["pt_over_ft"], [("backend", "variant"),
                                                        ("batch", "batch"),
                                                        ("same_process", "PT / FT same process"),
                                                        ("pt_over_ft", "PT / FT cases"),
                                                        ("error", "error")])]
    if payload.get("memory"):
        parts += ["", "Peak RSS (MiB), fresh process, ViT-B/16 fine-tuned inference at batch 1:",
                  "", _common.table(payload["memory"], [("backend", "variant"),
                                                        ("peak_rss_mb", "peak"),
                                                        ("rss_model_built_mb", "model built"),
                                                        ("error", "error")])]
    return "\n".join(parts)


if __name__ == "__main__":
    main()
