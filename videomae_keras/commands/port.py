"""`videomae-keras port`: convert a checkpoint to Keras, SavedModel and ONNX files."""

import json

from videomae_keras.commands.arguments import POSITIVE, RATIO, UsageError, formats, image_size

NAME = 'port'
HELP = ('convert a PyTorch VideoMAE checkpoint to .keras, .weights.h5, SavedModel, ONNX, '
        'int8 ONNX')
DESCRIPTION = (
    'Convert an official or transformers VideoMAE checkpoint (or a registered name) into '
    'Keras files, a TF Serving SavedModel, ONNX and int8 ONNX, optionally verified against '
    'the PyTorch reference. Outputs are written atomically; existing ones are kept unless '
    '--overwrite.'
)


def add_arguments(parser):
    parser.add_argument(
        "source",
        nargs="?",
        help="official .pth, transformers folder, .safetensors/.bin file, or a registered "
        "name (see --list)",
    )
    parser.add_argument("--out", help="output folder (created if needed)")
    parser.add_argument(
        "--format",
        type=formats,
        default=["keras"],
        help="comma-separated: keras, h5 (.weights.h5), savedmodel (TF Serving), onnx, "
        "onnx-int8 (.int8.onnx: onnxruntime's dynamic int8 quantisation, for CPU serving) "
        "(default: keras)",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="compare with the PyTorch reference (transformers' VideoMAE) on a fixed input, "
        "then load every written file back and compare; exit 1 above --tolerance (the int8 "
        "ONNX file: above --int8-tolerance)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--name", help="base name of the outputs (default: from the source)")
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="largest max |diff| accepted by --verify (default 1e-4)")
    parser.add_argument("--int8-tolerance", type=float, default=None,
                        help="onnx-int8 under --verify: largest mean |diff| relative to the "
                        "float32 outputs' std (default 0.1)")
    parser.add_argument("--task", choices=["classifier", "pretrainer", "backbone"],
                        help="build this model instead of the checkpoint's own")
    parser.add_argument("--num-frames", type=POSITIVE, help="frames per clip (default 16)")
    parser.add_argument("--image-size", type=image_size, help="224 or height,width")
    parser.add_argument("--num-heads", type=POSITIVE,
                        help="attention heads, for widths the official table does not know")
    parser.add_argument("--mask-ratio", type=RATIO, help="pretrainers: tube mask ratio (0.9)")
    parser.add_argument("--num-masked", type=POSITIVE, help="pretrainers: masked tokens per clip")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.add_argument("--labels", help="class names of a classifier, one per line in head "
                        "order, saved in the .keras file (predict shows them)")
    parser.add_argument("--list", action="store_true", help="list the registered checkpoints")


def run(args):
    from videomae_keras import presets

    if args.list:
        from videomae_keras.checkpoints.cache import recorded_digest

        print(f"{'name':<48} {'backbone':<9} {'task':<10} {'dataset':<24} {'top-1':<6} sha256")
        for name in presets.names():
            info = presets.checkpoint(name)
            accuracy = str(info["top1"]) if info.get("top1") is not None else "-"
            print(f"{name:<48} {info['architecture']:<9} {info['task']:<10} "
                  f"{info['dataset']:<24} {accuracy:<6} {recorded_digest(name)}")
        print("sha256: no release publishes one; the first download records it in the cache "
              "and every later use checks the file against it.")
        return 0
    if not args.source or not args.out:
        raise UsageError("give a SOURCE and --out DIR (or --list)")
    from videomae_keras.checkpoints.porting import port

    overrides = {
        key: value
        for key, value in (
            ("num_frames", args.num_frames),
            ("image_size", args.image_size),
            ("num_heads", args.num_heads),
            ("mask_ratio", args.mask_ratio),
            ("num_masked", args.num_masked),
        )
        if value is not None
    }
    result = port(
        args.source,
        args.out,
        formats=args.format,
        verify=args.verify,
        overwrite=args.overwrite,
        name=args.name,
        tolerance=args.tolerance,
        task=args.task,
        progress=not args.quiet,
        labels=args.labels,
        **({} if args.int8_tolerance is None else {"int8_tolerance": args.int8_tolerance}),
        **overrides,
    )
    if args.json:
        print(json.dumps({
            "name": result.name, "task": result.task, "architecture": result.description,
            "parameters": result.parameters, "gflops": round(result.gflops, 2),
            "files": result.files, "reference": result.reference,
            "max_abs_diff": result.differences, "int8": result.int8, "notes": result.notes,
        }, indent=2))
    else:
        print(result.summary())
    return 0
