"""Every name under --bottleneck_dir, in one place.

retrain.py's own files, shared with it both ways:

  <bottleneck_dir>/<class folder>/<image file name>_<mangled module>.txt

and, beside them, what this version adds (retrain.py never looks there):

  <image>_<module>_<tag>.txt                 entries made with other pixels (fast JPEG decoding)
  <image>_<module>[_<tag>]_<settings>-copy<k>.txt   distorted copy k of an image
  .retrain/records/<module>/*.json           what each entry was computed from (cache.records)
  .retrain/modules/<module>_<size>_<fingerprint>.json   a module's input and output sizes
  .retrain/frozen/<module>_<h>x<w>_<fingerprint>.pb     a module frozen once (module.frozen)
  .retrain/beam-<id>/failed-*.jsonl          a Beam fill's skipped files, read and removed

Pure string work on paths: no TensorFlow, no file access.
"""

from retrain.data import storage

RECORDS_FOLDER = ".retrain"
_TEXT = ".txt"


def mangle_module_name(module_handle: str) -> str:
    """The module part of a cache file name: separators of URLs and paths become '~'."""
    name = module_handle
    for separator in ("://", "/", ":", "\\"):
        name = name.replace(separator, "~")
    return name


def bottleneck_path(bottleneck_dir: str, dir_name: str, file_name: str, module_handle: str, tag: str = "") -> str:
    """Where the bottleneck of image ``<dir_name>/<file_name>`` for a module is cached.

    Without a tag, retrain.py's own name; a tag (entries made with other pixels) names
    them ``<image>_<module>_<tag>.txt``, so they never mix with retrain.py's.
    """
    path = storage.join(bottleneck_dir, dir_name, f"{file_name}_{mangle_module_name(module_handle)}{_TEXT}")
    return _with_suffix(path, tag) if tag else path


def copy_path(plain_path: str, settings_tag: str, copy_index: int) -> str:
    """Where distorted copy copy_index of the image cached at plain_path is cached."""
    return _with_suffix(plain_path, f"{settings_tag}-copy{copy_index}")


def _with_suffix(path: str, suffix: str) -> str:
    return f"{path[:-len(_TEXT)]}_{suffix}{_TEXT}"


def records_dir(bottleneck_dir: str, mangled_module: str) -> str:
    """Where the records of one module's cache entries are kept."""
    return storage.join(bottleneck_dir, RECORDS_FOLDER, "records", mangled_module)


def module_file(bottleneck_dir: str, kind: str, module_handle: str, detail: str, fingerprint: str, extension: str) -> str:
    """Where something a run derives from a module once (its frozen graph, its sizes) is kept:
    ``.retrain/<kind>/<mangled module>_<detail>_<fingerprint><extension>``.

    '' without a cache or a fingerprint: nothing is then kept, since a module whose
    weights cannot be told apart could be another one next time.
    """
    if not bottleneck_dir or not fingerprint:
        return ""
    name = f"{mangle_module_name(module_handle)}_{detail}_{fingerprint}{extension}"
    return storage.join(bottleneck_dir, RECORDS_FOLDER, kind, name)


def beam_failures_prefix(bottleneck_dir: str, run_id: str) -> str:
    """The prefix of the files in which one Beam fill lists the images it skipped."""
    return storage.join(bottleneck_dir, RECORDS_FOLDER, f"beam-{run_id}", "failed")
