"""The options `pretrain` and `finetune` share (run folder, schedule, devices, hosts) and
their check."""

from videomae_keras.commands.arguments import (
    NON_NEGATIVE,
    POSITIVE,
    POSITIVE_FLOAT,
    UsageError,
    add_flags,
)

def add_training_arguments(parser):
    parser.add_argument("--out", required=True, help="run folder (logs, backup, final model)")
    parser.add_argument("--epochs", type=POSITIVE, default=100)
    parser.add_argument("--batch-size", type=POSITIVE, default=16)
    parser.add_argument("--warmup-epochs", type=NON_NEGATIVE,
                        help="default: the official fraction")
    parser.add_argument("--sampling-rate", type=POSITIVE, default=4,
                        help="frame stride of training clips (default 4; 2 for SSv2)")
    parser.add_argument("--clip-grad", type=POSITIVE_FLOAT, help="global gradient-norm clip")
    parser.add_argument("--workers", type=POSITIVE, default=2, help="data-loading threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mixed-precision", action="store_true",
                        help="mixed_bfloat16 compute (float32 weights and head)")
    parser.add_argument("--distribution", choices=["data", "fsdp"],
                        help="several devices: data (each batch split over the local devices; "
                        "jax, or tensorflow's MirroredStrategy) or fsdp (jax: weights, "
                        "gradients and optimizer state sharded over a --mesh)")
    parser.add_argument("--mesh", help="fsdp: batch x model devices, e.g. 2x4 (default: "
                        "every device on the batch axis)")
    parser.add_argument("--data-parallel", action="store_true",
                        help="the same as --distribution data")
    parser.add_argument("--remat", action="store_true",
                        help="recompute each transformer block in the backward pass: less "
                        "activation memory for about a third more compute, same result")
    parser.add_argument("--accumulate", type=POSITIVE, default=1,
                        help="average the gradients of N batches into each update (the "
                        "update's batch, which the learning rate scales with, is N x "
                        "--batch-size; default 1)")
    parser.add_argument("--coordinator", metavar="HOST:PORT",
                        help="several hosts: process 0's address (the same on every host); "
                        "with --num-processes and --process-id (jax; automatic on TPU VM "
                        "slices)")
    parser.add_argument("--num-processes", type=POSITIVE, help="several hosts: how many")
    parser.add_argument("--process-id", type=int, help="several hosts: this one's, 0 to P-1")
    parser.add_argument("--overwrite", action="store_true",
                        help="OUT holds another run: remove its files and start this one")
    parser.add_argument("--skip-video-check", action="store_true",
                        help="before training, check only that the listed videos exist "
                        "(default: open each one)")
    add_flags(parser, "quiet")
    parser.set_defaults(check=distribution_arguments)


def distribution_arguments(args):
    """distribution, mesh and accumulate for pretrain/finetune (--data-parallel: data)."""
    if args.data_parallel and args.distribution not in (None, "data"):
        raise UsageError("--data-parallel is --distribution data; give one of them")
    distribution = args.distribution or ("data" if args.data_parallel else None)
    if args.mesh and distribution != "fsdp":
        raise UsageError("--mesh goes with --distribution fsdp")
    if args.mesh:
        from videomae_keras.options import parse_mesh

        try:
            parse_mesh(args.mesh)
        except ValueError as e:
            raise UsageError(f"--mesh: {e}") from None
    hosts = (args.coordinator, args.num_processes, args.process_id)
    if any(v is not None for v in hosts) and not all(v is not None for v in hosts):
        raise UsageError("--coordinator, --num-processes and --process-id go together")
    if args.num_processes and not 0 <= args.process_id < args.num_processes:
        raise UsageError(f"--process-id must lie in [0, {args.num_processes})")
    if args.num_processes and not distribution:
        raise UsageError("several processes train with --distribution data or fsdp")
    return {"distribution": distribution, "mesh": args.mesh, "accumulate": args.accumulate,
            "coordinator": args.coordinator, "num_processes": args.num_processes,
            "process_id": args.process_id}
