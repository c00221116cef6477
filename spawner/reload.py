"""A reload applies the config file as it is: what it sets, set; what it no longer names, back to its default.

traitlets' ``update_config`` only sets what a config names, so a setting
deleted from the file used to stay in force after SIGHUP (remove
``c.WebApp.cors_origin = ["*"]`` and every origin was still trusted). The
service's parts and each workshop's pool are reloaded through ``apply``, the
one place that decides what a reload does to a part's settings.
"""

from __future__ import annotations

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
