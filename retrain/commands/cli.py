"""What both command-line tools share: quiet TensorFlow start-up, one-line errors, exit codes.

Exit codes: 0 success, 1 failure (bad input, unreadable files, a failed gate),
2 bad usage (a bad flag value or an unknown flag), 130 interrupted by Ctrl-C.
"""

import contextlib
import os
import sys
import traceback

from absl import flags, logging

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A flag value that cannot work; the message names the flag."""


def quiet_tensorflow() -> None:
    """Asks TensorFlow's C++ logging for warnings and errors only, unless the user chose."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _drop_tensorflow_info(record) -> bool:
    package_dir = os.sep + "tensorflow" + os.sep
    return record.levelno >= logging.converter.STANDARD_WARNING or package_dir not in record.pathname


def import_tensorflow_quietly(verbose: bool, without_keras: bool = False) -> None:
    """Imports TensorFlow and finds its devices with stderr muted, unless verbose.

    TF >= 2.16 prints start-up lines (oneDNN, CUDA drivers not found, cuInit) through
    C++ logging that ignores TF_CPP_MIN_LOG_LEVEL; on a CPU-only machine they look
    like errors and bury the tool's own first lines. Python exceptions still surface.

    TensorFlow imports Keras eagerly (for its SavedModel registrations); without_keras
    skips that for a process that never loads a Keras object (a frozen graph or a
    TFLite model): about 0.7 s and 50 MB less. Keras stays importable afterwards.
    """
    from retrain.runtime.quiet import muted_stderr

    hidden = ["matplotlib.pyplot"] + (["keras", "tf_keras"] if without_keras else [])
    with _unimportable(hidden):
        if verbose or os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
            import tensorflow  # noqa: F401
            return
        # TensorFlow's own Python INFO lines (saver sharding, fingerprints) are noise here.
        logging.get_absl_handler().addFilter(_drop_tensorflow_info)
        with muted_stderr():
            import tensorflow as tf

            tf.config.list_physical_devices()


@contextlib.contextmanager
def _unimportable(module_names):
    """The named modules made unimportable for the duration, except those already imported.

    Keras, which TensorFlow imports, imports matplotlib.pyplot when matplotlib is
    installed (for an image-gallery helper, and does without it when it is missing):
    about a second of every start of a tool here. Importers that find a module
    missing do without it; the modules are importable again afterwards.
    """
    hidden = [name for name in module_names if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # The import system's mark for "not importable".
    try:
        yield
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


def command_flags() -> flags.FlagValues:
    """A command's own flags, beside absl's (--verbosity, ...): the commands define flags
    of the same names with other meanings (--image_dir, --unknown_threshold), so each
    has its own FlagValues and can run in one process with the others."""
    own = flags.FlagValues()
    own.append_flag_values(flags.FLAGS)
    return own


def flags_parser(program: str, flag_values: flags.FlagValues, main_module, allow_positional: bool = False,
                 shared=(), pass_unknown: bool = False):
    """An absl flags_parser for a command's flag_values: help on stdout with status 0, bad
    flags in one line with 2.

    --help and --helpshort list the tool's own flags (main_module's and those of the
    shared flag modules) under main_module's docstring; --helpfull adds absl's. With
    pass_unknown, flags the tool does not know are handed to main (after argv[0]) for
    another parser (Beam's pipeline options) to judge.
    """

    def parse(argv):
        requested = {arg.split("=")[0] for arg in argv[1:]} & {"-h", "-?", "--help", "--helpshort", "--helpfull"}
        if requested:
            text = (main_module.__doc__ or "").strip() + "\n\nFlags:\n"
            if "--helpfull" in requested:
                text += flag_values.get_help()
            else:
                sections = [flag_values.module_help(module) for module in (*shared, main_module.__name__)]
                text += "\n\n".join(sections) + "\n\nTry --helpfull to see all flags."
            print(text)
            sys.exit(EXIT_OK)
        try:
            remaining = flag_values(argv, known_only=pass_unknown)
        except flags.Error as e:
            print(f"{program}: error: {e}\nTry --help for the list of flags.", file=sys.stderr)
            sys.exit(EXIT_USAGE)
        if len(remaining) > 1 and not (allow_positional or pass_unknown):
            print(f"{program}: error: unexpected arguments: {' '.join(remaining[1:])}", file=sys.stderr)
            sys.exit(EXIT_USAGE)
        flags.FLAGS.mark_as_parsed()  # absl's own flags are among flag_values, parsed with them.
        return remaining

    parse.flag_values = flag_values
    return parse


def call_in_process(parse, main, argv: list[str]) -> int:
    """A command run as its console script runs it, in this process: its flags parser on
    argv (argv[0] the program), then main; returns the exit status. For tests and
    embedding: the flags are unparsed and absl's verbosity restored afterwards."""
    verbosity = logging.get_verbosity()
    parsed_before = flags.FLAGS.is_parsed()
    try:
        try:
            remaining = parse(argv)
        except SystemExit as e:
            return int(e.code or 0)
        return main(remaining)
    finally:
        parse.flag_values.unparse_flags()
        if not parsed_before:
            flags.FLAGS.unparse_flags()
        logging.set_verbosity(verbosity)


def run_guarded(program: str, body) -> int:
    """Runs body(), turning the errors users can cause into one line and an exit code.

    UserError and UsageError print their message; Ctrl-C prints one line and gives
    130; any other exception is a bug: one line, and the traceback only at
    --logging_verbosity=DEBUG (or with --verbosity=1).
    """
    from retrain.errors import UserError

    try:
        return body()
    except UsageError as e:
        print(f"{program}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except UserError as e:
        logging.error("%s", e)
        if logging.level_debug():
            traceback.print_exc()
        return EXIT_FAILURE
    except KeyboardInterrupt as e:
        print(f"\n{program}: {e or 'interrupted.'}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # A bug: say so in one line, show details only on request.
        logging.error(
            "%s failed unexpectedly: %s: %s (rerun with --logging_verbosity=DEBUG for the traceback)",
            program,
            type(e).__name__,
            e,
        )
        if logging.level_debug():
            traceback.print_exc()
        return EXIT_FAILURE


VERBOSITY_LEVELS = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARN": logging.WARNING,
    "ERROR": logging.ERROR,
    "FATAL": logging.FATAL,
}


def define_logging_verbosity(flag_values: flags.FlagValues, module_name: str, default: str = "INFO"):
    """Every command's --logging_verbosity, in flag_values as module_name's (listed in its
    --help); its FlagHolder."""
    from retrain import config

    return flags.DEFINE_enum(
        "logging_verbosity", default, list(config.LOGGING_VERBOSITIES),
        "How much logging output should be produced. DEBUG also shows tracebacks of errors.",
        flag_values=flag_values, module_name=module_name,
    )


def start(main, parse_flags, limit_arenas: bool = True) -> None:
    """A console script's entry point: (fewer malloc arenas, before TensorFlow starts its
    threads), TensorFlow's C++ logging quiet, then absl runs main with the command's parser."""
    from absl import app

    if limit_arenas:
        from retrain.runtime import memory

        memory.limit_allocator_arenas()
    quiet_tensorflow()
    app.run(main, flags_parser=parse_flags)
