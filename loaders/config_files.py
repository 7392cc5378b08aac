"""Policies and profiles read from config/<kind>s/<name>.toml.

A policy may `extends` another policy; its tables merge over the base key by
key. Every failure names the file and the key (PolicyError / ProfileError).
"""

from __future__ import annotations

import hashlib
import threading
import tomllib
from collections.abc import Callable
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


# Policies and profiles read, by kind, directory and name: the files each
# was read from, with the SHA-256 of what they held then, and the parsed
# model. Every loan's preparation reads its policy and profile; parsing and
# validating the TOML again each time was a tenth of a start's CPU, reading
# and hashing the files costs a few microseconds. The models are frozen, so
# one copy serves every caller; a file whose bytes changed is parsed afresh
# (by content, not by modification time, which a quick rewrite can leave
# unchanged), and a file that fails is never kept.
_Signature = tuple[str, str]
_LOADED: dict[tuple[str, str, str], tuple[tuple[_Signature, ...], object]] = {}
_LOADED_LOCK = threading.Lock()


def _signature(path: Path) -> _Signature:
    return str(path), hashlib.sha256(path.read_bytes()).hexdigest()


def _read_text(path: Path, files: list[_Signature] | None) -> str:
    """The file's text, its signature noted from the very bytes read."""
    raw = path.read_bytes()
    if files is not None:
        files.append((str(path), hashlib.sha256(raw).hexdigest()))
    return raw.decode("utf-8").replace("\r\n", "\n")


def _unchanged(files: tuple[_Signature, ...]) -> bool:
    try:
        return all(_signature(Path(path)) == (path, digest) for path, digest in files)
    except OSError:
        return False


def _kept(kind: str, directory: Path, name: str, read: Callable[[list[_Signature]], object]):
    """`read(files)` once per version of the files it reads (it appends their signatures before reading each)."""
    key = (kind, str(directory), name)
    with _LOADED_LOCK:
        kept = _LOADED.get(key)
    if kept is not None and _unchanged(kept[0]):
        return kept[1]
    files: list[_Signature] = []
    value = read(files)
    with _LOADED_LOCK:
        _LOADED[key] = (tuple(files), value)
    return value


def load_policy(name: str, policies_dir: Path) -> Policy:
    path = named_config_file("policy", name, policies_dir, PolicyError)

    def read(files: list[_Signature]) -> Policy:
        data = _read_with_base(path, policies_dir, seen=(), files=files)
        policy = parse_policy(data, str(path))
        if policy.name != name:
            raise PolicyError(f"{path}: name: {policy.name!r} does not match the file name {name!r}")
        return policy

    return _kept("policy", policies_dir, name, read)


def load_profile(name: str, profiles_dir: Path) -> Profile:
    path = named_config_file("profile", name, profiles_dir, ProfileError)

    def read(files: list[_Signature]) -> Profile:
        try:
            data = tomllib.loads(_read_text(path, files))
        except tomllib.TOMLDecodeError as error:
            raise ProfileError(f"{path}: not valid TOML: {error}") from None
        return parse_profile(data, str(path))

    return _kept("profile", profiles_dir, name, read)


def _read_with_base(path: Path, policies_dir: Path, seen: tuple[str, ...], files: list[_Signature] | None = None) -> dict:
    """A policy file, merged over the policy it `extends` (tables merge key by key)."""
    try:
        data = tomllib.loads(_read_text(path, files))
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
    return _merge(_read_with_base(base_path, policies_dir, (*seen, path.stem), files), data)


def _merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged
