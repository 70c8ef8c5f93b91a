"""facealign_cli.training.config and ``facealign train --config``: every shipped recipe reads as
before; a broken recipe (not TOML, not UTF-8, an unknown key, a value of the wrong type or
range) is a one-line usage error naming the key, before torch or any data is touched."""

from __future__ import annotations

import tomllib
from dataclasses import asdict
from pathlib import Path

import pytest
from click.testing import CliRunner

from facealign_cli.cli.train import train_cmd
from facealign_cli.training.config import ConfigError, TrainConfig, same_recipe, stored_config

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs").glob("train_v*.toml"))


def test_every_shipped_recipe_validates_and_reads_as_the_plain_toml_says():
    """Each configs/train_v*.toml gives exactly the TrainConfig its keys say (the values as
    TOML parses them, types included; yaw_weights as a tuple): a run of an existing recipe keeps
    its stored config, so resuming and the model-card check still match."""
    names = {p.name for p in CONFIGS}
    assert {"train_v1.toml", "train_v2.toml", "train_v3.toml"} <= names
    for p in CONFIGS:
        with open(p, "rb") as f:
            raw = tomllib.load(f)["train"]
        if "yaw_weights" in raw:
            raw["yaw_weights"] = tuple(raw["yaw_weights"])
        cfg = TrainConfig.from_toml(p)
        assert repr(asdict(cfg)) == repr(asdict(TrainConfig(**raw))), p.name
        cfg.validate()
    assert TrainConfig.from_toml(REPO / "configs" / "train_v3.toml").arch == "mb05"
    # the fan_* -> dws_* rename is finished in the recipes: old names are only read
    assert {TrainConfig.from_toml(p).arch for p in CONFIGS} == {"dws_m", "mb05"}


def test_a_stored_config_names_the_arch_by_its_current_name_and_old_names_still_match():
    old = TrainConfig(arch="fan_m", epochs=7)
    assert asdict(old)["arch"] == "fan_m"  # the config itself is taken as given ...
    stored = stored_config(old)
    assert stored == {**asdict(old), "arch": "dws_m"}  # ... checkpoints store the new name
    new = TrainConfig(arch="dws_m", epochs=7)
    assert same_recipe(stored, new) and same_recipe(asdict(old), new)  # a run before the rename
    assert same_recipe(stored, old)
    assert not same_recipe(stored, TrainConfig(arch="dws_s", epochs=7))
    assert not same_recipe(stored, TrainConfig(arch="dws_m", epochs=8))
    v3 = TrainConfig.from_toml(REPO / "configs" / "train_v3.toml")
    assert stored_config(v3) == asdict(v3)  # names without an alias: exactly asdict


def _recipe(tmp_path: Path, old: str, new: str) -> Path:
    """configs/train_v3.toml with the line ``old`` replaced by ``new``."""
    text = (REPO / "configs" / "train_v3.toml").read_text()
    assert old in text.splitlines()
    path = tmp_path / "recipe.toml"
    path.write_text(text.replace(old + "\n", new + "\n"))
    return path


BAD_VALUES = [
    ("batch_size = 64", "batch_size = 0", "batch_size"),
    ("batch_size = 64", "batch_size = 64.0", "batch_size"),
    ("batch_size = 64", 'batch_size = "64"', "batch_size"),
    ("lr = 2e-3", "lr = nan", "lr"),
    ("lr = 2e-3", "lr = inf", "lr"),
    ("lr = 2e-3", "lr = 0.0", "lr"),
    ("arch = \"mb05\"", "arch = \"nope\"", "arch"),
    ("arch = \"mb05\"", "arch = 5", "arch"),
    ("epochs = 50", "epochs = -5", "epochs"),
    ("occlusion_p = 0.25", "occlusion_p = 1.5", "occlusion_p"),
    ("photo_p = 0.2", "photo_p = -0.1", "photo_p"),
    ("roi_scale = 0.88", "roi_scale = 0.0", "roi_scale"),
    ("flip = true", "flip = 1", "flip"),
    ("flip = true", 'flip = "yes"', "flip"),
    ("threads = 2", "threads = 0", "threads"),
    ("seed = 0", "seed = -1", "seed"),
    ("seed = 0", "seed = true", "seed"),
    ("rot_deg = 30.0", "rot_deg = 400.0", "rot_deg"),
    ("w_real = 0.2", "w_real = -0.2", "w_real"),
    ("seed = 0", "yaw_weights = [1.0, 2.0]", "yaw_weights"),
    ("seed = 0", "yaw_weights = [1.0, nan, 2.0]", "yaw_weights"),
    ("seed = 0", "yaw_weights = [0, 0, 0]", "yaw_weights"),
    ("seed = 0", "yaw_weights = 2.0", "yaw_weights"),
    ("seed = 0", 'labels = "refitted"', "labels"),
    ("seed = 0", "init_from = 3", "init_from"),
    ("seed = 0", "extra = 3", "extra"),
]


