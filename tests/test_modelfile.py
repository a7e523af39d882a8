"""The .distillgan file: round trips, clear errors for broken or hostile files, atomic writes, locking."""

from __future__ import annotations

import fcntl
import math
import os
import random
import socket
import subprocess
import sys
import threading
import tracemalloc
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch

from distillgan import __version__
from distillgan.errors import DamagedModelFileError, ModelFileError, ModelLockedError
from distillgan.modelfile import (
    FORMAT,
    MODELS_DIR_ENV,
    SCHEMA_VERSION,
    ModelLock,
    Section,
    default_models_dir,
    list_models,
    open_model,
    pack_tree,
    resolve_model,
    unpack_tree,
    write_model,
)
from distillgan.modelfile import lock as modelfile_lock
from distillgan.modelfile import writer as modelfile_writer


def write(path: Path, sections: dict[str, Section | None], *, create: bool = True) -> None:
    with ModelLock(path, owner="test") as lock:
        write_model(path, sections, lock=lock, create=create)


def weights() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {"enc.weight": torch.randn(4, 3, generator=gen), "enc.bias": torch.randn(4, generator=gen)}


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "rain.distillgan"
    write(
        path,
        {
            "vae": Section(
                attrs={"config": {"latent_dim": 8}}, tensors={f"weights/{k}": v for k, v in weights().items()}
            ),
            "dataset": Section(attrs={"root": "/audio/rain", "files": [{"path": "a.wav", "size": 10}]}),
        },
    )
    return path


def bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bits of a tensor, so NaN payloads and -0.0 compare exactly."""
    if t.is_floating_point():
        return t.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])
    return t


# ---------------------------------------------------------------------------------------------
# Round trips


def test_tensors_round_trip_bit_identical(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(1)
    special = torch.tensor([0.0, -0.0, float("nan"), float("inf"), -float("inf"), 1e-45, 3.4e38])
    tensors: dict[str, torch.Tensor | np.ndarray] = {
        "f32": torch.randn(5, 7, generator=gen),
        "f32_special": special,
        "f16": torch.randn(3, generator=gen).half(),
        "bf16": torch.randn(2, 3, generator=gen).to(torch.bfloat16),
        "f64": torch.randn(4, generator=gen, dtype=torch.float64),
        "i64": torch.tensor([-(2**63), 2**63 - 1, 0]),
        "u8": torch.arange(256, dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(3.5),
        "bf16_scalar": torch.tensor(-2.25, dtype=torch.bfloat16),
        "empty": torch.empty(0, 3),
        "strided": torch.randn(6, 6, generator=gen)[::2, 1::2],
        "from_numpy": np.arange(6, dtype=np.int32).reshape(2, 3),
        "big_endian": np.arange(4, dtype=">f4"),
        "deep/nested/name.weight": torch.ones(2),
    }
    path = tmp_path / "m.distillgan"
    write(path, {"vae": Section(tensors=tensors)})
    got = open_model(path).tensors("vae", allow_non_finite=True)
    assert set(got) == set(tensors)
    for name, original in tensors.items():
        want = (
            original
            if isinstance(original, torch.Tensor)
            else torch.from_numpy(original.astype(original.dtype.newbyteorder("=")))
        )
        assert got[name].dtype == want.dtype, name
        assert got[name].shape == want.shape, name
        assert torch.equal(bits(got[name]), bits(want.contiguous())), name


def test_tensors_prefix_expected_and_map_location(model: Path) -> None:
    reader = open_model(model)
    expected = {k: tuple(v.shape) for k, v in weights().items()}
    got = reader.tensors("vae", expected, prefix="weights", map_location=torch.device("cpu"))
    assert all(torch.equal(got[k], v) for k, v in weights().items())
    assert set(reader.tensors("vae")) == {f"weights/{k}" for k in weights()}


def test_attrs_round_trip(tmp_path: Path) -> None:
    attrs = {
        "config": {"channels": [256, 512], "lr": 1e-3, "name": "pluie d'été ☔", "none": None, "flag": True},
        "best_loss": float("inf"),
        "manifest": [{"path": f"file_{i:05d}.wav", "sha256": "ab" * 32, "size": i} for i in range(10_000)],
        "zero": 0,
    }
    path = tmp_path / "m.distillgan"
    write(path, {"dataset": Section(attrs=attrs)})
    assert open_model(path).attrs("dataset") == attrs


def test_header_sections_kept_replaced_and_deleted(model: Path) -> None:
    first = open_model(model).root_attrs
    assert first["format"] == FORMAT
    assert first["schema_version"] == SCHEMA_VERSION
    assert first["app_version"] == __version__
    assert first["created"].endswith("+00:00")
    write(
        model,
        {"vocoder": Section(attrs={"status": "partial"}, tensors={"generator/w": torch.ones(3)})},
        create=False,
    )
    reader = open_model(model)
    assert reader.root_attrs["created"] == first["created"]
    assert reader.sections() == ["dataset", "vae", "vocoder"]
    assert reader.attrs("vae") == {"config": {"latent_dim": 8}}
    assert torch.equal(reader.tensors("vae", prefix="weights")["enc.bias"], weights()["enc.bias"])
    write(model, {"vae": None, "vocoder": Section(attrs={"status": "complete"})}, create=False)
    reader = open_model(model)
    assert reader.sections() == ["dataset", "vocoder"]
    assert not reader.has("vae")
    assert reader.attrs("vocoder") == {"status": "complete"}
    assert reader.tensors("vocoder") == {}
    assert reader.size_bytes() == model.stat().st_size


def test_pack_tree_keeps_exact_types(tmp_path: Path) -> None:
    tree = {
        "tuple": (1, "a", (2.5, None)),
        "list": [1, [2, 3], []],
        "int_keys": {0: "zero", 1: {"x": -0.0}},
        "mixed": {1: "int", "1": "str", "$odd": True},
        "floats": [float("inf"), -float("inf"), 1e-300, 0.1],
        "numpy": {
            "arr": np.arange(5, dtype=np.uint32),
            "f64": np.float64(2.5),
            "i64": np.int64(7),
            "b": np.bool_(True),
        },
        "bf16": torch.tensor([1.5, -2.0], dtype=torch.bfloat16),
        "empty": {},
        "text": "$tensor",
    }
    packed = pack_tree(tree)
    assert_same(unpack_tree(packed.attrs, packed.tensors), tree)
    path = tmp_path / "m.distillgan"
    write(path, {"state": packed, "nan": pack_tree([float("nan")])})
    assert_same(open_model(path).tree("state"), tree)
    assert math.isnan(open_model(path).tree("nan")[0])


@pytest.mark.parametrize(
    "bad", [{1.5: "float key"}, {"s": {1, 2}}, torch.tensor([1j]), np.array(["text"]), object()]
)
def test_pack_tree_refuses_unstorable(bad: Any) -> None:
    with pytest.raises(TypeError):
        pack_tree(bad)


def assert_same(got: Any, want: Any) -> None:
    """Equal values and equal types all the way down (tuple is not list, np.int64 is not int)."""
    assert type(got) is type(want), (got, want)
    if isinstance(want, torch.Tensor):
        assert got.dtype == want.dtype and torch.equal(bits(got), bits(want))
    elif isinstance(want, (np.ndarray, np.generic)):
        assert got.dtype == want.dtype and np.array_equal(got, want)
    elif isinstance(want, dict):
        assert list(got) == list(want)
        for key in want:
            assert_same(got[key], want[key])
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert_same(g, w)
    elif isinstance(want, float):
        assert math.copysign(1, got) == math.copysign(1, want) and got == want
    else:
        assert got == want


def test_pack_tree_optimizer_and_rng_states_restore(tmp_path: Path) -> None:
    torch.manual_seed(3)
    net = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, betas=(0.8, 0.99))
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.999)
    net(torch.randn(2, 4)).pow(2).sum().backward()
    opt.step()
    sched.step()
    np.random.seed(5)
    random.seed(7)
    state = {
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
        "history": [{"epoch": 1, "loss": 0.25, "best": float("inf")}],
        "epoch": 1,
    }
    path = tmp_path / "m.distillgan"
    write(path, {"vocoder_checkpoint": pack_tree(state)})
    expect_torch, expect_numpy, expect_python = torch.rand(3), np.random.rand(3), random.random()

    back = open_model(path).tree("vocoder_checkpoint")
    assert_same(back["optimizer"], opt.state_dict())
    assert_same(back["scheduler"], sched.state_dict())
    assert_same(back["history"], state["history"])
    fresh = torch.optim.AdamW(torch.nn.Linear(4, 3).parameters(), lr=1e-3)
    fresh.load_state_dict(back["optimizer"])
    assert fresh.param_groups[0]["betas"] == (0.8, 0.99)
    torch.set_rng_state(back["rng"]["torch"])
    np.random.set_state(back["rng"]["numpy"])
    random.setstate(back["rng"]["python"])
    assert torch.equal(torch.rand(3), expect_torch)
    assert np.array_equal(np.random.rand(3), expect_numpy)
    assert random.random() == expect_python


def test_tree_next_to_weights(tmp_path: Path) -> None:
    packed = pack_tree({"step": 3, "m": torch.ones(2)})
    section = Section(
        attrs={**packed.attrs, "type": "ckpt"}, tensors={**packed.tensors, "generator/w": torch.zeros(2)}
    )
    path = tmp_path / "m.distillgan"
    write(path, {"vocoder_checkpoint": section})
    reader = open_model(path)
    assert_same(reader.tree("vocoder_checkpoint"), {"step": 3, "m": torch.ones(2)})
    assert set(reader.tensors("vocoder_checkpoint", prefix="generator")) == {"w"}
    write(path, {"vae": Section(attrs={"x": 1})}, create=False)
    with pytest.raises(ModelFileError, match="has no saved state in its vae stage"):
        reader.tree("vae")


def test_write_refuses_bad_input(tmp_path: Path, model: Path) -> None:
    with pytest.raises(ValueError, match="held ModelLock"):
        write_model(model, {}, lock=ModelLock(model, owner="test"))
    with ModelLock(tmp_path / "other.distillgan", owner="test") as other, pytest.raises(ValueError):
        write_model(model, {}, lock=other)
    with pytest.raises(ModelFileError, match="no model file at"):
        write(tmp_path / "new.distillgan", {}, create=False)
    for sections in (
        {"a/b": Section()},
        {"vae": Section(tensors={"w": torch.ones(1), "w/x": torch.ones(1)})},
        {"vae": Section(tensors={"/w": torch.ones(1)})},
    ):
        with pytest.raises(ValueError):
            write(model, sections)
    for sections in (
        {"vae": Section(attrs={"x": object()})},
        {"vae": Section(tensors={"w": torch.ones(1, dtype=torch.complex64)})},
        {"vae": Section(tensors={"w": [1.0]})},  # type: ignore[dict-item]
    ):
        with pytest.raises(TypeError):
            write(model, sections)
    # a lock without a model file guards nothing: its holder leaves no lock file behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rain.distillgan", "rain.distillgan.lock"]


# ---------------------------------------------------------------------------------------------
# Broken and hostile files


def edit(path: Path, change: Any) -> None:
    with h5py.File(path, "r+") as f:
        change(f)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="no model file at"):
        open_model(tmp_path / "nope.distillgan")
    with pytest.raises(ModelFileError, match="is a directory, not a distillgan model file"):
        open_model(tmp_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"not a distillgan model file \(empty file\)"),
        (random.Random(0).randbytes(4096), r"not a distillgan model file \(not HDF5\)"),
    ],
    ids=["empty", "random-bytes"],  # the same test ids at every collection
)
def test_not_a_model_file(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "x.distillgan"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match=message):
        open_model(path)


def read_everything(path: Path) -> None:
    reader = open_model(path)
    for section in reader.sections():
        reader.attrs(section)
        reader.tensors(section)


@pytest.mark.parametrize("keep", [0.02, 0.1, 0.3, 0.5, 0.8, 0.99])
def test_truncated_file(model: Path, keep: float) -> None:
    data = model.read_bytes()
    model.write_bytes(data[: max(9, int(len(data) * keep))])
    with pytest.raises(ModelFileError, match=r"rain.distillgan is damaged or truncated \(.+\)"):
        read_everything(model)


def test_hdf5_but_not_distillgan(tmp_path: Path, model: Path) -> None:
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(
        ModelFileError, match=r"plain.h5 is an HDF5 file but not a distillgan model file \(no format mark\)"
    ):
        open_model(plain)
    edit(model, lambda f: f.attrs.__setitem__("format", "keras"))
    with pytest.raises(ModelFileError, match=r"not a distillgan model file \(format 'keras'\)"):
        open_model(model)


def test_newer_schema(model: Path) -> None:
    edit(model, lambda f: f.attrs.__setitem__("schema_version", SCHEMA_VERSION + 1))
    with pytest.raises(
        ModelFileError,
        match=rf"made by a newer distillgan \(schema {SCHEMA_VERSION + 1}\); upgrade distillgan",
    ):
        open_model(model)
    with ModelLock(model, owner="test") as lock, pytest.raises(ModelFileError, match="newer distillgan"):
        write_model(model, {"vae": None}, lock=lock)


def test_missing_section(model: Path) -> None:
    reader = open_model(model)
    assert not reader.has("vocoder")
    for read in (reader.attrs, reader.tensors, reader.tree):
        with pytest.raises(ModelFileError, match="model 'rain' has no vocoder stage"):
            read("vocoder")
    with pytest.raises(ModelFileError, match="model 'rain' has no vae/generator data"):
        reader.tensors("vae", prefix="generator")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"enc.weight": (3, 4)}, r"weights/enc.weight has shape \(4, 3\), expected \(3, 4\)"),
        ({"extra": (1,)}, "weights lacks weight 'extra'"),
        ({"enc.bias": None}, "weights has an unexpected weight 'enc.bias'"),
    ],
)
def test_expected_shapes_mismatch(model: Path, change: dict[str, Any], message: str) -> None:
    expected = {k: tuple(v.shape) for k, v in weights().items()} | change
    expected = {k: v for k, v in expected.items() if v is not None}
    with pytest.raises(ModelFileError, match=rf"model 'rain': vae/{message}"):
        open_model(model).tensors("vae", expected, prefix="weights")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda g: g.create_dataset("bad", data=["a", "b"], dtype=h5py.string_dtype()),
            "holds text data, not plain numbers",
        ),
        (
            lambda g: g.create_dataset("bad", data=np.zeros(2, dtype=[("a", "f4"), ("b", "i4")])),
            "holds compound data",
        ),
        (lambda g: g.create_dataset("bad", shape=(2,), dtype=h5py.vlen_dtype("f4")), "holds object data"),
        (lambda g: g.create_dataset("bad", data=np.zeros(2, dtype="c8")), "holds 'complex64' data"),
        (
            lambda g: g.__setitem__("bad", h5py.ExternalLink("/etc/passwd", "/")),
            "'/vae/bad' is a link, not stored data",
        ),
        (lambda g: g.__setitem__("bad", h5py.SoftLink("/dataset")), "is a link"),
    ],
)
def test_hostile_datasets_refused(model: Path, make: Any, message: str) -> None:
    edit(model, lambda f: make(f["vae"]))
    with pytest.raises(ModelFileError, match=message):
        open_model(model).tensors("vae")


def test_non_finite_weights(tmp_path: Path) -> None:
    path = tmp_path / "rain.distillgan"
    write(
        path,
        {
            "vae": Section(
                tensors={"w": torch.tensor([1.0, float("nan")]), "h": torch.tensor([float("inf")]).half()}
            )
        },
    )
    with pytest.raises(ModelFileError, match=r"model 'rain': vae/(w|h) holds non-finite weights"):
        open_model(path).tensors("vae")
    assert open_model(path).tensors("vae", allow_non_finite=True)["w"][1].isnan()


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((2**40,), r"declares shape \(1099511627776,\), more than any model holds"),
        ((2**28,), "declares 1073741824 bytes but the file stores only 0"),
    ],
)
def test_declared_huge_dataset_is_not_allocated(model: Path, shape: tuple[int, ...], message: str) -> None:
    edit(
        model,
        lambda f: f["vae"].create_dataset("huge", shape=shape, maxshape=(None,), chunks=(1024,), dtype="f4"),
    )
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError, match=message):
            open_model(model).tensors("vae")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20


def test_unknown_dtype_tag(model: Path) -> None:
    edit(model, lambda f: f["vae"]["weights/enc.bias"].attrs.__setitem__("torch_dtype", "float8"))
    with pytest.raises(ModelFileError, match=r"damaged or truncated .*unknown stored dtype 'float8'"):
        open_model(model).tensors("vae")


def test_damaged_attrs(model: Path) -> None:
    edit(model, lambda f: f["vae"].attrs.__setitem__("config", "{not json"))
    with pytest.raises(ModelFileError, match="damaged or truncated"):
        open_model(model).attrs("vae")
    edit(model, lambda f: f["vae"].attrs.__setitem__("config", np.zeros(10)))
    with pytest.raises(ModelFileError, match="attribute 'config' is not a single value"):
        open_model(model).attrs("vae")


@pytest.mark.parametrize(
    "tree",
    [{"$tensor": "tree/9"}, {"$what": 1}, {"$dict": [[1.5, 2]]}, {"a": 1, "$b": 2}, {"$tuple": 3}],
)
def test_damaged_tree(tree: Any) -> None:
    with pytest.raises(ModelFileError, match="stored state is damaged"):
        unpack_tree({"tree": tree}, {})


# ---------------------------------------------------------------------------------------------
# Atomic writes and concurrent readers


@pytest.mark.parametrize(
    ("error", "raised"),
    [(RuntimeError("boom"), RuntimeError), (OSError(28, "No space left"), ModelFileError)],
)
def test_interrupted_write_leaves_old_file(
    model: Path, monkeypatch: pytest.MonkeyPatch, error: Exception, raised: type
) -> None:
    before = model.read_bytes()
    calls = []
    real = modelfile_writer._write_tensor

    def failing(group: h5py.Group, name: str, value: Any) -> None:
        calls.append(name)
        if len(calls) == 3:
            raise error
        real(group, name, value)

    monkeypatch.setattr(modelfile_writer, "_write_tensor", failing)
    tensors = {f"generator/{i}": torch.randn(64) for i in range(5)}
    with pytest.raises(raised):
        write(model, {"vocoder": Section(tensors=tensors), "vae": None}, create=False)
    assert len(calls) == 3
    assert model.read_bytes() == before
    assert sorted(p.name for p in model.parent.iterdir()) == ["rain.distillgan", "rain.distillgan.lock"]


def test_reader_sees_consistent_data_across_replace(model: Path) -> None:
    reader = open_model(model)
    with h5py.File(model, "r") as in_flight:  # a read in progress keeps the old inode
        write(model, {"vae": Section(tensors={"weights/enc.bias": torch.full((4,), 7.0)})}, create=False)
        assert torch.equal(torch.from_numpy(in_flight["vae/weights/enc.bias"][()]), weights()["enc.bias"])
    assert set(reader.tensors("vae")) == {"weights/enc.bias"}
    assert torch.equal(reader.tensors("vae")["weights/enc.bias"], torch.full((4,), 7.0))


def test_file_mode_kept(model: Path) -> None:
    model.chmod(0o640)
    write(model, {"vae": None}, create=False)
    assert model.stat().st_mode & 0o777 == 0o640


def test_a_rewrite_copies_only_real_stages_never_what_links_point_to(tmp_path: Path, model: Path) -> None:
    # links planted in a received model file, one of them to another of the user's models
    other = tmp_path / "other.distillgan"
    write(other, {"vae": Section(attrs={"config": {"secret": 42}}, tensors={"weights/w": torch.ones(8)})})

    def plant(f: h5py.File) -> None:
        f["vae_copy"] = h5py.ExternalLink(str(other), "/vae")
        f["alias"] = h5py.SoftLink("/vae")
        f.create_dataset("loose", data=np.zeros(3))
        f.create_group("not a stage!")

    edit(model, plant)
    write(model, {"dataset": Section(attrs={"root": "/moved"})}, create=False)
    with h5py.File(model, "r") as f:
        assert sorted(f) == ["dataset", "vae"]
    assert b"secret" not in model.read_bytes()
    assert torch.equal(open_model(model).tensors("vae", prefix="weights")["enc.bias"], weights()["enc.bias"])


def test_damaged_files_are_told_apart_from_files_that_cannot_be_read_now(tmp_path: Path, model: Path) -> None:
    """Only bytes that are no model at all may be replaced by a new model; a newer schema, a file
    another program holds open for writing or one without permission are kept and named."""
    garbage = tmp_path / "garbage.distillgan"
    garbage.write_bytes(b"not a model" * 100)
    truncated = tmp_path / "truncated.distillgan"
    truncated.write_bytes(model.read_bytes()[:600])
    for path in (garbage, truncated):
        with pytest.raises(DamagedModelFileError):
            open_model(path)
        with ModelLock(path, owner="test") as lock:
            with pytest.raises(DamagedModelFileError):  # never replaced unless asked
                write_model(path, {"vae": Section(attrs={"new": True})}, lock=lock)
            write_model(path, {"vae": Section(attrs={"new": True})}, lock=lock, replace_damaged=True)
        assert open_model(path).sections() == ["vae"] and open_model(path).attrs("vae") == {"new": True}

    newer = tmp_path / "newer.distillgan"
    newer.write_bytes(model.read_bytes())
    edit(newer, lambda f: f.attrs.__setitem__("schema_version", SCHEMA_VERSION + 1))
    before = newer.read_bytes()
    with (
        ModelLock(newer, owner="test") as lock,
        pytest.raises(ModelFileError, match="newer distillgan") as caught,
    ):
        write_model(newer, {"vae": None}, lock=lock, replace_damaged=True)
    assert not isinstance(caught.value, DamagedModelFileError) and newer.read_bytes() == before

    # HDF5's own file lock, as another program holding the file open for writing takes it
    fd = os.open(model, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(ModelFileError, match="open for writing in another program") as caught:
            open_model(model)
        assert not isinstance(caught.value, DamagedModelFileError)
    finally:
        os.close(fd)
    open_model(model)


# ---------------------------------------------------------------------------------------------
# Locking

HOLDER = "model 'rain' is in use by distillgan train vocoder \\(pid {pid} on {host}, since \\d\\d:\\d\\d:\\d\\d\\); wait for it to finish or stop it"


def test_lock_refuses_second_holder_in_same_process(model: Path) -> None:
    with ModelLock(model, owner="distillgan train vocoder") as lock:
        assert lock.held
        with pytest.raises(ModelLockedError, match=HOLDER.format(pid=os.getpid(), host=socket.gethostname())):
            ModelLock(model, owner="distillgan ui").acquire()
        with pytest.raises(RuntimeError):
            lock.acquire()
    assert not lock.held
    assert model.with_name("rain.distillgan.lock").read_bytes() == b""  # kept, but emptied
    with ModelLock(model, owner="again"):
        pass


def test_lock_refuses_other_thread(model: Path) -> None:
    taken, done = threading.Event(), threading.Event()

    def hold() -> None:
        with ModelLock(model, owner="distillgan train vocoder"):
            taken.set()
            done.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert taken.wait(10)
        with pytest.raises(ModelLockedError, match="in use by distillgan train vocoder"):
            ModelLock(model, owner="tab 2").acquire()
    finally:
        done.set()
        thread.join()
    ModelLock(model, owner="tab 2").acquire().release()


CHILD = """
import sys
from distillgan.modelfile import ModelLock
lock = ModelLock(sys.argv[1], owner="distillgan train vocoder").acquire()
print("ready", flush=True)
sys.stdin.read()
"""


def test_lock_refuses_other_process_and_frees_when_it_dies(model: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(model)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        with (
            pytest.raises(ModelLockedError, match=HOLDER.format(pid=child.pid, host=socket.gethostname())),
            ModelLock(model, owner="me"),
        ):
            pass
    finally:
        child.kill()  # SIGKILL: no chance to release, the kernel drops the flock
        child.wait(10)
    with ModelLock(model, owner="me") as lock:
        write_model(model, {"vae": None}, lock=lock)


def test_stale_lock_file_from_dead_process(model: Path) -> None:
    lock_file = model.with_name("rain.distillgan.lock")
    lock_file.write_text(
        '{"pid": 999999999, "host": "gone", "owner": "distillgan train vae", "since": "2020-01-01T00:00:00+00:00"}'
    )
    with ModelLock(model, owner="fresh") as lock:
        assert lock.held
        assert '"owner": "fresh"' in lock_file.read_text()


def test_a_lock_without_a_model_leaves_no_file_and_its_deletion_cannot_split_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "new.distillgan"
    lock_file = tmp_path / "new.distillgan.lock"
    first = ModelLock(path, owner="distillgan train vae").acquire()
    # another process opened the lock file a moment before the holder deleted it ...
    opened_before = os.open(lock_file, os.O_RDWR)
    first.release()  # no model file was written (a failed creation): no lock file is left
    assert not lock_file.exists()
    third = ModelLock(path, owner="distillgan ui").acquire()  # ... while a third locks a new file
    real_lock_file = ModelLock._lock_file
    calls: list[int] = []

    def late(self: ModelLock) -> int:
        calls.append(1)
        if len(calls) == 1:  # the first attempt flocks the deleted file, which nobody holds
            fcntl.flock(opened_before, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return opened_before
        return real_lock_file(self)

    monkeypatch.setattr(ModelLock, "_lock_file", late)
    with pytest.raises(ModelLockedError, match="in use by distillgan ui"):
        ModelLock(path, owner="distillgan train vae").acquire()  # never two holders at once
    assert len(calls) == 2
    third.release()
    assert not lock_file.exists()


def test_a_planted_lock_link_is_refused_and_its_target_kept(tmp_path: Path, model: Path) -> None:
    # a shared models folder: someone plants the lock file as a link to a file of the user's
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    lock_file = model.with_name("rain.distillgan.lock")
    lock_file.unlink()  # the one writing the model left
    lock_file.symlink_to(precious)
    with pytest.raises(ModelFileError, match=r"rain.distillgan.lock is a symbolic link"):
        ModelLock(model, owner="test").acquire()
    assert precious.read_text() == "keep me"
    lock_file.unlink()
    lock_file.symlink_to(tmp_path / "new-file")  # a dangling link would create a file elsewhere
    with pytest.raises(ModelFileError, match="is a symbolic link"):
        ModelLock(model, owner="test").acquire()
    assert not (tmp_path / "new-file").exists()
    lock_file.unlink()
    os.mkfifo(lock_file)
    with pytest.raises(ModelFileError, match="not a regular file"):
        ModelLock(model, owner="test").acquire()


@pytest.mark.parametrize(
    ("raw", "holder"),
    [
        (b"", "another process"),
        (b"\xff{", "another process"),
        (b'{"owner": "x\\u001b[31m", "pid": "1"}', "x[31m"),
        (b'{"pid": 5}', "another process (pid 5)"),
    ],
)
def test_lock_holder_description_is_defensive(raw: bytes, holder: str) -> None:
    assert modelfile_lock._describe_holder(raw) == holder


# ---------------------------------------------------------------------------------------------
# Finding models


def test_default_models_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path / "env"))
    assert default_models_dir() == tmp_path / "env"
    assert default_models_dir(tmp_path / "given") == tmp_path / "given"
    monkeypatch.delenv(MODELS_DIR_ENV)
    assert default_models_dir() == Path.home() / "distillgan" / "models"


def test_resolve_model(model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = model.parent
    assert resolve_model("rain", folder) == model
    assert resolve_model("new model", folder, must_exist=False) == folder / "new model.distillgan"
    assert resolve_model(str(model)) == model
    monkeypatch.chdir(folder)
    assert resolve_model("rain.distillgan") == Path("rain.distillgan")
    with pytest.raises(
        ModelFileError, match=rf"no model named 'snow' in {folder} \(see `distillgan model list`\)"
    ):
        resolve_model("snow", folder)
    with pytest.raises(ModelFileError, match="no model file at"):
        resolve_model("elsewhere/snow.distillgan")
    for bad in ("", ".hidden", "..", "a\\b", "tab\there", " pad", "x" * 201):
        with pytest.raises(ModelFileError, match="is not a valid model name"):
            resolve_model(bad, folder, must_exist=False)


def test_list_models_skips_temp_and_lock_files(model: Path) -> None:
    folder = model.parent
    for name in (
        ".rain.distillgan.tmp-1-ab",
        "rain.distillgan.lock",
        "notes.txt",
        "B.distillgan",
        "a.distillgan",
    ):
        (folder / name).write_bytes(b"")
    (folder / "dir.distillgan").mkdir()
    assert [p.name for p in list_models(folder)] == ["a.distillgan", "B.distillgan", "rain.distillgan"]
    assert list_models(folder / "missing") == []
