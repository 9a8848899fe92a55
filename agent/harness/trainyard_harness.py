"""Runs an ML package's pipeline inside the run's venv (stdlib only, Python 3.8+).

    python -u trainyard_harness.py --package-dir DIR --data-dir DIR --result-file FILE
        [--pipeline TRAIN_ONLY|EVALUATE_ONLY|FULL_TRAINING] [--training-dir DIR --test-dir DIR
         [--test-scratch-dir DIR]] [--max-file-bytes N] [--check-only]

TRAIN_ONLY (the default): Main().train(data dir), then save().
EVALUATE_ONLY: Main().evaluate(data dir), whose return value is the score (a number; anything else fails).
FULL_TRAINING: process_data(data dir) when Main has it (it writes into the training and test folders;
without it the data dir is the training data), train(training dir), evaluate(test dir) -> score, save().
With --test-scratch-dir (an evaluation dataset is already in the test folder), process_data sees that
scratch folder as test_data_directory/evaluation_data_directory, so it cannot overwrite the evaluation data.

The agent starts this in its own process group with the package folder as the working directory, and
reads two things back: the output, line by line, and the result file, which says whether it worked and,
if not, a one-line reason fit to show a user.

Exit codes:
  0  trained and saved (or, with --check-only, the package passed the checks)
  1  user code raised: at import time, in Main(), train() or save(); the traceback is on stderr
  2  bad command line (argparse), or the data directory does not exist
  3  the package is not usable: no train.py, a syntax or import error, no class Main, a Main without
     train or save
A run killed by a signal (the agent's SIGTERM on kill or timeout) exits by that signal; the result file
then still says the phase it died in, with no error.

The result file is JSON, replaced atomically at every phase change so a reader never sees half of it:
  {"ok": bool, "phase": "import"|"check"|"init"|"process_data"|"train"|"evaluate"|"save",
   "error": null | {"type", "message", "summary", "traceback"},
   "train_started_at": float|null, "train_ended_at": float|null, "save_ended_at": float|null,
   "score": float|null, "phases": [{"name", "started_at", "ended_at"}]}
error.summary is what the agent shows as the run's failure reason: for user code, the traceback's last
line ("ValueError: bad data"); for an unusable package, the sentence saying what to fix.
"""
import argparse
import json
import math
import numbers
import os
import signal
import sys
import time
import traceback

# Imported here, from beside this script, not in main(): a warm interpreter then imports them once, before
# it forks, rather than every run after its "go" (trainyard_gang's subprocess and threading were about
# 2 ms of each warm run's path to train()). The checkpoint helper (stdlib only) is loaded before this
# folder leaves the path, so train.py's `import trainyard_checkpoint` finds it.
import trainyard_checkpoint  # noqa: F401,E402
import trainyard_gang  # noqa: E402

EXIT_USER_ERROR = 1
EXIT_USAGE = 2
EXIT_BAD_PACKAGE = 3

HARNESS_FILE = os.path.abspath(__file__)
# trainyard.py (run metrics), put on every run's path by main().
METRICS_LIB_DIR = os.path.join(os.path.dirname(HARNESS_FILE), "lib")
# A runaway recursion or a chatty exception must not turn the result file into megabytes; the whole
# traceback still goes to stderr, and so to the run's logs.
MAX_TRACEBACK_CHARS = 64 * 1024
MAX_SUMMARY_CHARS = 1000


class PackageError(Exception):
    """The package cannot be run as it is; the message says what to fix."""

    def __init__(self, message, cause=None):
        super().__init__(message)
        self.cause = cause


def write_result(path, result):
    # Same directory as the target, so the rename stays on one filesystem and is atomic.
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(result, fh)
    os.replace(tmp, path)


def type_name(exc):
    # As a traceback names it: "ValueError", but "json.decoder.JSONDecodeError".
    t = type(exc)
    if t.__module__ in ("builtins", "__main__"):
        return t.__qualname__
    return "%s.%s" % (t.__module__, t.__qualname__)


def safe_str(exc):
    try:
        return str(exc)
    except Exception:  # a user exception whose __str__ raises must not take the report down with it
        return "<%s: str() failed>" % type(exc).__name__


def user_frames(tb):
    # The user sees their own code first, as if they had run train.py themselves, not our call site.
    while tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename) == HARNESS_FILE:
        tb = tb.tb_next
    return tb


def format_traceback(exc):
    return "".join(traceback.format_exception(type(exc), exc, user_frames(exc.__traceback__)))


