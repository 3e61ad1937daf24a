"""Each setting is declared once (ingest/settings/models.py): its flag, environment
variable, default and help all come from that declaration. These tests hold every
declared setting to it through the real parsers, and docs/configuration.md to the
generator."""

from __future__ import annotations

import argparse
from dataclasses import replace

import pytest

from ingest.errors import SettingsError
from ingest.modal_settings import DeploySettings
from ingest.settings import (
    EmbedderSettings,
    IngestSettings,
    ServeSettings,
    StoreSettings,
    add_embedder_args,
    add_ingest_args,
    add_rebuild_args,
    add_state_args,
    add_store_args,
    declared,
    ingest_settings,
    reference,
)
from ingest.settings.declare import Declared

pytestmark = pytest.mark.unit

EVERY = [item for cls in (IngestSettings, ServeSettings, DeploySettings) for item in declared(cls)]


def run_parser(env):
    parser = argparse.ArgumentParser()
    for add in (add_ingest_args, add_embedder_args, add_store_args, add_state_args, add_rebuild_args):
        add(parser, env)
    return parser


def sample(item: Declared) -> tuple[str, object]:
    """A valid raw value for the setting other than its default, and what it reads as."""
    if item.choices:
        value = next(choice for choice in reversed(item.choices) if choice != item.default)
        return value, value
    if item.kind is bool:
        return ("0", False) if item.default else ("1", True)
    if item.kind is int:
        value = 3 if item.name != "max_chars" else 500
        return str(value), value
    if item.kind is float:
        value = 0.25 if (item.option.minimum or 0) <= 0.25 else item.option.minimum + 1.5  # within its bounds
        return str(value), value
    if item.kind is tuple:
        return "a, b", ("a", "b")
    value = "http://example.test:1234" if item.name.endswith("_url") else "some-value"
    return value, value


def read(settings, path):
    for name in path:
        settings = getattr(settings, name)
    return settings


def test_flags_and_variables_are_each_declared_once():
    flags = [item.option.flag for item in EVERY if item.option.flag]
    envs = [item.option.env for item in EVERY if item.option.env]
    assert len(flags) == len(set(flags)) and len(envs) == len(set(envs))
    names = [item.name for item in declared(IngestSettings)]  # a parsed command line holds them by field name
    assert len(names) == len(set(names))
    assert all(item.option.help for item in EVERY)


@pytest.mark.parametrize("item", [i for i in declared(IngestSettings) if i.option.env], ids=lambda i: i.option.env)
def test_every_variable_reaches_its_setting_through_the_command_line_and_from_env(item):
    raw, expected = sample(item)
    if item.option.env_inverted:
        expected = not expected
    env = {item.option.env: raw}
    if item.name == "embedder" or item.name == "tei_url":
        env.update(TEI_URL="http://example.test:1234")  # --embedder tei needs it
    if item.option.flag:
        from_command_line = ingest_settings(run_parser(env).parse_args([]), env)
        assert read(from_command_line, item.path) == expected
    assert read(IngestSettings.from_env(env), item.path) == expected


@pytest.mark.parametrize("item", [i for i in declared(IngestSettings) if i.option.flag], ids=lambda i: i.option.flag)
def test_every_flag_reaches_its_setting_and_beats_its_variable(item):
    raw, expected = sample(item)
    argv = [item.option.flag] if item.option.switch is not None else [item.option.flag, raw]
    env = {"TEI_URL": "http://example.test:1234"} if item.name == "embedder" else {}
    if item.option.env and item.option.switch is None and item.default is not None:
        env[item.option.env] = str(item.default)  # valid, and not what the flag says
    expected = item.option.switch if item.option.switch is not None else expected
    assert read(ingest_settings(run_parser(env).parse_args(argv), env), item.path) == expected


def test_library_code_reads_the_environment_as_the_command_line_does():
    env = {
        "QDRANT_URL": "http://db.test:6333",
        "QDRANT_API_KEY": "s3cret",
        "QDRANT_SHARDS": "4",
        "EMBEDDER": "tei",
        "TEI_URL": "http://tei.test:8080",
        "CHUNK_TITLE_PREFIX": "0",
        "INGEST_YES": "1",
    }
    assert IngestSettings.from_env(env) == ingest_settings(run_parser(env).parse_args([]), env)
    assert StoreSettings.from_env(env).layout.shards == 4 and "s3cret" not in repr(StoreSettings.from_env(env))
    assert EmbedderSettings.from_env(env, tei_retry_budget=10.0).tei_retry_budget == 10.0


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"EMBEDDER": "gpu"}, "environment variable EMBEDDER='gpu' is not one of local, tei, modal"),
        ({"EMBED_BATCH_SIZE": "lots"}, "environment variable EMBED_BATCH_SIZE='lots' is not a valid int"),
        ({"EMBED_BATCH_SIZE": "0"}, "--batch-size must be at least 1, got 0"),
        ({"INGEST_MAX_DELETE_SHARE": "2"}, "--max-delete-share must be between 0 and 1, got 2.0"),
        ({"QDRANT_QUANTIZATION": "binary"}, "QDRANT_QUANTIZATION='binary' is not one of int8, none"),
    ],
)
def test_a_bad_variable_is_one_line_naming_it(env, message):
    with pytest.raises(SettingsError) as error:
        IngestSettings.from_env(env)
    assert message in str(error.value)


def test_bounded_flags_are_usage_errors_naming_the_flag(capsys):
    with pytest.raises(SystemExit):
        run_parser({}).parse_args(["--batch-size", "0"])
    assert "argument --batch-size: must be at least 1, got 0" in capsys.readouterr().err


def test_settings_objects_check_their_declared_choices_and_bounds():
    with pytest.raises(SettingsError, match="--sparse 'splade' is not one of bm25, none"):
        IngestSettings(sparse="splade")
    with pytest.raises(SettingsError, match="--port must be between 0 and 65535"):
        ServeSettings(port=70000)
    with pytest.raises(SettingsError, match="WIKI_EMBED_GPUS must be at least 1"):
        replace(DeploySettings(), gpus=0)


def test_the_help_names_each_variable_and_default():
    text = run_parser({}).format_help()
    for item in declared(IngestSettings):
        if item.option.flag:
            assert item.option.flag in text
        if item.option.flag and item.option.env:
            assert item.option.env in text


def test_the_configuration_reference_is_generated_from_the_declarations():
    """docs/configuration.md is what `python -m ingest.settings.reference --write` writes."""
    text = reference.DOC.read_text(encoding="utf-8")
    assert text == reference.rewrite(text, reference.tables()), (
        "docs/configuration.md is stale: run python -m ingest.settings.reference --write"
    )
    for item in EVERY:
        assert (item.option.flag or item.option.env or item.option.help) in text
