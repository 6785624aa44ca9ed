"""`videomae-keras plan`: the per-device memory of a training configuration."""

import json

from videomae_keras.commands.arguments import POSITIVE, add_flags

NAME = 'plan'
HELP = 'per-device memory of a training configuration, and the largest batch per chip'
DESCRIPTION = (
    'Compiles the real training step for the mesh on virtual CPU devices (abstract inputs: '
    "nothing is allocated) and prints XLA's per-device memory analysis and the largest batch "
    'per replica that fits on TPU v4, v5e, v5p, A100/H100 and H200. Runs on JAX in a child '
    'process, whatever KERAS_BACKEND says.'
)


def add_arguments(parser):
    parser.add_argument("--arch", required=True,
                         help="S16FT ... g14FT (fine-tuning) or S16PT ... g14PT (pretraining)")
    parser.add_argument("--devices", type=POSITIVE, default=8, help="devices (default 8)")
    parser.add_argument("--distribution", choices=["data", "fsdp"],
                         help="data or fsdp (default: fsdp on several devices)")
    parser.add_argument("--mesh", help="fsdp: batch x model devices, e.g. 2x4")
    parser.add_argument("--batch-size", type=POSITIVE,
                         help="global batch (default: one clip per replica)")
    parser.add_argument("--remat", action="store_true", help="recompute blocks (see finetune)")
    parser.add_argument("--mixed-precision", action="store_true", help="mixed_bfloat16")
    parser.add_argument("--accumulate", type=POSITIVE, default=1,
                         help="gradient accumulation (adds its accumulators)")
    parser.add_argument("--num-frames", type=POSITIVE, default=16)
    parser.add_argument("--image-size", type=POSITIVE, default=224)
    parser.add_argument("--num-classes", type=POSITIVE, default=400)
    parser.add_argument("--quick", action="store_true",
                        help="two compiles only: extrapolate the largest batches instead of "
                             "compiling each (can be far too large)")
    add_flags(parser, "json", "quiet")


def run(args):
    from videomae_keras.plan import format_plan, plan

    distribution = args.distribution or ("fsdp" if args.devices > 1 else None)
    result = plan(args.arch, devices=args.devices, distribution=distribution, mesh=args.mesh,
                  batch_size=args.batch_size, remat=args.remat,
                  mixed_precision=args.mixed_precision, accumulate=args.accumulate,
                  num_frames=args.num_frames, image_size=args.image_size,
                  num_classes=args.num_classes, check_fits=not args.quick,
                  progress=not args.quiet)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print("\n".join(format_plan(result)))
    return 0
