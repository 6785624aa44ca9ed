"""The training settings (videomae_keras/training/settings.py): one field per setting feeds the
command line, the run functions and run.json."""

import dataclasses

import pytest

from videomae_keras.commands import build_parser
from videomae_keras.training.settings import FinetuneSettings, PretrainSettings

# What run.json records, as earlier releases wrote it: a folder they left interrupted must
# resume, so these keys do not change (finetune adds the resolved class names itself).
RECORDED = {
    PretrainSettings: {"architecture", "epochs", "batch_size", "base_lr", "warmup_epochs",
                       "mask_ratio", "num_frames", "image_size", "sampling_rate", "clip_grad",
                       "seed", "dtype", "decoder_mask_ratio", "accumulate", "model"},
    FinetuneSettings: {"num_classes", "epochs", "batch_size", "base_lr", "layer_decay",
                       "warmup_epochs", "drop_path_rate", "label_smoothing", "flip", "scale",
                       "sampling_rate", "clip_grad", "seed", "dtype", "mixup", "cutmix",
                       "accumulate"},
}


def _parse(*argv):
    args = build_parser().parse_args(list(argv))
    args.check(args)
    return args.settings_class.from_arguments(args)


@pytest.mark.parametrize("kind", [PretrainSettings, FinetuneSettings])
def test_recorded_keys_are_those_run_folders_hold(kind):
    assert set(kind().recorded()) == RECORDED[kind]


def test_every_option_reaches_its_field():
    settings = _parse(
        "pretrain", "train.txt", "--out", "run", "--arch", "S16PT", "--lr", "3e-4",
        "--mask-ratio", "0.75", "--pixel-loss", "--decoder-mask-ratio", "0.5",
        "--num-frames", "8", "--image-size", "160", "--epochs", "7", "--batch-size", "4",
        "--warmup-epochs", "2", "--sampling-rate", "2", "--clip-grad", "0.02",
        "--workers", "3", "--seed", "5", "--mixed-precision", "--distribution", "fsdp",
        "--mesh", "2x1", "--remat", "--accumulate", "3", "--overwrite", "--skip-video-check",
    )
    assert settings == PretrainSettings(
        architecture="S16PT", base_lr=3e-4, mask_ratio=0.75, norm_pix_loss=False,
        decoder_mask_ratio=0.5, num_frames=8, image_size=160, epochs=7, batch_size=4,
        warmup_epochs=2, sampling_rate=2, clip_grad=0.02, workers=3, seed=5,
        dtype="mixed_bfloat16", distribution="fsdp", mesh="2x1", remat=True, accumulate=3,
        overwrite=True, check_videos=False)
    assert settings.recorded()["model"] == {"norm_pix_loss": False}
    tuned = _parse("finetune", "train.txt", "--pretrained", "pt.keras", "--out", "run",
                   "--num-classes", "7", "--val-list", "val.txt", "--test-views", "5x3",
                   "--lr", "5e-4", "--layer-decay", "0.65", "--drop-path", "0.2",
                   "--label-smoothing", "0.05", "--mixup", "0", "--cutmix", "0.5",
                   "--min-scale", "0.3", "--no-flip", "--data-parallel")
    assert tuned == FinetuneSettings(
        num_classes=7, val_list="val.txt", test_views=(5, 3), base_lr=5e-4, layer_decay=0.65,
        drop_path_rate=0.2, label_smoothing=0.05, mixup=0.0, cutmix=0.5, scale=(0.3, 1.0),
        flip=False, distribution="data", epochs=100)


def test_command_defaults_are_the_official_recipe_python_defaults_stay():
    """Where the command's default differs from the function's (the official mixup/cutmix
    and 100 epochs on the command line), each keeps its own."""
    command = _parse("finetune", "t.txt", "--pretrained", "p.keras", "--out", "o")
    assert (command.mixup, command.cutmix, command.epochs) == (0.8, 1.0, 100)
    python = FinetuneSettings()
    assert (python.mixup, python.cutmix, python.epochs) == (0.0, 0.0, 50)
    assert _parse("pretrain", "t.txt", "--out", "o").architecture == "B16PT"
    assert PretrainSettings().architecture is None
    # every other default is the same on both sides
    for kind, argv in ((PretrainSettings, ("pretrain", "t.txt", "--out", "o")),
                       (FinetuneSettings, ("finetune", "t.txt", "--pretrained", "p.keras",
                                           "--out", "o"))):
        parsed, python = _parse(*argv), kind()
        differing = {f.name for f in dataclasses.fields(kind)
                     if getattr(parsed, f.name) != getattr(python, f.name)}
        assert differing <= {"mixup", "cutmix", "epochs", "architecture", "norm_pix_loss"}


def test_bad_values_from_python_are_one_line_naming_the_setting():
    with pytest.raises(ValueError, match=r"^mask_ratio: must lie in \(0, 1\), got 1.5"):
        PretrainSettings.of(mask_ratio=1.5)
    with pytest.raises(ValueError, match="^batch_size: expected an integer"):
        FinetuneSettings.of(batch_size=2.5)
    with pytest.raises(TypeError, match="unknown FinetuneSettings setting.*mask_ratio"):
        FinetuneSettings.of(mask_ratio=0.5)
    with pytest.raises(TypeError, match="settings must be a FinetuneSettings"):
        FinetuneSettings.of(PretrainSettings())
    assert FinetuneSettings.of(FinetuneSettings(seed=3), epochs=2) == FinetuneSettings(
        seed=3, epochs=2)


def test_finetune_reads_no_checkpoint_format_itself(tmp_path):
    """Training takes a model or a .keras file; other sources come with their loader."""
    from videomae_keras.training.run import _pretrained_loader

    with pytest.raises(ValueError, match="not a .keras file; load it with"):
        _pretrained_loader(str(tmp_path / "checkpoint.pth"))
    seen = []
    load = _pretrained_loader("name/of-a-source", loader=seen.append)
    assert seen == []  # read only when training starts
    assert load() is None and seen == ["name/of-a-source"]
