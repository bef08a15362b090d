"""Objects <-> JSON configs, resolved against fixed registries (nothing executable).

A config is either a plain string naming a registered object ("glorot_uniform", "adam")
or ``{"class_name": "Adam", "config": {...}}``.  Only names present in the registry passed
in are ever instantiated, so a saved model cannot make fastconv import or call anything
else.
"""

__all__ = ["serialize", "deserialize", "resolve", "ConfigEquality"]


def serialize(obj):
    """``{"class_name": ..., "config": ...}`` of an object with get_config."""
    return {"class_name": type(obj).__name__, "config": obj.get_config()}


def deserialize(config, registry, what):
    """Instantiate ``config`` (see module docstring) from ``registry`` (name -> class).

    ``what`` names the kind of object in error messages ("layer", "optimizer", ...).
    """
    if not isinstance(config, dict) or set(config) - {"class_name", "config"} \
            or "class_name" not in config:
        article = "an" if what[:1] in "aeiou" else "a"
        raise ValueError(f"{article} {what} config must be a dict with 'class_name' "
                         f"and 'config', got {str(config)[:200]}")
    name = config["class_name"]
    cls = registry.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"unknown {what} class {name!r:.100}; known: "
                         f"{', '.join(sorted(registry))}")
    kwargs = config.get("config", {})
    if not isinstance(kwargs, dict):
        raise ValueError(f"the config of {what} {name!r} must be a dict, got "
                         f"{kwargs!r:.200}")
    return cls.from_config(kwargs)


def resolve(identifier, base, registry, aliases, what, allow_none=False):
    """The object an argument names (Keras's ``get``): an instance of ``base`` as it is,
    a name from ``aliases`` or ``registry`` (each a zero-argument factory), or a config
    dict (deserialize); None when ``allow_none``.  ``what`` names the argument in
    errors."""
    if (identifier is None and allow_none) or isinstance(identifier, base):
        return identifier
    if isinstance(identifier, str):
        make = aliases.get(identifier) or registry.get(identifier)
        if make is None:
            raise ValueError(f"unknown {what} {identifier!r}; known: "
                             f"{', '.join(sorted(set(aliases) | set(registry)))}")
        return make()
    if isinstance(identifier, dict):
        return deserialize(identifier, registry, what)
    kinds = "None, a name" if allow_none else "a name"
    raise TypeError(f"{what} must be {kinds}, a config dict or a "
                    f"{base.__module__}.{base.__name__}, got {identifier!r:.200}")


class ConfigEquality:
    """from_config, equality (and a hash) by class and get_config, and a repr of the
    config: for the small configured objects of the registries (regularizers,
    constraints)."""

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash((type(self).__name__, repr(sorted(self.get_config().items()))))

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"
