"""Loading the pickles that foreign checkpoints come with, without running code from them.

Unpickling calls whatever functions and classes the file names, so every name is looked up in
an allow-list here, and the classes of the authors' code (their model modules, ``Corpus``,
``Vocab``) are replaced by inert :class:`Record` stand-ins: an attribute bag that takes the
pickled state and does nothing else. Anything not on the list is refused with its name.

* :func:`load_plain_pickle`: an ordinary pickle (the authors' TF corpus cache ``cache.pkl``,
  written by Python 2, so its ``str`` values arrive as ``bytes``).
* :func:`load_torch_pickle`: a ``torch.save`` file (zip or legacy format), through
  ``torch.load(weights_only=True)`` with the stand-ins registered under the authors' names.
* :func:`load_torchscript_data`: the object tree of a ``torch.jit.save`` archive (its
  ``data.pkl``), every ``__torch__`` class an inert stand-in: the program (``code/``) never runs.
"""

from __future__ import annotations

import codecs
import io
import os
import pickle
import struct
import zipfile
from collections import Counter, OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # first object of a legacy torch.save file


class Record:
    """Stand-in for an allowed class of the authors' code: keeps the pickled attributes."""

    _source_name = "Record"

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # called by REDUCE/NEWOBJ: inert
        pass

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:
            state, slots = state
            state = {**(state or {}), **(slots or {})}
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(
                f"{self._source_name}: expected a dict of attributes, got {type(state).__name__}"
            )
        self.__dict__.update({_text(k): v for k, v in state.items()})

    def __repr__(self) -> str:
        return f"<{self._source_name}: {', '.join(sorted(self.__dict__))}>"


class Inert:
    """Stand-in for objects whose content is not needed (NumPy arrays of a corpus cache)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


def _inert(*args: Any, **kwargs: Any) -> Inert:
    return Inert()


def record_class(qualified: str) -> type[Record]:
    """A :class:`Record` subclass standing for the class ``module.Name``."""
    module, _, name = qualified.rpartition(".")
    return type(name, (Record,), {"__module__": module, "_source_name": qualified})


def _text(v: Any) -> Any:
    """Python 2 ``str`` values arrive as bytes: decode them (UTF-8, else Latin-1)."""
    if isinstance(v, bytes):
        try:
            return v.decode("utf-8")
        except UnicodeDecodeError:
            return v.decode("latin-1")
    return v


def _encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode``, as Python 3 pickles ``bytes`` in protocol 2; text codecs only."""
    if codecs.lookup(encoding).name not in ("latin-1", "iso8859-1", "utf-8", "ascii"):
        raise pickle.UnpicklingError(f"_codecs.encode with codec {encoding!r} is not allowed")
    return codecs.encode(text, encoding)


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """``copy_reg._reconstructor`` (protocol 0/1 objects), for the allowed stand-ins only."""
    if not (isinstance(cls, type) and issubclass(cls, (Record, Inert))) or base is not object:
        raise pickle.UnpicklingError(f"copy_reg._reconstructor of {cls!r} is not allowed")
    return cls()


PLAIN_GLOBALS: dict[str, Any] = {
    "collections.OrderedDict": OrderedDict,
    "collections.Counter": Counter,
    "builtins.set": set,
    "builtins.frozenset": frozenset,
    "__builtin__.set": set,
    "__builtin__.frozenset": frozenset,
    "_codecs.encode": _encode,
    "copy_reg._reconstructor": _reconstructor,
    "copyreg._reconstructor": _reconstructor,
    "builtins.object": object,
    "__builtin__.object": object,
    # a corpus cache holds its token streams as NumPy arrays; they are not needed
    "numpy.core.multiarray._reconstruct": _inert,
    "numpy._core.multiarray._reconstruct": _inert,
    "numpy.ndarray": Inert,
    "numpy.dtype": Inert,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, allowed: dict[str, Any], source: str, persistent=None) -> None:
        super().__init__(file, encoding="bytes")
        self.allowed = allowed
        self.source = source
        self.persistent = persistent

    def find_class(self, module: str, name: str) -> Any:
        key = f"{module}.{name}"
        if key in self.allowed:
            return self.allowed[key]
        raise DisallowedGlobal(self.source, key, self.allowed)

    def persistent_load(self, pid: Any) -> Any:
        if self.persistent is None:
            raise pickle.UnpicklingError(f"{self.source}: persistent ids are not allowed here")
        return self.persistent(pid)


class DisallowedGlobal(ValueError, pickle.UnpicklingError):
    def __init__(self, source: str, name: str, allowed: Iterable[str]) -> None:
        kinds = sorted({a.rpartition(".")[0] for a in allowed})
        super().__init__(
            f"{source}: refusing to load: the pickle references {name!r}, not on the "
            f"allow-list (plain containers, tensors and the known classes of modules "
            f"{', '.join(kinds)}); loading it could run arbitrary code"
        )


