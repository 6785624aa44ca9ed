"""What `pretrain` and `finetune` share: the options built from their settings class
(`videomae_keras.training.settings`), the run folder, and the checks of options that only
make sense together."""

from videomae_keras.commands.arguments import UsageError, add_flags


def add_training_arguments(parser, settings_class):
    """--out, one option per setting of `settings_class`, --data-parallel and --quiet."""
    parser.add_argument("--out", required=True, help="run folder (logs, backup, final model)")
    settings_class.add_arguments(parser)
    parser.add_argument("--data-parallel", action="store_true",
                        help="the same as --distribution data")
    add_flags(parser, "quiet")
    parser.set_defaults(check=check_distribution, settings_class=settings_class)


def check_distribution(args):
    """Devices and hosts: --data-parallel is --distribution data; --mesh needs fsdp; the
    three host options go together."""
    if args.data_parallel:
        if args.distribution not in (None, "data"):
            raise UsageError("--data-parallel is --distribution data; give one of them")
        args.distribution = "data"
    if args.mesh and args.distribution != "fsdp":
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
    if args.num_processes and not args.distribution:
        raise UsageError("several processes train with --distribution data or fsdp")


def training_settings(args):
    """The command's settings object, from the parsed options."""
    return args.settings_class.from_arguments(args)
