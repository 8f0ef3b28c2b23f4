"""Open checkpoints and pickled arrays without ever running code from them.

A pickle can name any importable callable and have it called while loading (an object's
``__reduce__`` that returns ``(os.system, ('...',))``). Checkpoints and WTAL feature files
are downloaded by hand from cloud drives, so ecmlib never unpickles them with the stock
unpickler:

* :func:`load_checkpoint_file` - ``torch.load(weights_only=True)``: tensors, numbers,
  strings, ``None`` and plain containers (dict, list, tuple, OrderedDict) only; the authors'
  ``{'epoch', 'state_dict', 'optimizer'}`` (with Adam state) and ecmlib's own checkpoints
  (``ecmlib_config``, ``ecmlib_history``, ``ecmlib_best``, ``ecmlib_rng``) are all of that;
* :func:`load_pickled_array` - a ``.npy`` file; one of dtype ``object`` (the W-TALC /
  CO2-Net ``*-I3D-JOINTFeatures.npy``, ``labels_all.npy``, ``segments.npy``) is unpickled by
  :class:`RestrictedUnpickler`, which admits only numpy's array reconstruction
  (``_reconstruct``, ``ndarray``, ``dtype`` of numbers / strings / objects, numeric
  ``scalar``) and ``_codecs.encode(str, 'latin1')`` (how Python 3 writes the raw bytes of
  an array in a protocol-2 pickle);
* :func:`load_plain_pickle` - a pickle of plain data (``ecm_idx_name_dict.pkl``): no global
  at all is admitted.

Anything else raises :class:`UnsafeFileError` naming the file and the refused class before
any of it is called.
"""

from __future__ import annotations

import codecs
import os
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError

__all__ = ["UnsafeFileError", "RestrictedUnpickler", "load_checkpoint_file",
           "load_pickled_array", "load_plain_pickle"]


class UnsafeFileError(DataError):
    """A file asked to unpickle something ecmlib does not admit (nothing of it was run)."""


_NUMPY_CORE = ("numpy.core.multiarray", "numpy._core.multiarray")
_NUMPY_NUMERIC = ("numpy.core.numeric", "numpy._core.numeric")
# dtype kinds an array of numeric arrays / strings needs; 'V' (structured) is not admitted.
_DTYPE_SPEC = re.compile(r"^[<>=|]?[?bBhHiIlLqQpPefdgFDGbiufcSUaO]\d*$")


try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct as _NUMPY_RECONSTRUCT
    from numpy._core.multiarray import scalar as _NUMPY_SCALAR
    from numpy._core.numeric import _frombuffer as _NUMPY_FROMBUFFER
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct as _NUMPY_RECONSTRUCT  # type: ignore[no-redef]
    from numpy.core.multiarray import scalar as _NUMPY_SCALAR  # type: ignore[no-redef]
    from numpy.core.numeric import _frombuffer as _NUMPY_FROMBUFFER  # type: ignore[no-redef]


class _NdarrayType:
    """Stands for ``numpy.ndarray`` in a pickle: only :func:`_reconstruct` accepts it.

    The class itself is never handed out: ``numpy.ndarray(shape, object, buffer=...)``
    would read object pointers from attacker bytes.
    """

    def __repr__(self) -> str:
        return "numpy.ndarray"


_NDARRAY = _NdarrayType()


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not _NDARRAY:
        raise pickle.UnpicklingError(f"_reconstruct of {subtype!r} (only numpy.ndarray)")
    return _NUMPY_RECONSTRUCT(np.ndarray, shape, dtype)


def _dtype(spec: Any, align: Any = False, copy: Any = False) -> np.dtype:
    if not isinstance(spec, str) or not _DTYPE_SPEC.match(spec):
        raise pickle.UnpicklingError(f"numpy.dtype({spec!r}) (structured or unknown dtype)")
    return np.dtype(spec, align=bool(align), copy=bool(copy))


def _scalar(dtype: Any, *args: Any) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biufc":
        raise pickle.UnpicklingError(f"numpy scalar of dtype {dtype!r} (only numeric)")
    return _NUMPY_SCALAR(dtype, *args)


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise pickle.UnpicklingError(f"array from a buffer of dtype {dtype!r}")
    return _NUMPY_FROMBUFFER(buf, dtype, shape, order)


