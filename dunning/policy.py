"""Dunning policies: data under config/policies/, validated on load.

A policy says when each stage starts (in days past due), which contacts each
stage makes (day offset, channel, template), which segments change that, and
when the loan is written off. Loading one that is wrong raises PolicyError
naming the file and the key, so a typo never reaches a running loan.
"""

from __future__ import annotations

import re
import tomllib
from datetime import time
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dunning.contract import STAGES

Channel = Literal["sms", "email", "voice", "push"]
TEMPLATE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
POLICY_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


class PolicyError(ValueError):
    """A policy that cannot be used, with the key that is wrong."""


class _Strict(BaseModel):
    # A misspelled key is an error, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid", frozen=True)


class ContactStep(_Strict):
    day: Annotated[int, Field(ge=0, le=3650)] = Field(description="days after the stage starts")
    channel: Channel
    template: str
    every_days: Annotated[int, Field(ge=0, le=365)] = Field(
        default=0, description="repeat every N days until the stage ends; 0 sends once"
    )
    at: time | None = Field(default=None, description="local time; the policy's contact_time if unset")

    @field_validator("template")
    @classmethod
    def _template_name(cls, value: str) -> str:
        if not TEMPLATE_NAME.match(value):
            raise ValueError("must be a lowercase template name like 'reminder_friendly'")
        return value


class Stage(_Strict):
    start_day: Annotated[int, Field(ge=0, le=3650)]
    steps: tuple[ContactStep, ...] = ()


class Segment(_Strict):
    """Loans matching every bound given here skip the listed channels."""

    name: str
    min_days: int | None = None
    max_days: int | None = None
    min_outstanding: Decimal | None = None
    max_outstanding: Decimal | None = None
    skip_channels: tuple[Channel, ...] = ()

    def matches(self, days_past_due: int, outstanding: Decimal) -> bool:
        return (
            (self.min_days is None or days_past_due >= self.min_days)
            and (self.max_days is None or days_past_due <= self.max_days)
            and (self.min_outstanding is None or outstanding >= self.min_outstanding)
            and (self.max_outstanding is None or outstanding <= self.max_outstanding)
        )


class Stages(_Strict):
    reminder: Stage
    call: Stage
    negotiation: Stage
    credit_reporting: Stage
    legal: Stage


class Policy(_Strict):
    name: str
    description: str = ""
    # The compliance profile (config/profiles/<name>.toml): the market's rules.
    profile: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$")] = "cn"
    default_time_zone: str = "Asia/Shanghai"
    default_language: str = "zh_CN"
    contact_time: time = time(9, 0)
    # Seconds in one loan day. 86400 in production; the demo policy shortens it
    # so that a person sees a loan move through every stage in minutes.
    day_seconds: Annotated[float, Field(gt=0, le=86400)] = 86400
    write_off_day: Annotated[int, Field(ge=1, le=3650)]
    stages: Stages
    segments: tuple[Segment, ...] = ()

    @field_validator("default_time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _stage_days_increase(self) -> Policy:
        previous = None
        for name in STAGES:
            stage = getattr(self.stages, name)
            if previous is not None and stage.start_day <= previous[1]:
                raise ValueError(
                    f"stages.{name}.start_day ({stage.start_day}) must be after "
                    f"stages.{previous[0]}.start_day ({previous[1]})"
                )
            previous = (name, stage.start_day)
        if self.write_off_day <= self.stages.legal.start_day:
            raise ValueError(
                f"write_off_day ({self.write_off_day}) must be after stages.legal.start_day "
                f"({self.stages.legal.start_day})"
            )
        return self

    def stage(self, name: str) -> Stage:
        return getattr(self.stages, name)

    def stage_end_day(self, name: str) -> int:
        """The first day that no longer belongs to the stage."""
        index = STAGES.index(name)
        if index + 1 < len(STAGES):
            return self.stage(STAGES[index + 1]).start_day
        return self.write_off_day

    def stage_for_day(self, days_past_due: int) -> str | None:
        """The stage a loan is in on a day, or None before the first stage."""
        current = None
        for name in STAGES:
            if days_past_due >= self.stage(name).start_day:
                current = name
        return current

    def segment_for(self, days_past_due: int, outstanding: Decimal) -> Segment | None:
        return next((s for s in self.segments if s.matches(days_past_due, outstanding)), None)


def describe_validation_error(error: ValidationError) -> str:
    """'stages.call.start_day: Input should be ...; ...' - one line per bad key."""
    parts = []
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"]) or "(top level)"
        parts.append(f"{key}: {item['msg']}")
    return "; ".join(parts)


def parse_policy(data: dict, source: str = "policy") -> Policy:
    try:
        return Policy.model_validate(data)
    except ValidationError as error:
        raise PolicyError(f"{source}: {describe_validation_error(error)}") from None


def named_config_file(kind: str, name: str, directory: Path, error: type[ValueError]) -> Path:
    """config/<kind>s/<name>.toml, or `error` saying which names there are."""
    if not isinstance(name, str) or not POLICY_NAME.match(name):
        raise error(f"{kind}: {name!r} is not a {kind} name (lowercase letters, digits, - and _)")
    path = directory / f"{name}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in directory.glob("*.toml"))
        raise error(f"{kind}: no {kind} named {name!r} under {directory} (known: {', '.join(known)})")
    return path


def load_policy(name: str, policies_dir: Path) -> Policy:
    path = named_config_file("policy", name, policies_dir, PolicyError)
    data = _read_with_base(path, policies_dir, seen=())
    policy = parse_policy(data, str(path))
    if policy.name != name:
        raise PolicyError(f"{path}: name: {policy.name!r} does not match the file name {name!r}")
    return policy


def _read_with_base(path: Path, policies_dir: Path, seen: tuple[str, ...]) -> dict:
    """A policy file, merged over the policy it `extends` (tables merge key by key)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise PolicyError(f"{path}: not valid TOML: {error}") from None
    base_name = data.pop("extends", None)
    if base_name is None:
        return data
    base_path = policies_dir / f"{base_name}.toml"
    if not isinstance(base_name, str) or not POLICY_NAME.match(base_name) or not base_path.is_file():
        raise PolicyError(f"{path}: extends: no policy named {base_name!r} under {policies_dir}")
    if base_name in seen:
        raise PolicyError(f"{path}: extends: {base_name!r} extends itself through {' -> '.join(seen)}")
    return _merge(_read_with_base(base_path, policies_dir, (*seen, path.stem)), data)


def _merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged
