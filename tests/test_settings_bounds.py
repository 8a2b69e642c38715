"""Number settings are finite and bounded: ``nan``, ``inf``, ``OMNIZOO_RETRIES=1e9`` (which
once spent seconds computing ``2**1e9``) and negative or huge back-offs are configuration
errors naming the variable, the value and the allowed range."""

from __future__ import annotations

import pytest

from omnizoo import errors, settings


@pytest.mark.parametrize(
    ("var", "value", "allowed"),
    [
        ("OMNIZOO_READ_TIMEOUT", "nan", "a finite number from 0.001 to 3600"),
        ("OMNIZOO_READ_TIMEOUT", "inf", "a finite number from 0.001 to 3600"),
        ("OMNIZOO_READ_TIMEOUT", "-1", "a finite number from 0.001 to 3600"),
        ("OMNIZOO_CONNECT_TIMEOUT", "1e400", "a finite number from 0.001 to 3600"),
        ("OMNIZOO_CONNECT_TIMEOUT", "0", "a finite number from 0.001 to 3600"),
        ("OMNIZOO_RETRIES", "1e9", "an integer from 1 to 100"),
        ("OMNIZOO_RETRIES", "0", "an integer from 1 to 100"),
        ("OMNIZOO_RETRIES", "-inf", "an integer from 1 to 100"),
        ("OMNIZOO_BACKOFF", "-0.5", "a finite number from 0 to 300"),
        ("OMNIZOO_BACKOFF", "1e30", "a finite number from 0 to 300"),
        ("OMNIZOO_BACKOFF", "NaN", "a finite number from 0 to 300"),
        ("OMNIZOO_DOWNLOAD_TIMEOUT", "inf", "a finite number from 1 to 604800"),
        ("OMNIZOO_DOWNLOAD_TIMEOUT", "0", "a finite number from 1 to 604800"),
        ("OMNIZOO_DOWNLOAD_TIMEOUT", "soon", "a finite number from 1 to 604800"),
    ],
)
@pytest.mark.timeout(30)  # bounds a hang (a 2**1e9 on the way) only: no speed assertion
def test_out_of_range_numbers_are_configuration_errors(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, allowed: str
) -> None:
    monkeypatch.setenv(var, value)
    settings.reset()
    with pytest.raises(errors.ConfigurationError) as info:
        settings.get_settings()
    message = str(info.value)
    assert message.startswith(f"{var}={value!r} ")
    assert f"allowed: {allowed}" in message


@pytest.mark.timeout(30)  # bounds a hang only
def test_in_range_numbers_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMNIZOO_RETRIES", "100")
    monkeypatch.setenv("OMNIZOO_BACKOFF", "300")
    monkeypatch.setenv("OMNIZOO_READ_TIMEOUT", "3600")
    monkeypatch.setenv("OMNIZOO_DOWNLOAD_TIMEOUT", "90")
    settings.reset()
    s = settings.get_settings()
    assert (s.retries, s.backoff, s.read_timeout, s.download_timeout) == (100, 300.0, 3600.0, 90)
    # the waiters' stall rule stays computable and never exceeds the total deadline
    from omnizoo.weights.download_chain import stall_timeout

    assert stall_timeout(s) == 90.0


def test_download_timeout_has_a_default_and_is_documented() -> None:
    s = settings.get_settings()
    assert s.download_timeout == settings.DEFAULT_DOWNLOAD_TIMEOUT == 3 * 3600
    doc = settings.__doc__ or ""
    assert "OMNIZOO_DOWNLOAD_TIMEOUT" in doc and "10800" in doc
