"""Test-only stand-in for torchvision, so that timm imports beside a CPU torch.

timm imports torchvision at import time only for its data utilities
(`torchvision.transforms`, `.transforms.functional.InterpolationMode`,
`.ops.misc.FrozenBatchNorm2d`, `.datasets`, `.models.feature_extraction`).
The real package from PyPI does not load beside the local CPU build of torch, and
the weight-converter tests never touch those utilities. Here every attribute of
`torchvision` and of any `torchvision.<sub>.<module>` resolves to a placeholder:

* a submodule (any `import torchvision.a.b` works, via a meta-path finder);
* a placeholder class otherwise: usable in `isinstance` checks and as a dict key,
  its attributes are placeholder classes again (so `InterpolationMode.BILINEAR`
  is a distinct, hashable value), and creating an instance raises a clear error.

Put the directory holding this package on `sys.path` before importing timm.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types

__version__ = "0.0.0+stub"
_STUB = True


class _PlaceholderMeta(type):
    """Class attributes that do not exist become (cached) placeholder classes."""

    def __getattr__(cls, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        child = _placeholder(f"{cls.__qualname__}.{name}", cls.__module__)
        setattr(cls, name, child)
        return child


class _Placeholder(metaclass=_PlaceholderMeta):
    def __new__(cls, *args, **kwargs):
        raise RuntimeError(
            f"{cls.__module__}.{cls.__qualname__} is a placeholder of the test-only "
            "torchvision stub (tests/stubs/torchvision); the real torchvision is not installed"
        )


def _placeholder(qualname: str, module: str) -> type:
    cls = _PlaceholderMeta(qualname.rsplit(".", 1)[-1], (_Placeholder,), {"__module__": module})
    cls.__qualname__ = qualname
    return cls


def _module_getattr(module_name: str):
    def __getattr__(name: str):
        if name.startswith("__"):
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        full = f"{module_name}.{name}"
        # Lower-case names that are not classes by convention are served as submodules
        # (`from torchvision import transforms`); CamelCase and functions as placeholders.
        if name[:1].islower() and full not in _FUNCTIONS:
            import importlib

            return importlib.import_module(full)
        value = _placeholder(name, module_name)
        setattr(sys.modules[module_name], name, value)
        return value

    return __getattr__


# Lower-case attributes that timm imports as objects rather than as submodules.
_FUNCTIONS = {
    "torchvision.models.feature_extraction.create_feature_extractor",
    "torchvision.models.feature_extraction.get_graph_node_names",
    "torchvision.utils.save_image",
}


class _StubLoader(importlib.abc.Loader):
    def create_module(self, spec):
        module = types.ModuleType(spec.name)
        module.__path__ = []  # every stub module is a package: submodules import too
        module.__getattr__ = _module_getattr(spec.name)
        return module

    def exec_module(self, module):
        pass


class _StubFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith(__name__ + "."):
            return importlib.machinery.ModuleSpec(fullname, _StubLoader(), is_package=True)
        return None


if not any(isinstance(f, _StubFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _StubFinder())

__getattr__ = _module_getattr(__name__)