def summary_of(exc):
    message = safe_str(exc).strip()
    # A failure reason is one line; a multi-line message keeps its first line here and all of it in
    # error.message and the traceback.
    first = message.splitlines()[0] if message else ""
    line = "%s: %s" % (type_name(exc), first) if first else type_name(exc)
    return line[:MAX_SUMMARY_CHARS]


def error_of(exc, tb_text):
    return {"type": type(exc).__name__, "message": safe_str(exc), "summary": summary_of(exc),
            "traceback": tb_text[-MAX_TRACEBACK_CHARS:]}


def shown_path(filename, package_dir):
    # Paths inside the package are shown as the user wrote them ("train.py", "lib/util.py"); anything
    # else (site-packages) in full, since a bare name there would mislead.
    if not filename:
        return "train.py"
    full = os.path.abspath(filename)
    rel = os.path.relpath(full, package_dir)
    return full if rel.startswith(os.pardir + os.sep) or rel == os.pardir else rel


def innermost_package_file(tb, package_dir):
    # The last frame in the package's own files is the import statement the user can fix, even when
    # the missing module was wanted by a library further down.
    found = "train.py"
    prefix = package_dir.rstrip(os.sep) + os.sep
    while tb is not None:
        name = os.path.abspath(tb.tb_frame.f_code.co_filename)
        if name.startswith(prefix):
            found = os.path.relpath(name, package_dir)
        tb = tb.tb_next
    return found


def import_train(package_dir):
    """Imports train.py, turning the failures a user can fix without reading a traceback into PackageError."""
    if not os.path.isfile(os.path.join(package_dir, "train.py")):
        try:
            seen = sorted(os.listdir(package_dir))
        except OSError:
            seen = []
        has = " (it has: %s%s)" % (", ".join(seen[:5]), ", ..." if len(seen) > 5 else "") if seen else " (the folder is empty)"
        raise PackageError("the package has no train.py at its root" + has)
    try:
        import train  # noqa: E402 -- the package's own train.py, found through sys.path[0]
        return train
    except SyntaxError as e:  # IndentationError and TabError too
        where = shown_path(e.filename, package_dir)
        raise PackageError("%s line %s: %s" % (where, e.lineno, e.msg), e)
    except ImportError as e:
        where = innermost_package_file(e.__traceback__, package_dir)
        if isinstance(e, ModuleNotFoundError):
            raise PackageError("%s: cannot import %s: %s (is it in requirements.txt?)" % (where, e.name or "a module", e), e)
        raise PackageError("%s: %s" % (where, e), e)


SIGNATURES = {"train": "train(self, training_directory)", "save": "save(self)",
              "evaluate": "evaluate(self, evaluation_directory)"}
NEEDED = {"TRAIN_ONLY": ("train", "save"), "EVALUATE_ONLY": ("evaluate",), "FULL_TRAINING": ("train", "evaluate", "save")}


class ScoreError(Exception):
    """evaluate() returned something that is not a score."""


def score_of(value):
    # A score is a finite real number: int, float, or a numpy scalar (which registers as numbers.Real).
    # bool is an int to Python but not a score to anyone.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        raise ScoreError("evaluate() returned %s (a %s), not a number" % (shown, type(value).__name__))
    f = float(value)
    if not math.isfinite(f):
        raise ScoreError("evaluate() returned %r, not a finite number" % f)
    return f


def check_main(module, pipeline="TRAIN_ONLY"):
    main_class = getattr(module, "Main", None)
    if not isinstance(main_class, type):
        raise PackageError("train.py has no class Main")
    # Same wording as the scheduler's static check on push, so a user sees one message for one mistake.
    missing = [SIGNATURES[name] for name in NEEDED[pipeline] if not callable(getattr(main_class, name, None))]
    if missing:
        raise PackageError("train.py: class Main has no method %s" % " or ".join(missing))
    return main_class


_parser = None


def parse_args(argv):
    # Built once: a warm interpreter builds it before it forks (trainyard_warm.py warm_up), so a run's
    # child only parses (building an ArgumentParser is about a millisecond of a run's start).
    global _parser
    if _parser is None:
        _parser = build_parser()
    return _parser.parse_args(argv)


def build_parser():
    parser = argparse.ArgumentParser(description="Run an ML package's Main.train() and Main.save().")
    parser.add_argument("--package-dir", required=True, help="the folder holding train.py")
    parser.add_argument("--data-dir", required=True, help="passed to Main.train() as training_directory")
    parser.add_argument("--result-file", required=True, help="where to write the JSON verdict")
    parser.add_argument("--check-only", action="store_true", help="import train.py and check Main, then stop")
    parser.add_argument("--pipeline", default="TRAIN_ONLY", choices=sorted(NEEDED), help="which steps to run")
    parser.add_argument("--training-dir", help="FULL_TRAINING: where process_data writes the training data")
    parser.add_argument("--test-dir", help="FULL_TRAINING: where the test data is (process_data's, or the evaluation dataset)")
    parser.add_argument("--test-scratch-dir", help="FULL_TRAINING with an evaluation dataset: process_data's test folder instead")
    parser.add_argument("--max-file-bytes", type=int, default=0, help="RLIMIT_FSIZE for this process and its children (the agent's --run-disk-mb); 0: none")
    return parser


