"""Typed errors of the codecs: every rejection of wire bytes or a schema file carries a short `reason` label."""

from __future__ import annotations


class CodecError(ValueError):
    """Bad input to a codec. `reason` is a short snake_case label (used as a counter label); the message explains it."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class FrameError(CodecError):
    """A LoRaWAN PHYPayload that is malformed, or whose MIC does not verify."""


class DatagramError(CodecError):
    """A Semtech UDP (GWMP) datagram, or its JSON, that is malformed."""


class PayloadError(CodecError):
    """An application payload that does not decode (or encode) under its schema."""


class SchemaError(CodecError):
    """A payload schema file that is broken."""
