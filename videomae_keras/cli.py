"""The `videomae-keras` command line."""

import argparse
import json
import sys

EXIT_VERIFY_FAILED = 1
EXIT_ERROR = 2


def _image_size(text):
    parts = [int(p) for p in text.lower().replace("x", ",").split(",") if p]
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        return tuple(parts)
    raise argparse.ArgumentTypeError("give one size (224) or height,width (224,320)")


def _formats(text):
    from videomae_keras.porting import FORMATS

    formats = [f.strip().lower() for f in text.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise argparse.ArgumentTypeError(
            f"unknown format(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(FORMATS)}"
        )
    return formats


def add_port_arguments(parser):
    parser.add_argument(
        "source",
        nargs="?",
        help="official .pth, transformers folder, .safetensors/.bin file, or a registered "
        "name (see --list)",
    )
    parser.add_argument("--out", help="output folder (created if needed)")
    parser.add_argument(
        "--format",
        type=_formats,
        default=["keras"],
        help="comma-separated: keras, h5 (.weights.h5), savedmodel (TF Serving), onnx "
        "(default: keras)",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="compare with the PyTorch reference (transformers' VideoMAE) on a fixed input, "
        "then load every written file back and compare; exit 1 above --tolerance",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--name", help="base name of the outputs (default: from the source)")
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="largest max |diff| accepted by --verify (default 1e-4)")
    parser.add_argument("--task", choices=["classifier", "pretrainer", "backbone"],
                        help="build this model instead of the checkpoint's own")
    parser.add_argument("--num-frames", type=int, help="frames per clip (default 16)")
    parser.add_argument("--image-size", type=_image_size, help="224 or height,width")
    parser.add_argument("--num-heads", type=int,
                        help="attention heads, for widths the official table does not know")
    parser.add_argument("--mask-ratio", type=float, help="pretrainers: tube mask ratio (0.9)")
    parser.add_argument("--num-masked", type=int, help="pretrainers: masked tokens per clip")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.add_argument("--list", action="store_true", help="list the registered checkpoints")


def run_port(args):
    from videomae_keras import registry
    from videomae_keras.porting import port

    if args.list:
        for name in registry.names():
            info = registry.entry(name)
            accuracy = f" top-1 {info['top1']}" if info.get("top1") is not None else ""
            print(f"{name:<48} {info['architecture']:<9} {info['task']:<10} {info['dataset']}{accuracy}")
        return 0
    if not args.source or not args.out:
        raise _UsageError("give a SOURCE and --out DIR (or --list)")
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
        **overrides,
    )
    if args.json:
        print(json.dumps({
            "name": result.name, "task": result.task, "architecture": result.description,
            "parameters": result.parameters, "gflops": round(result.gflops, 2),
            "files": result.files, "reference": result.reference,
            "max_abs_diff": result.differences, "notes": result.notes,
        }, indent=2))
    else:
        print(result.summary())
    return 0


class _UsageError(Exception):
    pass


def build_parser():
    parser = argparse.ArgumentParser(
        prog="videomae-keras",
        description="VideoMAE in Keras 3: port, check and export checkpoints.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    port = commands.add_parser(
        "port",
        help="convert a PyTorch VideoMAE checkpoint to .keras, .weights.h5, SavedModel, ONNX",
        description="Convert an official or transformers VideoMAE checkpoint (or a registered "
        "name) into Keras files, a TF Serving SavedModel and ONNX, optionally verified against "
        "the PyTorch reference. Outputs are written atomically; existing ones are kept unless "
        "--overwrite.",
    )
    add_port_arguments(port)
    port.set_defaults(run=run_port)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return EXIT_ERROR
    from videomae_keras.porting import VerificationError

    try:
        return args.run(args)
    except VerificationError as e:
        print(f"videomae-keras {args.command}: verification failed: {e}", file=sys.stderr)
        return EXIT_VERIFY_FAILED
    except KeyboardInterrupt:
        print(f"videomae-keras {args.command}: interrupted; nothing partial was kept", file=sys.stderr)
        return 130
    except (_UsageError, ValueError, KeyError, FileExistsError, FileNotFoundError, ImportError,
            RuntimeError, OSError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"videomae-keras {args.command}: error: {message}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
