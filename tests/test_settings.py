from pathlib import Path

import pytest

from config.settings import ConfigError, load_settings


def test_bundled_defaults_load_and_validate() -> None:
    settings = load_settings(env={})
    assert settings.kafka.events_topic == "pulse.events"
    assert settings.kafka.brokers == ["127.0.0.1:9092"]
    assert settings.rules_path.name == "rules.toml" and settings.rules_path.exists()


def test_environment_overrides_and_conventional_variables() -> None:
    env = {"PULSE__REDIS__KEY_PREFIX": "staging", "PULSE__KAFKA__PARTITIONS": "12",
           "KAFKA_BOOTSTRAP_SERVERS": "a:1,b:2", "REDIS_URL": "redis://r:6380/2",
           "PULSE__FEATURES__CATEGORY_HALF_LIFE_DAYS": "7"}
    settings = load_settings(env=env)
    assert settings.redis.key_prefix == "staging"
    assert settings.kafka.partitions == 12
    assert settings.kafka.brokers == ["a:1", "b:2"]
    assert settings.redis.url == "redis://r:6380/2"
    assert settings.features.category_half_life_days == 7.0


@pytest.mark.parametrize(("toml", "message"), [
    ("[kafka]\npartitons = 3\n", "'kafka.partitons': unknown key"),
    ("[kafka]\npartitions = \"three\"\n", "'kafka.partitions': must be an integer"),
    ("[kafka]\npartitions = 0\n", "'kafka.partitions': must be >= 1"),
    ("[clock]\nmode = \"sundial\"\n", "'clock.mode': must be 'event' or 'wall'"),
    ("[redsi]\nurl = \"x\"\n", "'redsi': unknown section"),
    ("[redis]\nurl = \"http://x\"\n", "'redis.url': must be a redis:// URL"),
    ("[kafka\n", "config file"),
])
def test_invalid_config_fails_fast_naming_the_key(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_settings(path, env={})


def test_bad_environment_value_names_the_key() -> None:
    with pytest.raises(ConfigError, match="'model.horizon_days': must be a number.*PULSE__MODEL__HORIZON_DAYS"):
        load_settings(env={"PULSE__MODEL__HORIZON_DAYS": "soon"})
    with pytest.raises(ConfigError, match="'kafka.partitons': unknown key.*environment variable PULSE__KAFKA__PARTITONS"):
        load_settings(env={"PULSE__KAFKA__PARTITONS": "3"})


def test_config_path_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file"):
        load_settings(tmp_path, env={})


def test_replace_validates() -> None:
    with pytest.raises(ConfigError, match="redis.key_prefix"):
        load_settings(env={}).replace(redis={"key_prefix": "a{b}"})
