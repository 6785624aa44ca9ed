"""A training run's folder: what it holds, and whether a command may write into it.

`run.json` is written when a run starts (status "running": its command, the arguments that
change the result, and the sha256 of every list and file it reads) and rewritten when it
ends (status "finished", with the results). A command given a folder that already holds a
run:

- the same command, finished: says so and changes nothing;
- the same command, interrupted: resumes from the last backup;
- anything else: refused, naming what differs, unless `overwrite=True` (`--overwrite`), which
  removes the old run's files first.
"""

import dataclasses
import datetime
import hashlib
import json
import os
import shutil

from videomae_keras import storage
from videomae_keras.atomic import atomic_output, file_sha256

RECORD = "run.json"
# What a run writes into its folder, besides its final model.
RUN_FILES = ("run.json", "log.csv", "backup", "tensorboard")


class RunFolderError(FileExistsError):
    """The folder holds another run; the message says what differs and how to go on."""


@dataclasses.dataclass
class RunState:
    """What to do in a run folder: "start", "resume", "finished" or "evaluate" (a finished
    run whose evaluation is to be done again), with the record to keep up to date."""

    action: str
    record: dict
    folder: str
    note: str = ""

    @property
    def path(self):
        return os.path.join(self.folder, RECORD)


def fingerprint(path):
    """{"path", "sha256"} of an input file (a list or a model file), or the name as given
    for things that are not files (a registered checkpoint name)."""
    path = os.fspath(path)
    if storage.is_url(path):  # a list in a bucket
        if not storage.isfile(path):
            return {"path": path}
        with storage.open_binary(path) as f:
            return {"path": path, "sha256": hashlib.sha256(f.read()).hexdigest()}
    if not os.path.isfile(path):
        return {"path": path}
    return {"path": os.path.abspath(path), "sha256": file_sha256(path)}


def _plain(value):
    """JSON-equal form of `value` (tuples become lists), so records compare as loaded."""
    return json.loads(json.dumps(value, default=str))


def open_run(folder, command, arguments, inputs, model_file, overwrite=False,
             evaluation=None, report=None, remove=True):
    """Decides what `command` with `arguments` and `inputs` ({name: fingerprint}) does in
    `folder`; raises RunFolderError when it would overwrite another run. `evaluation`
    ({name: value}) are the arguments that only change the final evaluation (a validation
    list): a finished run whose evaluation failed or differs is evaluated again only.
    `remove=False` (the other processes of a multi-process run) decides as with `overwrite`
    but leaves the removing to the writer."""
    record = {
        "command": command,
        "status": "running",
        "arguments": _plain(arguments),
        "inputs": _plain(inputs),
        "evaluation": _plain(evaluation or {}),
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    model = os.path.join(folder, model_file)
    existing = _read(os.path.join(folder, RECORD))
    if overwrite:
        removed = remove_run(folder, model_file) if remove else []
        note = f"--overwrite: removed the previous run ({', '.join(removed)})" if removed else ""
        return RunState("start", record, folder, note)
    if existing is None:
        if os.path.exists(model):
            raise RunFolderError(
                f"{folder} holds {model_file} but no run record ({RECORD}); pass --overwrite "
                "(overwrite=True) to train a new model there, or choose another folder."
            )
        if os.path.isdir(os.path.join(folder, "backup")):  # an earlier release's run
            return RunState("resume", record, folder,
                            "resuming a run whose arguments were not recorded (an earlier "
                            "release wrote run.json only at the end)")
        return RunState("start", record, folder)
    differences = _differences(existing, record)
    status = existing.get("status", "finished" if "model" in existing else "running")
    if differences:
        what = "finished" if status == "finished" else "interrupted"
        hint = ("pass --overwrite (overwrite=True) to replace it, or choose another folder" if
                status == "finished" else
                "rerun its own command to resume it, pass --overwrite (overwrite=True) to "
                "start over, or choose another folder")
        raise RunFolderError(
            f"{folder} holds a{'n' if what == 'interrupted' else ''} {what} "
            f"{existing.get('command', 'training')} run with other settings "
            f"({'; '.join(differences)}); {hint}."
        )
    if status != "finished":  # interrupted: resume, keeping what the first start did
        kept = {k: existing[k] for k in ("started", "checked") if k in existing}
        return RunState("resume", {**record, **kept}, folder)
    if not os.path.exists(model):
        raise RunFolderError(
            f"{folder} holds a finished {command} run but its {model_file} is gone; pass "
            "--overwrite (overwrite=True) to train it again."
        )
    wanted = any(v is not None for v in record["evaluation"].values())
    evaluated = existing.get("evaluated") and _plain(existing.get("evaluation", {})) == record[
        "evaluation"]
    if wanted and "arguments" in existing and not evaluated:
        # finished training whose evaluation failed, was cut short or is asked differently
        return RunState("evaluate", {**existing, "evaluation": record["evaluation"]}, folder)
    return RunState("finished", existing, folder)


def _read(path):
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError) as e:
        raise RunFolderError(
            f"{path} cannot be read ({e}); pass --overwrite (overwrite=True) to start a new "
            "run there, or choose another folder."
        ) from None
    if not isinstance(record, dict):
        raise RunFolderError(f"{path} is not a run record; pass --overwrite or choose "
                             "another folder.")
    return record