def prepare(argv=None):
    """The harness's own set-up, before any of the run's code: a warm child does it while the data is
    still being made local (agent/harness/trainyard_warm.py), and main() then starts from its result."""
    args = parse_args(argv)
    # Resolved before anything can chdir: user code may, and these must keep meaning what was asked.
    args.package_dir = os.path.abspath(args.package_dir)
    args.data_dir = os.path.abspath(args.data_dir)
    args.result_file = os.path.abspath(args.result_file)

    # An inherited "ignore" would make the agent's kill a no-op; a kill must kill. User code may still
    # install its own handler, which is its business.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # The agent's --run-disk-mb, for a single file: a write past it fails (EFBIG; Python ignores SIGXFSZ).
    # Soft and hard alike, before any of the run's code: an unprivileged process cannot raise it again. The
    # agent measures the run's folder as a whole besides.
    if args.max_file_bytes > 0:
        import resource
        resource.setrlimit(resource.RLIMIT_FSIZE, (args.max_file_bytes, args.max_file_bytes))
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)
        except (AttributeError, ValueError):
            pass
    return args


def main(argv=None, prepared=None):
    args = prepared if prepared is not None else prepare(argv)
    package_dir, data_dir, result_file = args.package_dir, args.data_dir, args.result_file

    result = {"ok": False, "phase": "import", "error": None,
              "train_started_at": None, "train_ended_at": None, "save_ended_at": None, "score": None, "phases": []}

    def enter(phase, write=True):
        # Written as each of the user's steps starts, so a run killed mid-train (OOM, timeout) still tells
        # where it died and since when. The harness's own steps before them (import, check, init) are not
        # written on their own: a failure there writes the verdict, and the next write says where it got.
        result["phase"] = phase
        if write:
            write_result(result_file, result)

    def fail(code, error):
        sys.stdout.flush()
        flush_metrics()
        result["error"] = error
        write_result(result_file, result)
        return code

    enter("import", write=False)
    if not args.check_only and not os.path.isdir(data_dir):
        msg = "the data directory %s does not exist" % data_dir
        print(msg, file=sys.stderr)
        return fail(EXIT_USAGE, {"type": "UsageError", "message": msg, "summary": msg, "traceback": ""})

    # A gang run (trainyard_gang.py): this process takes its rank, and the member's first harness starts
    # the member's other local ranks, each a harness with its own result file.
    gang_children = []
    if trainyard_gang.active():
        gang_children = trainyard_gang.set_up(lambda k: child_argv(args, k))
    # Like `python train.py` from the package folder: the package first on the path, and not this
    # script's folder, whose files are none of the user's business.
    if sys.path and os.path.abspath(sys.path[0] or os.curdir) == os.path.dirname(HARNESS_FILE):
        sys.path.pop(0)
    sys.path.insert(0, package_dir)
    # `import trainyard` (metrics) works in every run, after the package's own modules.
    sys.path.insert(1, METRICS_LIB_DIR)
    # As in AI Center, the package folder is the working directory: save() writes next to the code.
    os.chdir(package_dir)

    try:
        module = import_train(package_dir)
        enter("check", write=False)
        main_class = check_main(module, args.pipeline)
    except PackageError as e:
        tb_text = ""
        if e.cause is not None:
            # Python's own rendering (file, line, caret) is worth keeping above our one-line verdict.
            tb_text = format_traceback(e.cause)
            sys.stderr.write(tb_text)
        print(str(e), file=sys.stderr)
        # The summary is the sentence, not "SyntaxError: ...": it is what the user reads as the reason;
        # type and message stay Python's own, for whoever reads the JSON rather than the reason.
        cause = e.cause if e.cause is not None else e
        return fail(EXIT_BAD_PACKAGE, {"type": type(cause).__name__, "message": safe_str(cause), "summary": str(e), "traceback": tb_text})
    except BaseException as e:  # noqa: train.py's top level can raise anything, SystemExit included
        tb_text = format_traceback(e)
        sys.stderr.write(tb_text)
        return fail(EXIT_USER_ERROR, error_of(e, tb_text))

    if args.check_only:
        result["ok"] = True
        write_result(result_file, result)
        return 0

    def step(name, fn, *fn_args):
        # Each step's times go in the result file as it starts and ends: `run get` shows them, and a run
        # killed in a step still says which one.
        phase = {"name": name, "started_at": time.time(), "ended_at": 0}
        result["phases"].append(phase)
        enter(name)
        value = fn(*fn_args)
        phase["ended_at"] = time.time()
        return value

    try:
        enter("init", write=False)
        # User code may write artifacts from __init__ on; the agent uploads whatever lands here.
        os.makedirs(os.environ.get("artifacts_directory", "artifacts"), exist_ok=True)
        model = main_class()
        if args.pipeline == "EVALUATE_ONLY":
            result["score"] = score_of(step("evaluate", model.evaluate, data_dir))
        elif args.pipeline == "FULL_TRAINING":
            training_dir = os.path.abspath(args.training_dir or data_dir)
            test_dir = os.path.abspath(args.test_dir or data_dir)
            if callable(getattr(model, "process_data", None)):
                names = ("test_data_directory", "evaluation_data_directory")
                saved = {n: os.environ.get(n) for n in names}
                if args.test_scratch_dir:
                    # The evaluation dataset is already in the test folder: process_data writes its test
                    # split elsewhere, and evaluate() sees the dataset it was given.
                    for n in names:
                        os.environ[n] = os.path.abspath(args.test_scratch_dir)
                try:
                    step("process_data", model.process_data, data_dir)
                finally:
                    for n, v in saved.items():
                        if v is not None:
                            os.environ[n] = v
            else:
                # Without process_data the input data is the training data.
                training_dir = data_dir
                os.environ["training_data_directory"] = data_dir
            result["train_started_at"] = time.time()
            step("train", model.train, training_dir)
            result["train_ended_at"] = time.time()
            # In a gang only global rank 0 evaluates and saves: one version, one score.
            if not trainyard_gang.active() or trainyard_gang.rank() == 0:
                result["score"] = score_of(step("evaluate", model.evaluate, test_dir))
                step("save", model.save)
                result["save_ended_at"] = time.time()
        else:
            result["train_started_at"] = time.time()
            step("train", model.train, data_dir)
            result["train_ended_at"] = time.time()
            if not trainyard_gang.active() or trainyard_gang.rank() == 0:
                step("save", model.save)
                result["save_ended_at"] = time.time()
    except ScoreError as e:
        sys.stdout.flush()
        print(str(e), file=sys.stderr)
        return fail(EXIT_USER_ERROR, {"type": "ScoreError", "message": str(e), "summary": str(e), "traceback": ""})
    except BaseException as e:  # noqa: user code; a sys.exit() or Ctrl-C before save() is a failure too
        sys.stdout.flush()
        tb_text = format_traceback(e)
        sys.stderr.write(tb_text)
        trainyard_gang.stop_local_ranks(gang_children)
        return fail(EXIT_USER_ERROR, error_of(e, tb_text))

    failed = trainyard_gang.wait_local_ranks(gang_children)
    if failed:
        print(failed, file=sys.stderr)
        return fail(EXIT_USER_ERROR, {"type": "GangError", "message": failed, "summary": failed, "traceback": ""})
    sys.stdout.flush()
    flush_metrics()
    result["ok"] = True
    write_result(result_file, result)
    return 0


def child_argv(args, local_rank):
    """The command line of a gang member's local rank `local_rank` (trainyard_gang.py): this harness's own,
    with a result file of its own beside this one's."""
    argv = [HARNESS_FILE, "--package-dir", args.package_dir, "--data-dir", args.data_dir,
            "--result-file", "%s.rank-%d" % (args.result_file, local_rank), "--pipeline", args.pipeline]
    for flag, value in (("--training-dir", args.training_dir), ("--test-dir", args.test_dir), ("--test-scratch-dir", args.test_scratch_dir)):
        if value:
            argv += [flag, value]
    if args.max_file_bytes:
        argv += ["--max-file-bytes", str(args.max_file_bytes)]
    return argv


def flush_metrics():
    # The points train.py logged are on the agent's side before the verdict is (a warm child ends with
    # os._exit, which runs no atexit handler). Only the module this harness put on the path, if imported.
    m = sys.modules.get("trainyard")
    if m is not None and os.path.dirname(os.path.abspath(getattr(m, "__file__", "") or "")) == METRICS_LIB_DIR:
        try:
            m.flush()
        except Exception as e:  # noqa: a metrics problem must not change the run's verdict
            print("[trainyard] could not write the last metrics: %s" % e, file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
