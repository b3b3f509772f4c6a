from pathlib import Path

import orjson
import pytest
import redis

from config.settings import Settings
from operators.profile import ProfileWrite
from pulse.cli import main
from state.keys import KeyLayout
from state.redis_writer import ProfileWriter


@pytest.mark.parametrize("command", [[], ["run"], ["replay"], ["profile"], ["demo"]])
def test_every_command_explains_itself(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: pulse") and len(out.splitlines()) > 5


def test_bad_config_is_a_clear_error_not_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "pulse.toml"
    config.write_text("[redis]\nkey_prefx = 'x'\n")
    assert main(["profile", "-c", str(config), "someone"]) == 2
    assert "config key 'redis.key_prefx': unknown key" in capsys.readouterr().err


def test_bad_rules_file_names_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "rules.toml").write_text('[segments.x]\nwhen = "ltv >>> 3"\n')
    (tmp_path / "pulse.toml").write_text("[metrics]\nport = 0\n")
    assert main(["run", "-c", str(tmp_path / "pulse.toml"), "--until-eof"]) == 2
    assert "rules.toml:2: segment 'x': column 6" in capsys.readouterr().err


def test_profile_prints_what_redis_holds(isolated_settings: Settings, redis_client: redis.Redis,
                                         tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = isolated_settings.redis.key_prefix
    ProfileWriter(redis_client, KeyLayout(prefix), 0).write(
        [ProfileWrite("uci-1", 3, orjson.dumps({"userId": "uci-1", "ltv": 5.5}), ())])
    monkeypatch.setenv("REDIS_URL", isolated_settings.redis.url)
    monkeypatch.setenv("PULSE__REDIS__KEY_PREFIX", prefix)
    assert main(["profile", "uci-1"]) == 0
    assert orjson.loads(capsys.readouterr().out) == {"userId": "uci-1", "ltv": 5.5}
    assert main(["profile", "nobody"]) == 1
    assert "no profile for 'nobody'" in capsys.readouterr().err


def test_unreachable_kafka_fails_clearly_instead_of_hanging(monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("PULSE__KAFKA__CONNECT_TIMEOUT_SECONDS", "1")
    assert main(["run", "--until-eof", "--metrics-port", "0"]) == 1
    assert "cannot reach Kafka at 127.0.0.1:1" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "message"), [
    (["run", "--end-of-input", "2011-01-01T00:00:00Z"], "--end-of-input only applies with --until-eof"),
    (["run", "-s", "5"], "need -r/--recovery-dir"),
    (["run", "-i", "1"], "go together"),
    (["replay", "cdnow", "--since", "2000-01-01", "--until", "1999-01-01"], "--since must be before --until"),
])
def test_options_that_make_no_sense_together(argv: list[str], message: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["run", "-w", "0"], ["replay", "cdnow", "--speed", "0"], ["demo", "-w", "-2"]])
def test_non_positive_counts_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2


def test_cli_dataset_names_match_the_loaders() -> None:
    from flows.datasets import DATASETS
    from pulse.cli import DATASET_NAMES

    assert tuple(DATASETS) == DATASET_NAMES