@pytest.mark.parametrize("old,new,key", BAD_VALUES, ids=[b[1] for b in BAD_VALUES])
def test_a_bad_value_is_refused_naming_the_file_and_key(tmp_path, old, new, key):
    path = _recipe(tmp_path, old, new)
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_toml(path)
    assert err.value.key == key
    assert str(err.value).startswith(f"{path}: {key} = ")


@pytest.mark.parametrize("content,needle", [
    (b"[train]\nbatchsize = 64\n", "unknown key 'batchsize' (did you mean 'batch_size'?)"),
    (b"[train]\nlr = \n", "is not valid TOML"),
    (b"[train]\narch = \"mb05\n", "is not valid TOML"),
    (b"# caf\xe9 (latin-1)\n[train]\narch = \"mb05\"\n", "is not UTF-8 text"),
    (b"lr = 1e-3\n[train]\narch = \"mb05\"\n", "unknown top-level key 'lr'"),
    (b"train = 3\n", "train must be a table"),
], ids=["unknown-key", "empty-value", "unclosed-string", "latin-1", "top-level-key", "table"])
def test_a_broken_file_is_refused_in_one_line(tmp_path, content, needle):
    path = tmp_path / "recipe.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=None) as err:
        TrainConfig.from_toml(path)
    assert needle in str(err.value) and str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_validate_checks_values_set_after_reading():
    cfg = TrainConfig(arch="mb05")
    cfg.validate()
    cfg.batch_size = 0
    with pytest.raises(ConfigError, match="batch_size = 0: want an integer >= 1"):
        cfg.validate()


def _train(tmp_path, *args):
    """``facealign train`` on an empty data folder: a run that got past the config check would
    fail preparing data (or on torch), never with exit 2."""
    shared = tmp_path / "shared"
    shared.mkdir(exist_ok=True)
    return CliRunner().invoke(train_cmd, [*args, "--shared", str(shared), "--out",
                                          str(tmp_path / "run"), "--cache",
                                          str(tmp_path / "cache")])


@pytest.mark.parametrize("old,new,key", [
    ("batch_size = 64", "batch_size = 0", "batch_size"),
    ("lr = 2e-3", "lr = nan", "lr"),
    ("arch = \"mb05\"", "arch = \"nope\"", "arch"),
    ("seed = 0", "sead = 0", "sead"),
])
def test_cli_refuses_a_bad_recipe_as_a_usage_error(tmp_path, old, new, key):
    res = _train(tmp_path, "--config", str(_recipe(tmp_path, old, new)))
    assert res.exit_code == 2, res.output
    assert isinstance(res.exception, SystemExit) and "Traceback" not in res.output
    assert "'--config'" in res.output and key in res.output
    assert not (tmp_path / "cache").exists() and not (tmp_path / "run").exists()


def test_cli_refuses_a_latin1_recipe_and_bad_overrides(tmp_path):
    path = tmp_path / "recipe.toml"
    path.write_bytes((REPO / "configs" / "train_v3.toml").read_bytes() + b"# \xb0\n")
    res = _train(tmp_path, "--config", str(path))
    assert res.exit_code == 2 and "is not UTF-8 text" in res.output, res.output
    good = REPO / "configs" / "train_v3.toml"
    for flag in ("--epochs", "--max-steps", "--limit-faces"):
        res = _train(tmp_path, "--config", str(good), flag, "-1")
        assert res.exit_code == 2 and flag in res.output, res.output


def test_cli_refuses_a_missing_init_checkpoint_before_preparing_data(tmp_path):
    path = _recipe(tmp_path, "seed = 0", f"init_from = \"{tmp_path / 'absent.pth'}\"")
    res = _train(tmp_path, "--config", str(path))
    assert res.exit_code == 2, res.output
    assert "init_from" in res.output and "no such file" in res.output