def load_plain_pickle(path: str | os.PathLike, classes: Iterable[str] = ()) -> Any:
    """Unpickle ``path`` allowing plain containers, strings, numbers and :class:`Record`
    stand-ins for ``classes`` (qualified names)."""
    allowed = {**PLAIN_GLOBALS, **{c: record_class(c) for c in classes}}
    try:
        with open(path, "rb") as f:
            return _RestrictedUnpickler(f, allowed, str(path)).load()
    except DisallowedGlobal:
        raise
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror})") from None
    except Exception as e:  # noqa: BLE001 - any failure to parse is a bad file
        raise ValueError(f"{path}: not a readable pickle ({type(e).__name__}: {e})") from None


def is_torch_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a ``torch.save`` file (zip, or legacy: starts with the magic)."""
    if zipfile.is_zipfile(path):
        return True
    with open(path, "rb") as f:
        head = f.read(64)
    try:  # the magic number is a plain int: no global is allowed while looking for it
        return _RestrictedUnpickler(io.BytesIO(head), {}, str(path)).load() == TORCH_LEGACY_MAGIC
    except Exception:  # noqa: BLE001 - a plain pickle's first object may not fit in 64 bytes
        return False


def load_torch_pickle(
    path: str | os.PathLike, classes: Iterable[str] = (), functions: dict[str, Any] | None = None
) -> Any:
    """A ``torch.save`` file with :class:`Record` stand-ins for ``classes`` and inert
    ``functions`` (qualified name -> callable): zip files through
    ``torch.load(weights_only=True)``, legacy files (PyTorch < 1.6, as the authors' code wrote
    them) through :func:`load_torch_legacy`."""
    path = Path(path)
    try:
        if not zipfile.is_zipfile(path):
            return load_torch_legacy(path, classes, functions)
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror})") from None
    extra: list[Any] = [(record_class(c), c) for c in classes]
    extra += [(f, name) for name, f in (functions or {}).items()]
    allowed = [n for _, n in extra] + ["torch._utils.x", "collections.x"]
    try:
        with torch.serialization.safe_globals(extra):
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
            if unsafe:  # named before anything is unpickled
                raise DisallowedGlobal(str(path), ", ".join(unsafe), allowed)
            return torch.load(path, map_location="cpu", weights_only=True)
    except DisallowedGlobal:
        raise
    except pickle.UnpicklingError as e:  # refused by torch's own weights_only unpickler
        lines = [line for line in str(e).splitlines() if line.strip()]
        raise ValueError(f"{path}: refusing to load ({' '.join(lines[1:2] or lines)})") from None
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror or e})") from None
    except RuntimeError as e:
        raise ValueError(f"{path}: not a readable torch file ({str(e).splitlines()[0]})") from None


_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class _StorageType:
    """What ``torch.FloatStorage`` and friends stand for in a pickle: a dtype."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


TORCH_GLOBALS: dict[str, Any] = {
    "torch._utils._rebuild_tensor": torch._utils._rebuild_tensor,
    "torch._utils._rebuild_tensor_v2": torch._utils._rebuild_tensor_v2,
    "torch._utils._rebuild_parameter": torch._utils._rebuild_parameter,
    "torch.nn.parameter.Parameter": torch.nn.Parameter,
    "torch.Size": torch.Size,
    **{f"torch.{name}": _StorageType(dtype) for name, dtype in _STORAGE_DTYPES.items()},
}


