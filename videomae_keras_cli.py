"""Entry point of the `videomae-keras` command.

It sits beside the `videomae_keras` package rather than in it so that `--help`, and every
`COMMAND --help`, answer without importing Keras (the package registers its layers with Keras
when imported, which takes seconds): the package loads once a command runs.
"""

DEFER_PACKAGE_IMPORTS = True  # read by videomae_keras/__init__.py


def main(argv=None):
    from videomae_keras import cli

    return cli.main(argv)


if __name__ == "__main__":
    import sys

    sys.exit(main())