def _latin1_encode(text: Any, encoding: Any = "utf-8", *_: Any) -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode(..., {encoding!r}) (only latin1)")
    return codecs.encode(text, "latin1")


_ADMITTED: dict[tuple[str, str], Any] = {
    **{(m, "_reconstruct"): _reconstruct for m in _NUMPY_CORE},
    **{(m, "scalar"): _scalar for m in _NUMPY_CORE},
    **{(m, "_frombuffer"): _frombuffer for m in _NUMPY_NUMERIC},
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _latin1_encode,
}


def _check_dtype_state(dtype: np.dtype, state: Any) -> None:
    """A dtype's pickled state may only restate the dtype (byte order aside).

    ``dtype.__setstate__`` believes what it is told: flags that mark a bytes dtype as holding
    objects, a negative size or fields would make numpy read pointers from file bytes.
    """
    ok = (isinstance(state, tuple) and len(state) in (8, 9) and state[0] == 3
          and state[1] in ("<", ">", "|", "=") and state[2:5] == (None, None, None)
          and state[5] == (dtype.itemsize if dtype.kind in "SU" else -1)
          and state[6] in (-1, dtype.alignment) and state[7] == dtype.flags
          and (len(state) == 8 or not state[8]))
    if not ok:
        raise pickle.UnpicklingError(f"state {state!r} of numpy.dtype({dtype.str!r})")


class RestrictedUnpickler(pickle._Unpickler):  # noqa: SLF001 - the Python one: BUILD is checked
    """Unpickles numpy (object) arrays of numeric arrays, strings and plain containers only.

    ``find_class`` admits the globals in ``admitted`` (default: numpy's array
    reconstruction, see the module docstring) and refuses every other one with
    :class:`UnsafeFileError` naming ``source`` and the class, before anything is called.
    ``BUILD`` (``__setstate__``) is applied to arrays and to dtypes whose state restates
    them, nothing else. The pure-Python unpickler is used so that ``BUILD`` can be checked;
    array data are single large byte strings, so this costs little.
    """

    dispatch = dict(pickle._Unpickler.dispatch)  # noqa: SLF001

    def __init__(self, file: Any, source: str | os.PathLike, *,
                 admitted: dict[tuple[str, str], Any] | None = None, encoding: str = "latin1"):
        super().__init__(file, encoding=encoding)
        self.source = str(source)
        self.admitted = _ADMITTED if admitted is None else admitted

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.admitted[(module, name)]
        except KeyError:
            raise UnsafeFileError(_refused(self.source, f"{module}.{name}")) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeFileError(_refused(self.source, f"persistent id {pid!r}"))

    def load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if type(inst) is np.ndarray:
            inst.__setstate__(state)
        elif isinstance(inst, np.dtype):
            _check_dtype_state(inst, state)
            inst.__setstate__(state)
        else:
            raise pickle.UnpicklingError(f"BUILD of a {type(inst).__name__}")

    dispatch[pickle.BUILD[0]] = load_build


def _refused(source: str, what: str) -> str:
    return (f"{source}: refused to unpickle an object of class {what} (ecmlib opens only "
            f"tensors, numeric/string arrays and plain containers, and never runs code "
            f"from a file)")


# -- checkpoints ----------------------------------------------------------------------------

_TORCH_REFUSAL = [
    re.compile(r"GLOBAL (\S+?) (?:was not an allowed global|whose module)"),
    re.compile(r"unrecognized function (.+?)(?: which belongs|$)", re.M),
    re.compile(r"but got <class '([^']+)'>"),
    re.compile(r"but got (\S+)"),
]


def _torch_refused_class(message: str) -> str | None:
    for pattern in _TORCH_REFUSAL:
        m = pattern.search(message)
        if m:
            return m.group(1)
    return None


