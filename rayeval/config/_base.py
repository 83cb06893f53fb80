"""What every config section shares: the frozen, extra-forbidding base model, the scalar type
of class values and filters, and UTC normalisation of datetimes."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Union

from pydantic import BaseModel, ConfigDict


Scalar = Union[int, str, bool]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def utc(dt: datetime) -> datetime:
    """Naive datetimes are taken as UTC; aware ones are converted to UTC."""
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)