def load_torch_legacy(
    path: str | os.PathLike, classes: Iterable[str] = (), functions: dict[str, Any] | None = None
) -> Any:
    """A legacy ``torch.save`` file: pickles of the magic number, the protocol version and the
    system info, the main pickle (its persistent ids name storages, and for whole modules
    their classes), the list of storage keys, then each storage as an int64 element count and
    the raw little-endian bytes. Read with the same allow-list as :func:`load_plain_pickle`
    plus the tensor rebuild functions."""
    allowed = {**PLAIN_GLOBALS, **TORCH_GLOBALS, **{c: record_class(c) for c in classes}}
    allowed.update(functions or {})
    source = str(path)
    storages: dict[str, torch.storage.TypedStorage] = {}

    def persistent_load(pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid:
            raise pickle.UnpicklingError(f"{source}: unexpected persistent id {pid!r}")
        kind = _text(pid[0])
        if kind == "module":  # (class, source file, source): the class is all that is needed
            return pid[1]
        if kind != "storage" or not isinstance(pid[1], _StorageType):
            raise pickle.UnpicklingError(f"{source}: unexpected persistent id {kind!r}")
        _, storage_type, key, _location, numel, view = pid
        key = _text(key)
        if key not in storages:
            untyped = torch.UntypedStorage(numel * torch._utils._element_size(storage_type.dtype))
            storages[key] = torch.storage.TypedStorage(
                wrap_storage=untyped, dtype=storage_type.dtype, _internal=True
            )
        if view is not None:
            raise pickle.UnpicklingError(f"{source}: storage views are not supported")
        return storages[key]

    try:
        with open(path, "rb") as f:
            try:
                header = [_RestrictedUnpickler(f, PLAIN_GLOBALS, source).load() for _ in range(3)]
            except DisallowedGlobal:
                raise
            except Exception as e:  # noqa: BLE001 - random bytes parse as any opcode at all
                raise _unreadable(source, e) from None
            if header[0] != TORCH_LEGACY_MAGIC:
                raise ValueError(f"{source}: not a torch.save file (no zip, no magic number)")
            info = header[2] if isinstance(header[2], dict) else {}
            info = {_text(k): v for k, v in info.items()}
            if not info.get("little_endian"):
                raise ValueError(f"{source}: written on a big-endian machine; not supported")
            result = _RestrictedUnpickler(f, allowed, source, persistent_load).load()
            keys = _RestrictedUnpickler(f, PLAIN_GLOBALS, source).load()
            for key in keys:
                typed = storages[_text(key)]
                (count,) = struct.unpack("<q", f.read(8))
                size = count * torch._utils._element_size(typed.dtype)
                data = f.read(size)
                if size != typed._untyped_storage.nbytes() or len(data) != size:
                    raise ValueError(f"{source}: storage {_text(key)} is truncated or mis-sized")
                raw = torch.UntypedStorage.from_buffer(data, dtype=torch.uint8)
                typed._untyped_storage.copy_(raw)
    except (DisallowedGlobal, ValueError):
        raise
    except OSError as e:
        raise ValueError(f"{source}: cannot read ({e.strerror})") from None
    except Exception as e:  # noqa: BLE001 - any failure to parse is a bad file
        raise _unreadable(source, e) from None
    return result


def _unreadable(source: str, e: Exception) -> ValueError:
    """The error for a file that does not parse; the parser's words quoted, short, on one line
    (they may hold the file's raw bytes)."""
    return ValueError(f"{source}: not a readable torch file ({type(e).__name__}: {str(e)[:60]!r})")


def _restore_type_tag(value: Any, _type_name: Any) -> Any:
    """``torch.jit._pickle.restore_type_tag``: the value; the TorchScript type is not needed."""
    return value


SCRIPT_GLOBALS: dict[str, Any] = {
    **{f"torch.jit._pickle.build_{k}list": list for k in ("tensor", "int", "double", "bool")},
    "torch.jit._pickle.restore_type_tag": _restore_type_tag,
}


class _ScriptUnpickler(_RestrictedUnpickler):
    """:class:`Record` stand-ins for every TorchScript class (``__torch__.*``) of the archive."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "__torch__" or module.startswith("__torch__."):
            key = f"{module}.{name}"
            if key not in self.allowed:
                self.allowed[key] = record_class(key)
            return self.allowed[key]
        return super().find_class(module, name)


def load_torchscript_data(path: str | os.PathLike) -> Any:
    """The object tree of a TorchScript archive: modules as :class:`Record` stand-ins with their
    attributes (parameters, buffers, lists and settings as TorchScript kept them), tensors read
    from the archive's ``data/`` records."""
    source = str(path)
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            pkl = next((n for n in names if n.count("/") == 1 and n.endswith("/data.pkl")), None)
            if pkl is None:
                raise ValueError(f"{source}: no data.pkl: not a TorchScript archive")
            root = pkl.split("/", 1)[0]

            def persistent_load(pid: Any) -> Any:
                if not isinstance(pid, tuple) or len(pid) != 5 or _text(pid[0]) != "storage":
                    raise pickle.UnpicklingError(f"{source}: unexpected persistent id {pid!r}")
                _, storage_type, key, _location, _numel = pid
                if not isinstance(storage_type, _StorageType):
                    raise pickle.UnpicklingError(f"{source}: storage of {storage_type!r}")
                data = z.read(f"{root}/data/{_text(key)}")
                raw = torch.UntypedStorage.from_buffer(data, dtype=torch.uint8) if data else None
                return torch.storage.TypedStorage(
                    wrap_storage=raw if raw is not None else torch.UntypedStorage(0),
                    dtype=storage_type.dtype, _internal=True,
                )  # fmt: skip

            allowed = {**PLAIN_GLOBALS, **TORCH_GLOBALS, **SCRIPT_GLOBALS}
            with z.open(pkl) as f:
                return _ScriptUnpickler(f, allowed, source, persistent_load).load()
    except (DisallowedGlobal, ValueError):
        raise
    except (OSError, KeyError, zipfile.BadZipFile) as e:
        raise ValueError(f"{source}: cannot read the archive ({e})") from None
    except Exception as e:  # noqa: BLE001 - any failure to parse is a bad file
        raise _unreadable(source, e) from None