def load_checkpoint_file(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with errors that name the file.

    Missing file -> FileNotFoundError; a pickle that needs anything but tensors, numbers,
    strings and plain containers -> :class:`UnsafeFileError` ("refused to unpickle an object
    of class X"), nothing of it run; not a torch file -> ValueError.
    """
    import torch
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint file not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        message = str(err)
        if "Weights only load failed" not in message:
            raise ValueError(f"{path}: cannot read checkpoint (UnpicklingError: {err})") from None
        cls = _torch_refused_class(message)
        if cls is None:  # no class named: not a pickle torch's safe unpickler can read
            reason = message.split("WeightsUnpickler error:")[-1].strip().splitlines()[0]
            raise ValueError(f"{path}: cannot read checkpoint (not a torch checkpoint, or "
                             f"corrupt: {reason}); nothing of it was run") from None
        raise UnsafeFileError(_refused(str(path), cls)) from None
    except Exception as err:  # not a zip / legacy torch file, truncated, ...
        raise ValueError(f"{path}: cannot read checkpoint ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''})") from None


# -- pickled arrays -------------------------------------------------------------------------

def _check_plain(obj: Any, source: str, depth: int = 0) -> None:
    """What a restricted unpickle returned holds only arrays, numbers, strings, containers."""
    if depth > 64:
        raise DataError(f"{source}: nested more than 64 levels deep")
    if isinstance(obj, np.ndarray):
        if obj.dtype.fields is not None:
            raise DataError(f"{source}: structured array (dtype {obj.dtype}) not supported")
        if obj.dtype.hasobject:
            for item in obj.flat:
                _check_plain(item, source, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            _check_plain(item, source, depth + 1)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _check_plain(k, source, depth + 1)
            _check_plain(v, source, depth + 1)
    elif not isinstance(obj, (str, bytes, int, float, complex, bool, type(None), np.generic)):
        raise DataError(f"{source}: unexpected {type(obj).__name__} in a pickled array")


def _unpickle(fh: Any, source: str, admitted: dict | None = None) -> Any:
    try:
        return RestrictedUnpickler(fh, source, admitted=admitted).load()
    except DataError:
        raise
    except RecursionError:
        raise DataError(f"{source}: pickle nested too deeply") from None
    except Exception as err:  # truncated stream, bad opcode, numpy refusing a state, ...
        raise DataError(f"{source}: corrupt or unreadable file (pickled data; "
                        f"{type(err).__name__}: {err})") from None


def _read_header(fh: Any, source: str) -> tuple[tuple[int, int], np.dtype]:
    from numpy.lib import format as npy_format
    try:
        version = npy_format.read_magic(fh)
        if version == (1, 0):
            _, _, dtype = npy_format.read_array_header_1_0(fh)
        elif version == (2, 0):
            _, _, dtype = npy_format.read_array_header_2_0(fh)
        else:  # 3.0: the 2.0 header in utf-8 (no public reader)
            _, _, dtype = npy_format._read_array_header(fh, version)  # noqa: SLF001
    except Exception as err:
        raise DataError(f"{source}: not a valid .npy header "
                        f"({type(err).__name__}: {err})") from None
    return version, dtype


def load_pickled_array(path: str | os.PathLike) -> Any:
    """A ``.npy`` file, object arrays included, without running code from it.

    Numeric / string arrays load with ``np.load(allow_pickle=False)``; an object array's
    pickle goes through :class:`RestrictedUnpickler`. A bare pickle (what
    ``np.load(allow_pickle=True)`` also opens) is read the same restricted way; ``.npz``
    archives with ``allow_pickle=False``. Every failure is a :class:`DataError` naming the
    file (:class:`UnsafeFileError` for a refused class).
    """
    from numpy.lib import format as npy_format
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise DataError(f"{source}: file not found")
    with open(path, "rb") as fh:
        prefix = fh.read(len(npy_format.MAGIC_PREFIX))
        fh.seek(0)
        if prefix == npy_format.MAGIC_PREFIX:
            _, dtype = _read_header(fh, source)
            if dtype.hasobject:
                arr = _unpickle(fh, source)
                if not isinstance(arr, np.ndarray):
                    raise DataError(f"{source}: object array header, but the pickle holds a "
                                    f"{type(arr).__name__}")
                _check_plain(arr, source)
                return arr
        elif not prefix.startswith(b"PK\x03\x04"):
            obj = _unpickle(fh, source)
            _check_plain(obj, source)
            return obj
    try:
        return np.load(path, allow_pickle=False, encoding="latin1")
    except Exception as err:
        raise DataError(f"{source}: corrupt or unreadable file "
                        f"({type(err).__name__}: {err})") from None


def load_plain_pickle(path: str | os.PathLike) -> Any:
    """A pickle of plain data (dict, list, tuple, str, bytes, numbers): no global admitted.

    For files such as ECM's ``ecm_idx_name_dict.pkl`` ({1: 'Archery', ...}).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with open(path, "rb") as fh:
        return _unpickle(fh, str(path), admitted={})
