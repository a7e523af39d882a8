"""Read and write ``.distillgan`` model files: HDF5 through h5py, no pickle anywhere.

Layout: the root carries ``format``, ``schema_version``, ``app_version``, ``created`` and
``updated`` attributes; every stage is one top-level group ("vae", "dataset", "vocoder",
"vocoder_checkpoint") whose attributes are JSON strings and whose tensors are plain numeric
datasets (a "/" in a tensor name makes nested groups).

One module a job:

* :mod:`~distillgan.modelfile.paths`: where models live and what their files are called.
* :mod:`~distillgan.modelfile.schema`: the format mark, schema version, :class:`Section` and stored dtypes.
* :mod:`~distillgan.modelfile.reader`: :func:`open_model`, which treats every file as hostile input
  and turns every library error into a :class:`ModelFileError` with one clear line.
* :mod:`~distillgan.modelfile.records`: typed records of what each stage holds (:class:`VAERecord`,
  :class:`VocoderRecord`, ...), the one place that reads and writes stage attributes.
* :mod:`~distillgan.modelfile.writer`: :func:`write_model`, which replaces the whole file atomically.
* :mod:`~distillgan.modelfile.lock`: :class:`ModelLock`, the exclusive writer lock.
* :mod:`~distillgan.modelfile.tree`: :func:`pack_tree` / :func:`unpack_tree`, the checkpoint codec.

Importing this package does not import torch (listing and resolving models stays fast); torch is
imported on first tensor use.
"""

from distillgan.modelfile.lock import ModelLock
from distillgan.modelfile.paths import (
    LOCK_SUFFIX,
    MODELS_DIR_ENV,
    SUFFIX,
    default_models_dir,
    list_models,
    model_name,
    new_model_path,
    resolve_model,
)
from distillgan.modelfile.reader import (
    MAX_ATTRS,
    MAX_DEPTH,
    MAX_OBJECTS,
    MAX_READ_BYTES,
    ModelReader,
    open_model,
)
from distillgan.modelfile.records import (
    DatasetRecord,
    DiscriminatorsRecord,
    FileRecord,
    StageRecord,
    VAERecord,
    VocoderRecord,
    dataset_record,
    discriminators_record,
    file_record,
    vae_record,
    vocoder_record,
)
from distillgan.modelfile.schema import FORMAT, SCHEMA_VERSION, Section
from distillgan.modelfile.tree import TREE_KEY, pack_tree, unpack_tree
from distillgan.modelfile.writer import write_model

__all__ = [
    "FORMAT",
    "LOCK_SUFFIX",
    "MAX_ATTRS",
    "MAX_DEPTH",
    "MAX_OBJECTS",
    "MAX_READ_BYTES",
    "MODELS_DIR_ENV",
    "SCHEMA_VERSION",
    "SUFFIX",
    "TREE_KEY",
    "DatasetRecord",
    "DiscriminatorsRecord",
    "FileRecord",
    "ModelLock",
    "ModelReader",
    "Section",
    "StageRecord",
    "VAERecord",
    "VocoderRecord",
    "dataset_record",
    "default_models_dir",
    "discriminators_record",
    "file_record",
    "list_models",
    "model_name",
    "new_model_path",
    "open_model",
    "pack_tree",
    "resolve_model",
    "unpack_tree",
    "vae_record",
    "vocoder_record",
    "write_model",
]
