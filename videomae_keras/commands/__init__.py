"""The `videomae-keras` commands, one module each: its name, help, arguments and run function.

Parsing needs no Keras: the modules import the library inside `run`, so `--help` answers at
once. `cli.py` runs the chosen command (quiet start, signals, one-line errors).
"""

import argparse
import importlib

# command modules, in the order `--help` lists them
MODULES = ("port", "predict", "features", "reconstruct", "explain", "demo", "pretrain", "finetune",
           "make_synthetic", "plan", "probe")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="videomae-keras",
        description="VideoMAE in Keras 3: classify videos, extract features, picture "
        "reconstructions, and port, check and export checkpoints.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in MODULES:
        module = importlib.import_module(f"videomae_keras.commands.{name}")
        command = commands.add_parser(module.NAME, help=module.HELP,
                                      description=module.DESCRIPTION)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser
