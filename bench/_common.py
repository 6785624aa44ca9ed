"""Shared pieces of the benchmark scripts: timing, one process per backend, tables, JSON.

Keras picks its backend once per process, so every measurement of ours runs in a child
process (`python bench/<script>.py --worker <backend> ...`) that prints one JSON line;
transformers' PyTorch VideoMAE runs in a child of its own the same way, in the same run.
"""

import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")
BACKENDS = ("jax", "tensorflow", "torch")


def median_seconds(function, repeats, warmup=1, min_seconds=0.0):
    """Median wall time of `function()` over `repeats` calls after `warmup` calls (more calls
    while the total stays under `min_seconds`, for very fast functions)."""
    for _ in range(warmup):
        function()
    times = []
    while len(times) < repeats or sum(times) < min_seconds:
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), len(times)


def paired_seconds(first, second, repeats, warmup=1):
    """Times two functions in one process, alternating (first-second, then second-first, so
    neither always runs warm): (median seconds of each, median of the per-pair ratios
    second / first). Drift in the machine's speed moves both members of a pair alike."""
    for _ in range(warmup):
        first()
        second()
    times = ([], [])
    for index in range(repeats):
        order = (0, 1) if index % 2 == 0 else (1, 0)
        for which in order:
            start = time.perf_counter()
            (first, second)[which]()
            times[which].append(time.perf_counter() - start)
    ratios = [b / a for a, b in zip(*times)]
    return statistics.median(times[0]), statistics.median(times[1]), statistics.median(ratios)


def rotating_seconds(functions, repeats, warmup=1):
    """Median seconds of each named function, timed in turns within one process; the order
    rotates every round, so none always runs first (or warm after another)."""
    names = list(functions)
    for _ in range(warmup):
        for name in names:
            functions[name]()
    times = {name: [] for name in names}
    for index in range(repeats):
        order = names[index % len(names):] + names[:index % len(names)]
        for name in order:
            start = time.perf_counter()
            functions[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def peak_rss_mb():
    """This process's peak resident memory (MiB)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20


def status_mb(field):
    """A /proc/self/status memory field (VmRSS, VmHWM) in MiB (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def reset_peak():
    """Resets this process's peak-RSS counter: VmHWM := VmRSS (Linux /proc/self/clear_refs)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def emit(record):
    """A worker's answer: one JSON line, after whatever the libraries printed."""
    sys.stdout.write("\n@@RESULT@@" + json.dumps(record) + "\n")
    sys.stdout.flush()


def run_worker(script, variant, args, backend=None, timeout=3600):
    """Runs `script --worker variant args` in a fresh process (KERAS_BACKEND=backend when
    given); returns its JSON answer, or {"error": ...} naming what went wrong (the suite
    goes on with the other rows)."""
    env = dict(os.environ)
    if backend:
        env["KERAS_BACKEND"] = backend
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    command = [sys.executable, script, "--worker", variant] + list(args)
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("@@RESULT@@"):
            return json.loads(line[len("@@RESULT@@"):])
    tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
    return {"error": f"exit {done.returncode}: " + " | ".join(tail)}


def command():
    """How this script was run, for its results file: `python bench/NAME.py ARGS`, with
    the value of any option that may name a place on this machine (--fixtures, --out) left
    out when it is a path; a plain results name (`--out int8_avx2`) is kept."""
    args, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            args.append(_unless_path(arg))
            skip = False
        elif arg in PATH_OPTIONS:
            args.append(arg)
            skip = True
        elif arg.split("=", 1)[0] in PATH_OPTIONS:
            option, value = arg.split("=", 1)
            args.append(f"{option}={_unless_path(value)}")
        else:
            args.append(arg)
    script = os.path.relpath(os.path.abspath(sys.argv[0]), ROOT)
    return " ".join(["python", script] + args)


PATH_OPTIONS = ("--fixtures", "--out")


def _unless_path(value):
    """`value` where it is a plain name (letters, digits, _ and -: a results name or a folder
    here), else DIR (a path, a file name)."""
    return value if re.fullmatch(r"[\w-]+", value) else "DIR"


def machine():
    """What the figures were measured on."""
    from importlib import metadata

    info = {"machine": platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version(), "cpu": cpu()}
    for name in ("keras", "jax", "tensorflow", "torch", "transformers"):
        for distribution in (name, name + "-cpu"):
            try:
                info[name] = metadata.version(distribution)
                break
            except metadata.PackageNotFoundError:
                pass
    return info


def cpu():
    """The processor's name and the vector instructions int8 and bfloat16 speed hang on
    (AVX-512 VNNI, for one, makes int8 matmuls several times faster), from /proc/cpuinfo;
    None where that cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in text.splitlines()[:40] if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")
    listed = ", ".join(flag for flag in wanted if flag in flags)
    name = fields.get("model name", platform.processor() or "unknown")
    return f"{name} ({listed})" if listed else name


def table(rows, columns):
    """A Markdown table of dicts, with the given (key, title) columns."""
    lines = ["| " + " | ".join(title for _, title in columns) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(key)) for key, _ in columns) + " |")
    return "\n".join(lines)


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def save(name, payload, path=None):
    """Writes bench/results/<name>.json (or `path`) atomically; returns its path."""
    path = path or os.path.join(RESULTS, name + ".json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temp = path + ".tmp"
    with open(temp, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2)
        f.write("\n")
    os.replace(temp, path)
    return path


def load(name):
    """bench/results/<name>.json, or SystemExit saying which run writes it."""
    path = os.path.join(RESULTS, name + ".json")
    if not os.path.exists(path):
        script = os.path.join(ROOT, "bench", name + ".py")
        run = (f"python bench/{name}.py" if os.path.exists(script)
               else f"the bench script that writes it, with --out {name}")
        raise SystemExit(f"{os.path.relpath(path, ROOT)} is missing: run {run}")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def add_ratios(rows, key="seconds", reference="transformers", reference_case=None,
               name="ratio"):
    """Adds `name` (`ratio`) = `key` / the reference variant's `key` for the same case, or
    for `reference_case[case]` where a case has no reference row of its own."""
    base = {row["case"]: row[key] for row in rows
            if row.get("backend") == reference and row.get(key)}
    for row in rows:
        ref = base.get((reference_case or {}).get(row["case"], row["case"]))
        if ref and row.get(key):
            row[name] = row[key] / ref
    return rows


def replace_readme_block(begin, end, text):
    """Replaces what lies between the `begin` and `end` markers of README.md with `text`
    (atomically); SystemExit when the README has no such block."""
    path = os.path.join(ROOT, "README.md")
    with open(path, encoding="utf-8") as f:
        readme = f.read()
    if begin not in readme or end not in readme:
        raise SystemExit(f"README.md has no {begin} ... {end} block to update.")
    head, rest = readme.split(begin, 1)
    _, tail = rest.split(end, 1)
    temp = path + ".tmp"
    with open(temp, "w", encoding="utf-8") as f:
        f.write(head + begin + "\n" + text + end + tail)
    os.replace(temp, path)