def _differences(existing, record):
    """What differs between a recorded run and a new one, each as a short phrase."""
    if existing.get("command", record["command"]) != record["command"]:
        return [f"it is a {existing.get('command')} run, not {record['command']}"]
    if "arguments" not in existing:  # an earlier release's flat record: compare what it has
        old = {k: existing[k] for k in record["arguments"] if k in existing}
        new = {k: record["arguments"][k] for k in old}
        inputs = {}
    else:
        old, new = existing["arguments"], record["arguments"]
        inputs = existing.get("inputs", {})
    out = []
    for key in sorted(set(old) | set(new)):
        if _plain(old.get(key)) != _plain(new.get(key)):
            out.append(f"{key} {old.get(key)!r} -> {new.get(key)!r}")
    for key, value in record["inputs"].items():
        before = inputs.get(key)
        if before is None:
            continue
        if before.get("sha256") != value.get("sha256") or (
                "sha256" not in value and before.get("path") != value.get("path")):
            changed = ("a different file" if before.get("path") != value.get("path")
                       else "its content changed since the run started")
            out.append(f"{key}: {changed}")
    return out[:6] + ([f"{len(out) - 6} more"] if len(out) > 6 else [])


def remove_run(folder, model_file):
    """Deletes a run's files from `folder` (never anything else there); returns their names."""
    removed = []
    for name in (*RUN_FILES, model_file):
        path = os.path.join(folder, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.unlink(path)
        else:
            continue
        removed.append(name)
    return removed


def write_record(state, **updates):
    """Rewrites run.json atomically with `updates` merged into the state's record."""
    state.record.update(_plain(updates))
    os.makedirs(state.folder, exist_ok=True)
    with atomic_output(state.path, overwrite=True, suffix=".json") as temp:
        with open(temp, "w", encoding="utf-8") as f:
            json.dump(state.record, f, indent=2)
    return state.record


def trim_log(path, epochs):
    """Keeps the header and the rows of the first `epochs` epochs of a CSVLogger file, so a
    resumed run's log has each epoch once (a kill between the log row and the backup of an
    epoch would repeat it)."""
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as f:
        rows = f.read().splitlines()
    if not rows:
        return
    kept = [rows[0]] + [row for row in rows[1:] if row.split(",", 1)[0].isdigit()
                        and int(row.split(",", 1)[0]) < epochs]
    if kept != rows:
        with atomic_output(path, overwrite=True, suffix=".csv") as temp:
            with open(temp, "w", encoding="utf-8") as f:
                f.write("\n".join(kept) + "\n")
