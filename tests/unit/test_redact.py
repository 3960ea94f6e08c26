import logging

import pytest

from gateway.redact import MASK, RedactingFilter, Redactor


def test_secrets_are_masked_longest_first() -> None:
    redact = Redactor(["abcd", "abcdef-long", "xy"])  # too-short values would mask everything
    assert redact("token=abcdef-long and abcd, xy") == f"token={MASK} and {MASK}, xy"
    assert Redactor([])("unchanged") == "unchanged"


def test_log_records_are_masked_with_their_arguments_and_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("test.redact")
    logger.addFilter(RedactingFilter(Redactor(["hunter2-secret"])))
    try:
        with caplog.at_level(logging.INFO, logger="test.redact"):
            logger.info("pushing with %s", "hunter2-secret")
            try:
                raise RuntimeError("auth hunter2-secret refused")
            except RuntimeError:
                logger.exception("failed")
    finally:
        logger.filters.clear()
    assert "hunter2-secret" not in caplog.text
    assert caplog.text.count(MASK) >= 2
