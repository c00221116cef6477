"""A reload applies the config file as it is: what it sets, set; what it no longer names, back to its default.

traitlets' ``update_config`` only sets what a config names, so a setting
deleted from the file used to stay in force after SIGHUP (remove
``c.WebApp.cors_origin = ["*"]`` and every origin was still trusted). The
service's parts and each workshop's pool are reloaded through ``apply``, the
one place that decides what a reload does to a part's settings.
"""

from __future__ import annotations

from collections.abc import Callable

from traitlets import TraitError
from traitlets.config import Config, Configurable


def apply(obj: Configurable, config: Config) -> dict[str, object]:
    """Give ``obj`` the settings ``config`` holds for it, and its defaults for those it does not name.

    Returns {name: new value} for every setting that changed. Settings the
    config names are applied by traitlets itself (lazy values such as
    ``c.X.list.append(…)`` included); the others are set to their default
    (a dynamic ``@default`` runs again), each checked by its validator. A bad
    value raises TraitError (the caller checks a file before applying it).
    """
    before = {name: getattr(obj, name) for name in obj.trait_names(config=True)}
    named = obj._find_my_config(config)  # what the config says for obj: its class, its bases, its parent's section
    for name in before:
        if name not in named:
            default = obj.trait_defaults(name)
            if default != before[name]:
                setattr(obj, name, default)
    obj.update_config(config)
    return {name: getattr(obj, name) for name, old in before.items() if getattr(obj, name) != old}


# Settings read at start only (a listening socket, names the engine already holds): a reload keeps their values
# and says so. By class name, so that this module needs none of those classes; a subclass has its bases' too.
FIXED = {"Proxy": ("ip", "port", "certfile", "keyfile"), "Pool": ("pool_name",),
         "DockerBackend": ("network_name",), "SwarmBackend": ("docker_host",)}


def fixed_of(obj: Configurable) -> tuple[str, ...]:
    """The settings of ``obj`` a reload never changes."""
    return tuple(dict.fromkeys(name for cls in type(obj).__mro__ for name in FIXED.get(cls.__name__, ())))


def check(config: Config, *makers: Callable[[Config], object]) -> None:
    """Make a throwaway part from ``config`` with each maker: the first bad value raises ValueError naming its
    setting, and nothing that runs is touched. The one check before a reload applies anything."""
    try:
        for make in makers:
            make(config)
    except TraitError as exc:
        raise ValueError(str(exc)) from None


def apply_checked(obj: Configurable, config: Config, log, label: str = "") -> dict[str, object]:
    """``apply``, for a part that runs: the settings fixed at start keep their values (each one the file
    changed is logged as waiting for a restart), and what changed is logged as "applied <label>: k=v, ..."
    (``label``: the class's name by default; values of settings named like tokens are not shown).
    Returns {name: new value} of what changed."""
    label = label or type(obj).__name__
    fixed = {name: getattr(obj, name) for name in fixed_of(obj)}
    changed = apply(obj, config)
    for name, value in fixed.items():
        if name in changed:
            setattr(obj, name, value)
            del changed[name]
            log.warning("%s.%s changed in the config file: takes effect at the next start", type(obj).__name__, name)
    if changed:
        log.info("applied %s: %s", label, ", ".join(f"{k}={'…' if 'token' in k else v!r}" for k, v in changed.items()))
    return changed
