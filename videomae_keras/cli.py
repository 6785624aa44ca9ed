"""The `videomae-keras` command line.

Parsing needs no Keras (the console command starts through `videomae_keras_cli`, so `--help`
answers at once); `main` loads Keras and the package only once a command runs, quietly:
TensorFlow's and the video decoders' own start-up and error chatter is kept out of the
terminal here, at the entry point, never by the library itself.
"""

import contextlib
import logging
import os
import signal
import sys

from videomae_keras.commands import build_parser
from videomae_keras.commands.arguments import (  # noqa: F401  (DEFAULT_*: the commands' defaults)
    DEFAULT_CLASSIFIER,
    DEFAULT_PRETRAINER,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_VERIFY_FAILED,
    UsageError,
)


_INTERRUPTED = {
    "pretrain": "interrupted; the last backup is kept: rerun the same command to resume",
    "finetune": "interrupted; the last backup is kept: rerun the same command to resume",
    "port": "interrupted; nothing partial was kept",
}


@contextlib.contextmanager
def _quiet_native_stderr():
    """Silences file descriptor 2 while TensorFlow loads: it logs "Could not find cuda
    drivers" and CPU-feature notes from C++ on CPU-only machines, before its log level
    applies. Python exceptions are unaffected; VIDEOMAE_KERAS_VERBOSE_IMPORT=1 keeps it all."""
    if os.environ.get("VIDEOMAE_KERAS_VERBOSE_IMPORT"):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real stderr (some services)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _QuietTensorFlowImport:
    """An import hook for this process: TensorFlow, whenever something imports it (Keras
    does to save a `.keras` file or to seed, whatever the backend), is imported with file
    descriptor 2 silenced, so its C++ start-up lines never reach the terminal."""

    looking = False

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow" or self.looking:
            return None
        import importlib.machinery

        self.looking = True  # let the other finders find the real module
        try:
            spec = importlib.machinery.PathFinder.find_spec(name, path)
        finally:
            self.looking = False
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader:
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        with _quiet_native_stderr():
            self.loader.exec_module(module)

    def __getattr__(self, name):  # get_resource_reader, is_package, ...
        return getattr(self.loader, name)


def _needs_keras(args):
    if args.command == "plan":
        return False  # it compiles in a child process of its own
    return not (args.command == "port" and getattr(args, "list", False))


def _start(args):
    """Loads Keras and the package for a command, quietly, and says which backend runs."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's cuInit error on CPUs
    if "tensorflow" not in sys.modules and not os.environ.get("VIDEOMAE_KERAS_VERBOSE_IMPORT"):
        sys.meta_path.insert(0, _QuietTensorFlowImport())
    import keras

    import videomae_keras

    videomae_keras.load_all()
    from videomae_keras.video.io import quiet_decoders

    quiet_decoders()
    # huggingface_hub logs each retry of a cut download; the error that follows says it all
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
    if not getattr(args, "quiet", False):
        print(f"videomae-keras {args.command}: Keras {keras.__version__}, "
              f"{keras.backend.backend()} backend (KERAS_BACKEND chooses)", file=sys.stderr,
              flush=True)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so it unwinds like Ctrl-C."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return EXIT_ERROR
    if getattr(args, "check", None):  # arguments that only make sense together
        try:
            args.check(args)
        except UsageError as e:
            parser.error(str(e))  # exits 2, like argparse's own checks
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        return _run(args)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run(args):
    try:
        if _needs_keras(args):
            _start(args)
        return args.run(args)
    except KeyboardInterrupt as e:
        what = _INTERRUPTED.get(args.command, "interrupted")
        print(f"videomae-keras {args.command}: {what}", file=sys.stderr)
        return 128 + signal.SIGTERM if isinstance(e, _Terminated) else EXIT_INTERRUPTED
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_VERIFY_FAILED
    except Exception as e:  # one line, no traceback (VIDEOMAE_KERAS_DEBUG=1 shows it)
        if os.environ.get("VIDEOMAE_KERAS_DEBUG"):
            raise
        porting = sys.modules.get("videomae_keras.checkpoints.porting")  # only it raises these
        if porting is not None and isinstance(e, porting.VerificationError):
            print(f"videomae-keras {args.command}: verification failed: {e}", file=sys.stderr)
            return EXIT_VERIFY_FAILED
        print(f"videomae-keras {args.command}: error: {one_line(e)}", file=sys.stderr)
        return EXIT_ERROR


def one_line(error):
    """An exception as the one line the command prints: its message's first line, with the
    type's name where the type says more than the message (not for the usual errors)."""
    message = error.args[0] if isinstance(error, KeyError) and error.args else error
    known = (UsageError, ValueError, KeyError, FileExistsError, FileNotFoundError,
             ImportError, RuntimeError, OSError)
    prefix = "" if isinstance(error, known) else f"{type(error).__name__}: "
    text = str(message).strip()
    return prefix + (text.splitlines()[0] if text else type(error).__name__)


if __name__ == "__main__":
    sys.exit(main())
