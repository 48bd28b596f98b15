# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""A ``CheckpointSaver`` that never leaves a window without a loadable checkpoint, and resumes its own state.

MONAI's ``CheckpointSaver`` delegates to Ignite's ``Checkpoint``, which removes the previous file *before* it writes
the new one (and MONAI's disk saver writes in place, not atomically): a kill in between leaves no
``last_checkpoint_epoch=*.pt`` at all, and a rerun silently trains from epoch 0. :class:`SafeDiskSaver` reorders the
steps: write a temporary file, ``fsync`` it, rename it onto the final name, ``fsync`` the folder, and only then remove
the files Ignite asked to remove. :class:`SafeCheckpointSaver` uses it for every file it writes and, at the first
``STARTED`` event of its engine, continues the state found on disk: the newest interval checkpoint (older ones and
left-over temporary files are removed) and the best key metric (``best_metric.json``), so a resumed run neither piles
up checkpoints nor forgets its best validation score.

The best-metric record and the best model are two files, replaced one after the other; a kill between the two
replacements must still leave a record that describes the model on disk (a stale, lower score would let a later,
worse model replace the better one; a record naming a removed file would leave no best-metric state at all). So the
new model is serialised first, the record naming it -- with its SHA-256 and the previous record under
``"previous"`` -- is written next, then the model file, and only then is the old model file removed. A resume takes
the entry whose file exists and has the recorded hash.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from monai.handlers import CheckpointSaver
from monai.utils import IgniteInfo, min_version, optional_import

from monai_meep.utils import atomic_open

idist, _ = optional_import("ignite", IgniteInfo.OPT_IMPORT_VERSION, min_version, "distributed")
Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
Checkpoint, _ = optional_import("ignite.handlers", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Checkpoint")
BaseSaveHandler, _ = optional_import(
    "ignite.handlers.checkpoint", IgniteInfo.OPT_IMPORT_VERSION, min_version, "BaseSaveHandler"
)
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")

__all__ = ["SafeCheckpointSaver", "SafeDiskSaver", "find_checkpoints", "read_best_metric"]

_EPOCH_RE = re.compile(r"=(\d+)\.pt$")
logger = logging.getLogger(__name__)


def find_checkpoints(ckpt_dir: str | os.PathLike, prefix: str = "last") -> list[tuple[int, str]]:
    """``(N, path)`` of every ``<prefix>_*=<N>.pt`` file in ``ckpt_dir`` (e.g. ``last_checkpoint_epoch=3.pt``),
    sorted by ``N``; an empty list for a missing folder."""
    if not ckpt_dir or not os.path.isdir(ckpt_dir):
        return []
    found = []
    for p in glob.glob(os.path.join(glob.escape(str(ckpt_dir)), f"{prefix}_*=*.pt")):
        m = _EPOCH_RE.search(p)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def read_best_metric(path: str | os.PathLike) -> dict[str, Any] | None:
    """The record :class:`SafeCheckpointSaver` keeps beside the best model (``None`` if absent or unreadable).

    ``{"metric", "value", "priority", "epoch", "filename", "sha256"[, "previous"]}``: ``previous`` is the record this
    one replaced, the one that holds should the kill of a save have come before the new model file was in place
    (:meth:`SafeCheckpointSaver.restore` checks the hashes; this function only reads the file).
    """
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "priority" in record else None


class SafeDiskSaver(BaseSaveHandler):
    """Ignite save handler: atomic, synced writes; removals deferred until the new file is on disk.

    Ignite's ``Checkpoint`` calls :meth:`remove` for the file being replaced and then ``__call__`` for the new one;
    here :meth:`remove` only records the name, and ``__call__`` removes the recorded files after the new one has
    been written (``atomic_open``: temporary file, ``fsync``, rename) and the folder synced. At every step of a save
    at least one complete checkpoint is on disk. Only the global rank 0 writes (as Ignite's ``DiskSaver``).

    Args:
        dirname: the checkpoint folder (created when missing).
        filename: a fixed file name replacing Ignite's generated one (e.g. ``"model.pt"``), or ``None``.
        before_write: called as ``before_write(name, sha256, metadata)`` once the checkpoint is serialised and before
            its file is written (``sha256``: hex digest of the bytes the file will hold; ``metadata``: Ignite's,
            with ``priority``); :class:`SafeCheckpointSaver` writes its best-metric record there.
    """

    def __init__(
        self,
        dirname: str | os.PathLike,
        filename: str | None = None,
        before_write: Callable[[str, str, Mapping], None] | None = None,
    ) -> None:
        self.dirname = Path(dirname).expanduser()
        self.filename = filename
        self.before_write = before_write
        self._pending: list[str] = []

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        name = self.filename or filename
        if idist.get_rank() == 0:
            self.dirname.mkdir(parents=True, exist_ok=True)
            buf = io.BytesIO()
            torch.save(checkpoint, buf)
            data = buf.getbuffer()
            if self.before_write is not None:
                self.before_write(name, hashlib.sha256(data).hexdigest(), metadata or {})
            with atomic_open(self.dirname / name, "wb") as f:
                f.write(data)
            _fsync_dir(self.dirname)
        for old in self._pending:
            if old != name and idist.get_rank() == 0:
                Path(self.dirname / old).unlink(missing_ok=True)
        self._pending = []

    def remove(self, filename: str) -> None:
        """Remove ``filename`` after the next successful save (now, if it is the fixed file name: it is replaced)."""
        name = self.filename or filename
        if name not in self._pending:
            self._pending.append(name)


def _sha256(path: Path) -> str | None:
    """Hex SHA-256 of a file's bytes (``None`` if it cannot be read)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SafeCheckpointSaver(CheckpointSaver):
    """MONAI ``CheckpointSaver`` writing through :class:`SafeDiskSaver` and resuming its state from ``save_dir``.

    It takes every argument of ``monai.handlers.CheckpointSaver`` (``key_metric_save_state`` must stay ``False``:
    the best-metric state lives in ``best_metric_file``, so a ``key_metric_filename`` such as ``model.pt`` with a
    one-entry ``save_dict`` holds a plain ``state_dict`` -- what ``ckpt_export``, MONAI Label and
    ``net.load_state_dict(torch.load(path))`` expect). At the first ``STARTED`` event of the engine it is attached
    to, it continues what ``save_dir`` holds:

    - interval checkpoints: the newest ``<file_prefix>_*=<N>.pt`` becomes the one the next save replaces; older ones
      and temporary files left by a killed save are removed;
    - key metric: the best score recorded in ``best_metric_file`` (or, for models saved by earlier versions, in the
      ``checkpointer`` entry of the key-metric file), so a worse validation after a resume does not replace the best
      model. Of the record and the ``previous`` one it keeps, the entry whose file exists with the recorded SHA-256
      is taken (a record of an earlier version, without a hash: its file must exist).

    Args:
        save_dir: the checkpoint folder.
        save_dict: objects to save, as for ``CheckpointSaver``.
        best_metric_file: file name (in ``save_dir``) of the best-metric record, written atomically (temporary file,
            ``fsync``, rename, folder ``fsync``) with each new best model, after the model is serialised and before
            its file replaces the old one: ``{"metric", "value", "priority", "epoch", "filename", "sha256",
            "previous"}`` (see :func:`read_best_metric`).
        kwargs: the other ``CheckpointSaver`` arguments.

    Raises:
        ValueError: ``key_metric_save_state=True`` (the state would go into the model file).

    Example:
        >>> import torch
        >>> net = torch.nn.Linear(2, 2)
        >>> saver = SafeCheckpointSaver("/tmp/ckpt", {"model": net}, save_key_metric=True,
        ...                             key_metric_filename="model.pt")
    """

    def __init__(
        self, save_dir: str, save_dict: dict, best_metric_file: str = "best_metric.json", **kwargs: Any
    ) -> None:
        if kwargs.get("key_metric_save_state"):
            raise ValueError(
                "SafeCheckpointSaver keeps the best-metric state in best_metric_file; key_metric_save_state=True "
                "would add it to the model file."
            )
        super().__init__(save_dir=save_dir, save_dict=save_dict, **kwargs)
        self.best_metric_file = best_metric_file
        self._file_prefix = kwargs.get("file_prefix", "")
        self._key_metric_name = kwargs.get("key_metric_name")
        self._restored = False
        self._engine: Engine | None = None  # the engine of the key-metric save under way (for the record)
        for ckpt in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if ckpt is not None:  # MONAI's saver keeps its fixed file name on the handler it built
                ckpt.save_handler = SafeDiskSaver(
                    save_dir,
                    filename=getattr(ckpt.save_handler, "filename", None),
                    before_write=self._write_record if ckpt is self._key_metric_checkpoint else None,
                )

    @property
    def best_metric_path(self) -> Path:
        """Where the best-metric record is written."""
        return Path(self.save_dir) / self.best_metric_file

    def attach(self, engine: Engine) -> None:
        """Attach the saving events (as ``CheckpointSaver``) and the one-off restore at ``STARTED``."""
        super().attach(engine)
        engine.add_event_handler(Events.STARTED, self.restore)

    def restore(self, engine: Engine | None = None) -> None:
        """Continue the interval and best-metric state found in ``save_dir`` (once; later calls do nothing)."""
        if self._restored:
            return
        self._restored = True
        if self._interval_checkpoint is not None:
            self._restore_interval()
        if self._key_metric_checkpoint is not None:
            self._restore_key_metric()

    def _restore_interval(self) -> None:
        prefix = self._file_prefix or ""
        found = find_checkpoints(self.save_dir, prefix) if prefix else []
        if idist.get_rank() == 0:
            for tmp in glob.glob(os.path.join(glob.escape(str(self.save_dir)), ".*.tmp")):
                Path(tmp).unlink(missing_ok=True)  # a save killed before its rename
            for _, stale in found[:-1]:
                Path(stale).unlink(missing_ok=True)
                self.logger.info(f"Removed stale checkpoint {stale}")
        if found:
            epoch, path = found[-1]
            self._interval_checkpoint._saved = [Checkpoint.Item(epoch, os.path.basename(path))]

    def _matches(self, entry: Any) -> bool:
        """``entry`` names a file of ``save_dir`` holding the recorded bytes (any bytes for a record without hash)."""
        if not isinstance(entry, dict) or "priority" not in entry or not entry.get("filename"):
            return False
        path = Path(self.save_dir) / str(entry["filename"])
        if not path.is_file():
            return False
        return "sha256" not in entry or _sha256(path) == entry["sha256"]

    def _resumable_record(self) -> dict[str, Any] | None:
        """The entry of ``best_metric_file`` that describes the model on disk: the record, or the ``previous`` one
        when a save was killed after the record and before its model file was in place."""
        record = read_best_metric(self.best_metric_path)
        if record is None:
            return None
        previous = record.get("previous")
        for entry in (record, previous):
            if self._matches(entry):
                if entry is record and self._matches(previous) and previous["filename"] != record["filename"]:
                    if idist.get_rank() == 0:  # killed after the new model file, before the old one's removal
                        (Path(self.save_dir) / previous["filename"]).unlink(missing_ok=True)
                return entry
        for entry in (record, previous):  # the file was replaced by something else than this saver: keep the score
            if isinstance(entry, dict) and (Path(self.save_dir) / str(entry.get("filename", ""))).is_file():
                self.logger.warning(
                    f"{entry['filename']} does not hold the model {self.best_metric_path} recorded; "
                    f"keeping its best score {entry['priority']}."
                )
                return entry
        return None

    def _restore_key_metric(self) -> None:
        ckpt = self._key_metric_checkpoint
        fixed = getattr(ckpt.save_handler, "filename", None)
        record = self._resumable_record()
        if record is not None:
            ckpt._saved = [Checkpoint.Item(record["priority"], record["filename"])]
        elif fixed and os.path.isfile(os.path.join(self.save_dir, fixed)):
            # a model file of an earlier version that also held the tracker state ("checkpointer")
            try:
                old = torch.load(os.path.join(self.save_dir, fixed), map_location="cpu", weights_only=True)
            except Exception:
                return
            if isinstance(old, dict) and isinstance(old.get("checkpointer"), dict):
                ckpt.load_state_dict(old["checkpointer"])
        if ckpt._saved:
            self.logger.info(f"Best {self._metric_label()} so far: {ckpt._saved[-1].priority:.4f} (resumed)")

    def _metric_label(self, engine: Engine | None = None) -> str:
        if self._key_metric_name:
            return str(self._key_metric_name)
        return str(getattr(getattr(engine, "state", None), "key_metric_name", None) or "key metric")

    def metrics_completed(self, engine: Engine) -> None:
        """Save the model when the key metric improved; :meth:`_write_record` records the new best on the way."""
        self._engine = engine
        try:
            super().metrics_completed(engine)
        finally:
            self._engine = None

    def _write_record(self, filename: str, sha256: str, metadata: Mapping) -> None:
        """Write ``best_metric_file`` for the best model about to be written as ``filename`` (rank 0, atomically),
        keeping the record it replaces as ``previous``."""
        engine = self._engine
        name = self._metric_label(engine)
        metrics = getattr(getattr(engine, "state", None), "metrics", None) or {}
        priority = metadata.get("priority", self._key_metric_checkpoint._saved[-1].priority)
        record: dict[str, Any] = {
            "metric": name,
            "value": metrics.get(name, priority),
            "priority": priority,
            "epoch": int(engine.state.epoch) if engine is not None else None,
            "filename": filename,  # the file on disk (Ignite's item keeps a generated name)
            "sha256": sha256,
        }
        previous = read_best_metric(self.best_metric_path)
        if previous is not None:
            previous.pop("previous", None)
            record["previous"] = previous
        with atomic_open(self.best_metric_path) as f:
            json.dump(record, f, indent=2, default=float)
        _fsync_dir(self.best_metric_path.parent)
