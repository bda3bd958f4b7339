"""The config refuses what it does not know: a typo at any level names the key and the
nearest valid one; a loaded config cannot be changed in place."""

from __future__ import annotations

import json

import pydantic
import pytest

from ml_core import config as config_mod
from ml_core.config import CoincastConfig, load_config
from ml_core.errors import ConfigError


def _sections(model: type[pydantic.BaseModel], path: tuple[str, ...] = ()):
    """(dotted path, section class) of every section under ``model``, the root included."""
    yield path, model
    for name, field in model.model_fields.items():
        inner = config_mod._section_type(field.annotation)
        if inner is not None:
            yield from _sections(inner, (*path, name))


SECTIONS = list(_sections(CoincastConfig))


def _nest(path: tuple[str, ...], leaf: dict) -> dict:
    """``leaf`` placed at ``path``; a list-valued section (``sources``) gets one entry."""
    value: object = leaf
    for i in range(len(path), 0, -1):
        field = _field_at(path[:i])
        if typing_is_list(field.annotation):
            value = [value]
        value = {path[i - 1]: value}
    return value  # type: ignore[return-value]


def _field_at(path: tuple[str, ...]) -> pydantic.fields.FieldInfo:
    model: type[pydantic.BaseModel] = CoincastConfig
    for name in path[:-1]:
        model = config_mod._section_type(model.model_fields[name].annotation)
    return model.model_fields[path[-1]]


def typing_is_list(annotation: object) -> bool:
    import typing

    return typing.get_origin(annotation) is list


def test_every_section_class_is_reached():
    """A section added later is covered by the typo test below without editing it."""
    reached = {cls for _, cls in SECTIONS}
    defined = set(config_mod._Section.__subclasses__())
    assert defined <= reached, f"sections not under CoincastConfig: {defined - reached}"


@pytest.mark.parametrize(("path", "cls"), SECTIONS, ids=[".".join(p) or "top" for p, _ in SECTIONS])
def test_a_typo_in_any_section_is_refused_with_the_nearest_key(tmp_path, path, cls):
    valid = sorted(cls.model_fields)
    field = next(f for f in valid if len(f) > 3)
    typo = field + field[-1]  # 'min_improvement' -> 'min_improvementt'
    leaf: dict = {typo: 1}
    if cls is config_mod.SourceConfig:  # a source needs its required symbols to get this far
        leaf["symbols"] = ["BTC/USDT"]
    file = tmp_path / "c.json"
    file.write_text(json.dumps(_nest(path, leaf)))
    with pytest.raises(ConfigError) as err:
        load_config(file)
    dotted = ".".join((*path, typo))
    msg = str(err.value)
    assert f"unknown key {dotted.replace('sources.', 'sources.0.', 1)}" in msg, msg
    assert f"did you mean {'.'.join((*path, field)).replace('sources.', 'sources.0.', 1)}?" in msg


def test_the_issue_typos_name_their_fix(tmp_path):
    file = tmp_path / "c.yaml"
    file.write_text("registry:\n  min_improvment: 0.05\n  gate:\n    pbo_treshold: 0.1\n")
    with pytest.raises(ConfigError) as err:
        load_config(file)
    msg = str(err.value)
    assert "unknown key registry.min_improvment: did you mean registry.min_improvement?" in msg
    assert (
        "unknown key registry.gate.pbo_treshold: did you mean registry.gate.pbo_threshold?" in msg
    )


def test_a_typo_in_an_environment_variable_is_refused(monkeypatch):
    monkeypatch.setenv("COINCAST_REGISTRY__MIN_IMPROVMENT", "0.1")
    with pytest.raises(ConfigError, match="did you mean registry.min_improvement"):
        load_config()


def test_a_key_with_nothing_near_lists_the_valid_keys(tmp_path):
    file = tmp_path / "c.yaml"
    file.write_text("evaluation:\n  zzz: 1\n")
    with pytest.raises(ConfigError) as err:
        load_config(file)
    assert "unknown key evaluation.zzz: valid keys of evaluation: " in str(err.value)
    assert "fee_bps" in str(err.value)


def test_a_loaded_config_cannot_change_in_place(tmp_path):
    cfg = load_config(home=tmp_path)
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        cfg.registry.min_improvement = 0.5  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        cfg.home = tmp_path / "other"  # type: ignore[misc]
    changed = cfg.model_copy(
        update={"registry": cfg.registry.model_copy(update={"min_improvement": 0.5})}
    )
    assert changed.registry.min_improvement == 0.5
    assert cfg.registry.min_improvement != 0.5


def test_the_example_config_in_docs_loads(tmp_path):
    """docs/config.example.yaml is what users copy: every key in it must be real."""
    from pathlib import Path

    example = Path(__file__).parents[2] / "docs" / "config.example.yaml"
    cfg = load_config(example, home=tmp_path)
    assert cfg.data.timeframe == "1h" and cfg.sources[0].symbols == ["BTC/USDT", "ETH/USDT"]
    assert cfg.models.params_for("lightgbm") == {"num_leaves": 15}
