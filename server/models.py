"""Request and response models of the device and admin API (what the OpenAPI document shows)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"
GROUP_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"


class EnrollRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    secret: str = Field(min_length=1, max_length=200, pattern=NO_CONTROL)
    hostname: str | None = Field(default=None, max_length=255, pattern=NO_CONTROL)
    os: str | None = Field(default=None, max_length=32, pattern=NO_CONTROL)


class EnrollResponse(BaseModel):
    device_id: str
    token: str
    group: str


class CheckinRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    state: Literal["online", "away", "non_compliant"] | None = None
    stage: str | None = Field(default=None, max_length=32, pattern=NO_CONTROL)
    failing: list[Annotated[str, Field(max_length=64, pattern=NO_CONTROL)]] | None = Field(
        default=None, max_length=64
    )
    policy_id: str | None = Field(default=None, max_length=64, pattern=NO_CONTROL)
    policy_version: int | None = Field(default=None, ge=0, le=2**62)
    uptime_s: float | None = Field(default=None, ge=0, le=1e12, allow_inf_nan=False)
    agent_version: str | None = Field(default=None, max_length=32, pattern=NO_CONTROL)
    hostname: str | None = Field(default=None, max_length=255, pattern=NO_CONTROL)
    heartbeat_s: float | None = Field(default=None, gt=0, le=7 * 86400, allow_inf_nan=False)
    last_sequence: int | None = Field(default=None, ge=0, le=2**62)
    stopping: bool = False
    quit_allowed: bool | None = (
        None  # with stopping: whether the policy in force lets the worker quit (alerts)
    )
    os: str | None = Field(default=None, max_length=32, pattern=NO_CONTROL)


class CheckinResponse(BaseModel):
    status: str
    heartbeat_s: float | None = None


class RejectedEvent(BaseModel):
    index: int
    uid: str | None = None
    reason: str


class IngestResponse(BaseModel):
    accepted: int
    duplicate: int
    rejected: list[RejectedEvent]


class PolicyPublished(BaseModel):
    group: str
    policy_id: str
    version: int
    etag: str
