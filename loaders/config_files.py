"""Policies and profiles read from config/<kind>s/<name>.toml.

A policy may `extends` another policy; its tables merge over the base key by
key. Every failure names the file and the key (PolicyError / ProfileError).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from dunning.compliance import Profile, ProfileError, parse_profile
from dunning.policy import POLICY_NAME, Policy, PolicyError, parse_policy


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


def load_profile(name: str, profiles_dir: Path) -> Profile:
    path = named_config_file("profile", name, profiles_dir, ProfileError)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ProfileError(f"{path}: not valid TOML: {error}") from None
    return parse_profile(data, str(path))


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
