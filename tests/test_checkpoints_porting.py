"""The port command: every format written and verified, atomic outputs, refusals, exit codes."""

import collections
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import keras
import reference
from videomae_keras import cli
from videomae_keras.checkpoints import export, porting

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# ViT-S width (so official files need no head count) at a small depth and clip size.
OFFICIAL = dict(
    image_size=32, patch_size=8, num_frames=4, hidden_size=384, num_hidden_layers=2,
    num_attention_heads=6, intermediate_size=1536, decoder_hidden_size=192,
    decoder_num_hidden_layers=1, decoder_num_attention_heads=3, decoder_intermediate_size=768,
    num_labels=5,
)
CLIP = dict(num_frames=4, image_size=32)


@pytest.fixture(scope="module")
def official_classifier(tmp_path_factory):
    hf = reference.set_official_epsilons(reference.hf_model("classifier", seed=41, **OFFICIAL))
    path = str(tmp_path_factory.mktemp("official") / "vit_s_ft.pth")
    return reference.save_official(reference.official_state_dict(hf), path, "module")


@pytest.fixture(scope="module")
def hf_pretrainer(tmp_path_factory):
    hf = reference.hf_model("pretrainer", seed=42, use_mean_pooling=False, **reference.SMALL)
    folder = str(tmp_path_factory.mktemp("hf") / "videomae-small-pt")
    hf.save_pretrained(folder)
    return folder


def _leftovers(folder):
    return sorted(name for name in os.listdir(folder) if name.startswith("."))


def test_official_classifier_ported_and_verified_on_this_backend(official_classifier, tmp_path):
    """The Keras model on each backend against the PyTorch reference, and its own files
    reloaded; the exports (a TensorFlow child whatever the backend) are tested once below."""
    result = porting.port(official_classifier, str(tmp_path), formats=["keras", "h5"],
                          verify=True, progress=False, **CLIP)
    assert sorted(os.listdir(tmp_path)) == ["vit_s_ft.keras", "vit_s_ft.weights.h5"]
    assert len(result.differences) == 3
    for what, diff in result.differences.items():
        assert diff <= 1e-5, (what, diff)
    assert result.differences[".keras reloaded"] == 0.0


@pytest.mark.backend_independent  # the exports run in a TensorFlow child on any backend
def test_official_classifier_to_every_format(official_classifier, tmp_path, record_parity):
    out = str(tmp_path / "out")
    result = porting.port(
        official_classifier, out, formats=["keras", "h5", "savedmodel", "onnx"], verify=True,
        progress=False, **CLIP,
    )
    assert sorted(result.files) == ["h5", "keras", "onnx", "savedmodel"]
    assert sorted(os.listdir(out)) == [
        "vit_s_ft.keras", "vit_s_ft.onnx", "vit_s_ft.weights.h5", "vit_s_ft_savedmodel",
    ]
    assert "official eps" not in result.reference and "eps 1e-06" in result.reference
    for what, diff in result.differences.items():
        assert diff <= 1e-5, (what, diff)
    assert result.differences[".keras reloaded"] == 0.0
    assert len(result.differences) == 7
    # The SavedModel has both signatures; the ONNX file takes a batch of clips named `video`.
    import onnxruntime

    session = onnxruntime.InferenceSession(result.files["onnx"], providers=["CPUExecutionProvider"])
    assert [(i.name, i.shape[1:]) for i in session.get_inputs()] == [("video", [4, 32, 32, 3])]
    assert [o.name for o in session.get_outputs()] == ["logits"]
    model = keras.saving.load_model(result.files["keras"])
    inputs = porting.fixed_inputs(model, batch=3, seed=5)
    outputs = export.run_saved_model(result.files["savedmodel"], inputs, jit_compile=True)
    expected = keras.ops.convert_to_numpy(model(inputs["video"]))
    assert record_parity("SavedModel under XLA vs Keras, batch 3", outputs["logits"], expected) <= 1e-5
    summary = result.summary()
    assert "22." not in summary and "Parameters" in summary and "SavedModel" in summary


def test_transformers_pretrainer_ported_and_verified_on_this_backend(hf_pretrainer, tmp_path):
    result = porting.port(hf_pretrainer, str(tmp_path), formats=["keras"], verify=True,
                          progress=False, mask_ratio=0.5)
    assert result.reference == "transformers VideoMAEForPreTraining.from_pretrained"
    assert len(result.differences) == 2
    assert max(result.differences.values()) <= 1e-5


@pytest.mark.backend_independent  # the exports run in a TensorFlow child on any backend
def test_transformers_pretrainer_with_masks(hf_pretrainer, tmp_path):
    result = porting.port(
        hf_pretrainer, str(tmp_path), formats=["keras", "savedmodel", "onnx"], verify=True,
        progress=False, mask_ratio=0.5,
    )
    assert result.reference == "transformers VideoMAEForPreTraining.from_pretrained"
    assert max(result.differences.values()) <= 1e-5
    import onnxruntime

    session = onnxruntime.InferenceSession(result.files["onnx"], providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["video", "bool_masked_pos"]
    assert [o.name for o in session.get_outputs()] == ["predictions"]


def test_verification_failure_writes_nothing(official_classifier, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(porting.VerificationError, match="tolerance"):
        porting.port(official_classifier, str(out), formats=["keras", "h5"], verify=True,
                     tolerance=-1.0, progress=False, **CLIP)
    assert not out.exists() or os.listdir(out) == []


def test_failure_in_a_later_format_removes_earlier_ones(official_classifier, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("simulated export failure")

    monkeypatch.setattr(export, "export_files", broken)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="simulated"):
        porting.port(official_classifier, str(out), formats=["keras", "h5", "onnx"],
                     progress=False, **CLIP)
    assert os.listdir(out) == []  # neither the finished .keras/.h5 nor temporary files


def test_existing_outputs_are_kept_without_overwrite(official_classifier, tmp_path, capsys):
    target = tmp_path / "vit_s_ft.keras"
    target.write_bytes(b"precious")
    code = cli.main(["port", official_classifier, "--out", str(tmp_path), "--quiet",
                     "--num-frames", "4", "--image-size", "32"])
    assert code == 2
    message = capsys.readouterr().err.strip()
    assert message.count("\n") == 0 and "exists already; pass --overwrite" in message
    assert target.read_bytes() == b"precious"
    code = cli.main(["port", official_classifier, "--out", str(tmp_path), "--quiet", "--overwrite",
                     "--num-frames", "4", "--image-size", "32"])
    assert code == 0
    assert keras.saving.load_model(str(target)).count_params() > 0
    assert _leftovers(tmp_path) == []


def test_cli_errors_are_one_line(tmp_path, capsys):
    import pickle

    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as f:
        pickle.dump({"model": Exploit()}, f, protocol=2)
    for argv, message in [
        (["port", str(evil), "--out", str(tmp_path)], "Refusing to load"),
        (["port", str(tmp_path / "missing.pth"), "--out", str(tmp_path)], "Checkpoint not found"),
        (["port", "videomae-b-k400-ft-1600", "--out", str(tmp_path)], "Did you mean"),
        (["port", str(evil)], "give a SOURCE and --out"),
    ]:
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if "error:" in line]
        assert len(errors) == 1 and message in errors[0] and "Traceback" not in err, err
    with pytest.raises(SystemExit):
        cli.main(["port", "x", "--out", "y", "--format", "tflite"])
    assert "unknown format(s) tflite" in capsys.readouterr().err


def test_cli_json_summary_and_exit_code_on_failed_verification(official_classifier, tmp_path, capsys):
    argv = ["port", official_classifier, "--out", str(tmp_path), "--quiet", "--json", "--verify",
            "--num-frames", "4", "--image-size", "32"]
    assert cli.main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["parameters"] > 0 and summary["files"]["keras"].endswith(".keras")
    assert list(summary["max_abs_diff"])[0].startswith("Keras vs PyTorch reference")
    assert cli.main(argv + ["--overwrite", "--tolerance", "-1"]) == 1
    assert "verification failed" in capsys.readouterr().err


def test_large_models_export_onnx_with_external_data(official_classifier, tmp_path, monkeypatch):
    """ViT-H/g exceed protobuf's 2 GB: their tensors go to `.onnx.data` (forced here)."""
    monkeypatch.setenv("VIDEOMAE_KERAS_ONNX_EXTERNAL_DATA_BYTES", "0")
    result = porting.port(official_classifier, str(tmp_path), formats=["onnx"], verify=True,
                          progress=False, **CLIP)
    assert sorted(os.listdir(tmp_path)) == ["vit_s_ft.onnx", "vit_s_ft.onnx.data"]
    assert os.path.getsize(tmp_path / "vit_s_ft.onnx") < os.path.getsize(tmp_path / "vit_s_ft.onnx.data")
    assert result.differences["ONNX (onnxruntime)"] <= 1e-5
    monkeypatch.delenv("VIDEOMAE_KERAS_ONNX_EXTERNAL_DATA_BYTES")
    porting.port(official_classifier, str(tmp_path), formats=["onnx"], overwrite=True,
                 progress=False, **CLIP)
    assert os.listdir(tmp_path) == ["vit_s_ft.onnx"]  # the stale data file went too


@pytest.mark.backend_independent  # the export and the quantisation run outside the backend
def test_int8_onnx_is_quantised_verified_and_refused_above_its_tolerance(
        official_classifier, tmp_path, capsys):
    import onnx

    out = tmp_path / "out"
    code = cli.main(["port", official_classifier, "--out", str(out), "--format", "onnx-int8",
                     "--verify", "--quiet", "--num-frames", "4", "--image-size", "32"])
    assert code == 0
    summary = capsys.readouterr().out
    assert os.listdir(out) == ["vit_s_ft.int8.onnx"]  # the float file it came from is gone
    line = next(line for line in summary.splitlines() if line.startswith("int8 ONNX"))
    assert "top-1 agreement" in line and f"/{porting.INT8_CLIPS} clips" in line
    relative = float(line.split("mean |diff| / std ")[1].split(",")[0])
    assert 0 < relative <= porting.INT8_TOLERANCE
    graph = onnx.load(str(out / "vit_s_ft.int8.onnx")).graph
    ops = collections.Counter(node.op_type for node in graph.node)
    assert ops["DynamicQuantizeLinear"] and ops["MatMulInteger"]
    # each of the 2 blocks' attention, GELU and LayerNorms in onnxruntime's kernels
    assert (ops["MultiHeadAttention"], ops["Gelu"], ops["LayerNormalization"]) == (2, 2, 4)
    assert ops["Softmax"] == ops["Erf"] == 0
    int8_weights = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(int8_weights) >= 2 * 4 + 2  # qkv, proj, fc1, fc2 per block, embedding, head
    # 7-bit weights: full-range ones overflow the 16-bit pair sums of onnxruntime's u8s8
    # kernels on CPUs without VNNI (0.20 of the std off for a small pretrainer on AVX2)
    largest = max(int(np.abs(onnx.numpy_helper.to_array(t).astype(np.int32)).max())
                  for t in int8_weights)
    assert 32 < largest <= 64, largest
    # float32 weights take 4 bytes each; the int8 file about one (plus scales, norms, biases)
    parameters = int(summary.split("Parameters")[1].split()[0].replace(",", ""))
    assert os.path.getsize(out / "vit_s_ft.int8.onnx") < 1.4 * parameters
    print(summary)

    refused = tmp_path / "refused"
    with pytest.raises(porting.VerificationError, match="int8 tolerance 0"):
        porting.port(official_classifier, str(refused), formats=["keras", "onnx-int8"],
                     verify=True, int8_tolerance=0.0, progress=False, **CLIP)
    assert not refused.exists() or os.listdir(refused) == []


@pytest.mark.backend_independent  # the export and the quantisation run outside the backend
def test_int8_onnx_of_a_pretrainer(hf_pretrainer, tmp_path, monkeypatch):
    """Masked pretrainers gather tokens by data-dependent indices, which onnxruntime's
    symbolic shape inference cannot follow: the quantisation goes on without it, and the
    half-inferred model that onnxruntime then saves does not land in the user's directory."""
    user_dir = tmp_path / "user"
    user_dir.mkdir()
    monkeypatch.chdir(user_dir)
    out = tmp_path / "out"
    result = porting.port(hf_pretrainer, str(out), formats=["onnx-int8"], verify=True,
                          progress=False, mask_ratio=0.5)
    assert os.listdir(out) == ["videomae-small-pt.int8.onnx"]
    assert os.listdir(user_dir) == []
    assert "top1_agreement" not in result.int8  # reconstructions have no classes
    assert 0 < result.int8["relative_diff"] <= porting.INT8_TOLERANCE
    import onnx

    graph = onnx.load(str(out / "videomae-small-pt.int8.onnx")).graph
    ops = collections.Counter(node.op_type for node in graph.node)
    blocks = reference.SMALL["num_hidden_layers"] + reference.SMALL["decoder_num_hidden_layers"]
    assert ops["MultiHeadAttention"] == ops["Gelu"] == blocks and ops["Softmax"] == 0
    assert ops["LayerNormalization"] >= 2 * blocks  # the blocks' and the token norms


def test_tools_script_and_console_command(official_classifier, tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    script = os.path.join(ROOT, "tools", "port_pytorch_weights.py")
    run = subprocess.run(
        [sys.executable, script, official_classifier, "--out", str(tmp_path), "--format", "h5",
         "--num-frames", "4", "--image-size", "32", "--quiet"],
        capture_output=True, text=True, env=env,
    )
    assert run.returncode == 0, run.stderr
    assert "vit_s_ft.weights.h5" in run.stdout
    help_text = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True,
                               env=env).stdout
    assert "--verify" in help_text and "--overwrite" in help_text
    command = shutil.which("videomae-keras", path=os.path.dirname(sys.executable))
    assert command, "the console command is installed beside the interpreter"
    listed = subprocess.run([command, "port", "--list"], capture_output=True, text=True, env=env)
    assert listed.returncode == 0 and "videomae-b-k400-ft-1600e" in listed.stdout


# --- signals: a port is all-or-nothing however it ends -------------------------------------

def _children(pid):
    """Pids of live processes whose parent is `pid` (Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return found


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _port_until_the_export_runs(source, out, tmp_path, extra=()):
    """Starts `videomae-keras port` in a process of its own and waits for its TensorFlow
    export worker; returns (port process, worker pid)."""
    import time

    env = dict(os.environ, TMPDIR=str(tmp_path / "tmp"), KERAS_BACKEND="torch",
               TF_CPP_MIN_LOG_LEVEL="3")
    os.makedirs(env["TMPDIR"], exist_ok=True)
    command = shutil.which("videomae-keras", path=os.path.dirname(sys.executable))
    process = subprocess.Popen(
        [command, "port", source, "--out", str(out), "--format", "keras,h5,savedmodel",
         "--num-frames", "4", "--image-size", "32", "--quiet", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        workers = _children(process.pid)
        if workers:
            time.sleep(1.0)  # let it get into the export
            return process, workers[0]
        time.sleep(0.2)
    process.kill()
    raise AssertionError(f"the export worker never started: {process.communicate()}")


def _gone(pid, seconds=30):
    import time

    deadline = time.time() + seconds
    while time.time() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.2)
    return False


needs_proc = pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc (Linux)")


@needs_proc
@pytest.mark.backend_independent
def test_sigterm_during_the_export_leaves_nothing_and_no_worker(official_classifier, tmp_path):
    import signal

    out = tmp_path / "out"
    process, worker = _port_until_the_export_runs(official_classifier, out, tmp_path)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert err.strip().splitlines() == ["videomae-keras port: interrupted; nothing partial was "
                                        "kept"], err
    assert _gone(worker), "the TensorFlow export worker outlived the port"
    assert not out.exists() or os.listdir(out) == []  # no outputs, no hidden staging
    assert os.listdir(tmp_path / "tmp") == []  # no scratch folder in the temp dir


@needs_proc
@pytest.mark.backend_independent
def test_sigkill_during_an_overwrite_keeps_the_old_outputs(official_classifier, tmp_path):
    import signal

    out = tmp_path / "out"
    porting.port(official_classifier, str(out), formats=["keras"], progress=False, **CLIP)
    old = (out / "vit_s_ft.keras").read_bytes()
    process, worker = _port_until_the_export_runs(official_classifier, out, tmp_path,
                                                  ["--overwrite"])
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    assert _gone(worker), "the TensorFlow export worker outlived its killed parent"
    assert _leftovers(out) and sorted(os.listdir(out))[-1] == "vit_s_ft.keras"
    assert [n for n in os.listdir(out) if not n.startswith(".")] == ["vit_s_ft.keras"]
    assert (out / "vit_s_ft.keras").read_bytes() == old  # the old output, untouched
    # the next run clears what the killed one left and writes the whole set
    result = porting.port(official_classifier, str(out), formats=["keras", "h5"],
                          overwrite=True, progress=False, **CLIP)
    assert sorted(os.listdir(out)) == ["vit_s_ft.keras", "vit_s_ft.weights.h5"]
    assert result.notes == [] or "completed" not in " ".join(result.notes)


def test_port_stores_class_names_from_a_labels_file(official_classifier, tmp_path, capsys):
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"class {c}\n" for c in "abcde"))
    out = tmp_path / "out"
    assert cli.main(["port", official_classifier, "--out", str(out), "--labels", str(labels),
                     "--num-frames", "4", "--image-size", "32", "--quiet"]) == 0
    model = keras.saving.load_model(str(out / "vit_s_ft.keras"))
    assert model.class_names == ("class a", "class b", "class c", "class d", "class e")
    labels.write_text("only\ntwo\n")
    assert cli.main(["port", official_classifier, "--out", str(tmp_path / "other"), "--labels",
                     str(labels), "--num-frames", "4", "--image-size", "32", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("class_names has 2 names but the head has 5 classes.") and "\n" not in err
    assert not (tmp_path / "other").exists() or not os.listdir(tmp_path / "other")
