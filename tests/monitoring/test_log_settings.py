"""``--log-sample`` and ``--log-buffer-rows``: flag over ``MODELYARD_*`` over default, and refusals
that name the flag and the bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.errors import ConfigurationError
from modelyard.settings import DEFAULT_LOG_BUFFER_ROWS, Settings


def test_log_settings_come_from_the_flag_then_the_environment_then_the_default(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    default = Settings.load(home=tmp_path)
    assert (default.log_sample, default.log_buffer_rows) == (1.0, DEFAULT_LOG_BUFFER_ROWS)
    monkeypatch.setenv("MODELYARD_LOG_SAMPLE", "0")  # 0 turns the log off; it is not "unset"
    monkeypatch.setenv("MODELYARD_LOG_BUFFER_ROWS", "500")
    from_env = Settings.load(home=tmp_path)
    assert (from_env.log_sample, from_env.log_buffer_rows) == (0.0, 500)
    flagged = Settings.load(home=tmp_path, log_sample=0.25, log_buffer_rows=7)
    assert (flagged.log_sample, flagged.log_buffer_rows) == (0.25, 7)


def test_bad_log_settings_name_the_flag_and_the_value(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match=r"^--log-sample \(MODELYARD_LOG_SAMPLE\) must "
                                                 r"be a fraction from 0 to 1, got 1.5$"):
        Settings.load(home=tmp_path, log_sample=1.5)
    with pytest.raises(ConfigurationError, match=r"^--log-buffer-rows \(MODELYARD_LOG_BUFFER_ROWS"
                                                 r"\) must be at least 1 row, got 0$"):
        Settings.load(home=tmp_path, log_buffer_rows=0)
    monkeypatch.setenv("MODELYARD_LOG_SAMPLE", "most")
    with pytest.raises(ConfigurationError, match="MODELYARD_LOG_SAMPLE must be a fraction from 0 "
                                                 "to 1, got 'most'"):
        Settings.load(home=tmp_path)
