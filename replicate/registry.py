"""One registry type for every by-name plugin table (advantages, losses, tasks, analyses, panels, runners,
rollout engines, benches): a dict that refuses a second entry under a taken name, so two plugins can never
silently shadow each other."""
from __future__ import annotations


class Registry(dict):
    """A name -> plugin mapping whose names can be taken once; `kind` names the plugins in errors."""

    def __init__(self, kind: str, *args, **kwargs):
        super().__init__()
        self.kind = kind
        self.update(*args, **kwargs)

    def __setitem__(self, name, value):
        if name in self:
            raise KeyError(f"{self.kind} {name!r} is registered twice; every {self.kind} needs its own name")
        super().__setitem__(name, value)

    def update(self, *args, **kwargs):
        for name, value in dict(*args, **kwargs).items():
            self[name] = value

    def setdefault(self, name, value=None):
        raise TypeError(f"{self.kind} registry: register each name once with [name] = value")

    def register(self, name: str):
        """Decorator: `@REGISTRY.register("name")` adds the decorated object under `name`."""
        def deco(obj):
            self[name] = obj
            return obj
        return deco


class LazyRegistry(Registry):
    """A registry of `"module:attr"` targets, imported on first use: registering a plugin costs one line and no
    import, and no registration hides at the bottom of another module."""

    def __init__(self, kind: str, *args, **kwargs):
        self._loaded: dict = {}
        super().__init__(kind, *args, **kwargs)

    def __getitem__(self, name):
        if name not in self._loaded:
            target = super().__getitem__(name)
            if not isinstance(target, str):  # registered as the object itself
                return target
            import importlib
            module, _, attr = target.partition(":")
            self._loaded[name] = getattr(importlib.import_module(module), attr)
        return self._loaded[name]

    def target(self, name) -> str:
        return super().__getitem__(name)

    def values(self):
        return [self[name] for name in self]

    def items(self):
        return [(name, self[name]) for name in self]

    def get(self, name, default=None):
        return self[name] if name in self else default
