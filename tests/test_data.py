"""Tests of mtlcode.data: the Omniglot data set, alphabet splits and Lake's one-shot runs."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets.utils as tv_utils

from mtlcode import data
from mtlcode.data import Omniglot, data_root, lake_one_shot_runs, split_alphabets
from mtlcode.tasks import NWayKShot, TaskBatch

SMALL1 = "images_background_small1.zip"
SMALL1_URL = data.URL_BASE + SMALL1
BOTH = ("background_small1", "background_small2")
REAL_URLOPEN = urllib.request.urlopen  # taken before the fixture below disables it


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach the internet: any real download attempt fails as it would offline."""

    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", offline)


# ---------------------------------------------------------------------------- data_root


def test_data_root_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MTLCODE_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_root() == tmp_path / "xdg" / "mtlcode"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert data_root() == Path.home() / ".cache" / "mtlcode"
    monkeypatch.setenv("MTLCODE_DATA", str(tmp_path / "env"))
    assert data_root() == tmp_path / "env"
    assert data_root(tmp_path / "arg") == tmp_path / "arg"
    assert data_root(str(tmp_path)) == tmp_path


def test_root_may_be_the_parent_folder(omniglot_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MTLCODE_DATA", str(omniglot_dir.parent))  # .../data, archives in data/omniglot
    ds = Omniglot(sets="background_small1", download=False)
    assert ds.num_classes == 136
    assert ds.archives == [omniglot_dir / SMALL1]  # found in the omniglot/ subfolder
    assert len(Omniglot(omniglot_dir, sets="background_small1", download=False)) == 2720
    assert len(lake_one_shot_runs(download=False)) == 20


# ---------------------------------------------------------------------------- Omniglot


def test_small1(omniglot_dir: Path) -> None:
    ds = Omniglot(sets=("background_small1",))
    assert ds.alphabets == ["Balinese", "Early_Aramaic", "Greek", "Korean", "Latin"]
    assert ds.num_classes == ds.num_characters == len(ds.characters) == len(ds.alphabet_of) == 136
    assert len(ds) == len(ds.images) == len(ds.targets) == 2720
    assert ds.images.dtype == torch.float32 and ds.images.shape == (2720, 1, 28, 28)
    assert ds.images.min() == 0.0 and ds.images.max() == 1.0
    assert ds.images.mean() < 0.25  # strokes are 1.0 on a 0.0 background, not the other way round
    assert ds.images[:, :, 0, :].mean() < 0.05  # image borders are mostly paper
    assert torch.equal(torch.bincount(ds.targets), torch.full((136,), 20))  # contiguous, 20 drawers each
    assert all(
        name.startswith(alphabet + "/") for name, alphabet in zip(ds.characters, ds.alphabet_of, strict=True)
    )
    assert ds.characters[0] == "Balinese/character01"
    image, label = ds[25]
    assert isinstance(label, int) and label == 1
    assert image.shape == (1, 28, 28) and torch.equal(image, ds.images[25])
    assert torch.equal(ds[-1][0], ds.images[-1])
    with pytest.raises(IndexError):
        ds[2720]


def test_merge_does_not_duplicate_overlap(omniglot_dir: Path) -> None:
    ds = Omniglot(sets=BOTH)
    assert len(ds.alphabets) == 8
    assert ds.num_classes == len(set(ds.characters)) == 242
    assert len(ds) == 242 * 20
    assert torch.equal(torch.bincount(ds.targets), torch.full((242,), 20))
    for c in (0, 100, 241):  # no drawing twice within a class
        files = [f for f, t in zip(ds.drawings, ds.targets.tolist(), strict=True) if t == c]
        assert len(set(files)) == 20
    reverse = Omniglot(sets=tuple(reversed(BOTH)))  # class ids do not depend on the order of sets
    assert reverse.characters == ds.characters and torch.equal(reverse.images, ds.images)
    small2 = Omniglot(sets="background_small2")
    assert small2.num_classes == 156 and len(small2.alphabets) == 5


def test_image_size_transform_and_cache(omniglot_dir: Path) -> None:
    small = Omniglot(sets="background_small1", image_size=14, transform=lambda x: x * 2)
    image, _ = small[0]
    assert small.images.shape == (2720, 1, 14, 14)
    assert torch.equal(image, small.images[0] * 2)
    a = Omniglot(sets="background_small1")
    b = Omniglot(sets="background_small1")  # served from the cache: equal, but not shared memory
    assert torch.equal(a.images, b.images)
    a.images.zero_()
    assert b.images.sum() > 0


def test_rotations(omniglot_dir: Path) -> None:
    base = Omniglot(sets="background_small1")
    ds = Omniglot(sets="background_small1", rotations=True)
    n, c = len(base), base.num_classes
    assert ds.num_characters == c and ds.num_classes == 4 * c and len(ds) == 4 * n
    assert len(ds.characters) == len(ds.alphabet_of) == 4 * c
    assert torch.equal(torch.bincount(ds.targets), torch.full((4 * c,), 20))
    assert ds.characters[c + 5] == base.characters[5] + "/rot90"
    for i in (0, 37, n - 1):
        image, label = base[i]
        for r in range(4):
            rotated, rotated_label = ds[i + r * n]
            assert rotated_label == label + r * c
            assert torch.equal(rotated, torch.rot90(image, r, dims=(1, 2)))
            assert ds.alphabet_of[rotated_label] == base.alphabet_of[label]
    assert not torch.equal(ds[n][0], ds[0][0])  # a rotated character really differs


def test_alphabet_filter(omniglot_dir: Path) -> None:
    ds = Omniglot(sets=BOTH, alphabets=["Latin", "Greek"])
    assert ds.alphabets == ["Greek", "Latin"]
    assert ds.num_classes == 24 + 26 and len(ds) == 50 * 20
    assert set(ds.alphabet_of) == {"Greek", "Latin"}
    assert ds.targets.min() == 0 and ds.targets.max() == ds.num_classes - 1
    assert len(torch.unique(ds.targets)) == ds.num_classes
    with pytest.raises(ValueError, match=r"Klingon.*available.*Balinese"):
        Omniglot(sets=BOTH, alphabets=["Greek", "Klingon"])


def test_unknown_set(omniglot_dir: Path) -> None:
    with pytest.raises(
        ValueError, match=r"background_small3.*valid names.*'evaluation'.*'background_small1'"
    ):
        Omniglot(sets=("background_small3",))


def test_split_alphabets(omniglot_dir: Path) -> None:
    names = Omniglot(sets=BOTH).alphabets
    train, val, test = split_alphabets(names, seed=0)
    assert (len(train), len(val), len(test)) == (5, 2, 1)
    assert sorted(train + val + test) == names and len(set(train + val + test)) == 8
    assert split_alphabets(list(reversed(names)), seed=0) == (train, val, test)  # order-independent
    assert split_alphabets(names, seed=0) == (train, val, test)
    assert len({tuple(map(tuple, split_alphabets(names, seed=s))) for s in range(10)}) > 1
    assert [len(p) for p in split_alphabets(names, (4, 2, 2), seed=3)] == [4, 2, 2]
    assert [len(p) for p in split_alphabets(names[:3])] == [1, 1, 1]  # every part non-empty
    assert [len(p) for p in split_alphabets(names, (0.9, 0.1, 0.0))] == [7, 1, 0]
    with pytest.raises(ValueError, match="only 2"):
        split_alphabets(names[:2])
    with pytest.raises(ValueError, match="summing"):
        split_alphabets(names, (0.5, 0.2, 0.2))
    with pytest.raises(ValueError, match="distinct"):
        split_alphabets(["Greek", "Greek", "Latin"])
    ds = Omniglot(sets=BOTH, alphabets=train)
    assert ds.alphabets == train


def test_nway_kshot_on_omniglot(omniglot_dir: Path) -> None:
    tasks = NWayKShot(Omniglot(sets=("background_small1",)), ways=5, shots=1, queries=2)
    batch = tasks.sample(3, generator=torch.Generator().manual_seed(0))
    assert batch.support_x.shape == (3, 5, 1, 28, 28)
    assert batch.query_x.shape == (3, 10, 1, 28, 28)
    assert batch.support_y.tolist() == [[0, 1, 2, 3, 4]] * 3


# ---------------------------------------------------------------------------- errors


def copy_small1(omniglot_dir: Path, folder: Path, size: int | None = None, flip: int | None = None) -> Path:
    raw = bytearray((omniglot_dir / SMALL1).read_bytes())
    if flip is not None:
        raw[flip] ^= 0xFF
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / SMALL1
    target.write_bytes(bytes(raw[:size]))
    return target


@pytest.mark.parametrize("damage", ["one byte changed", "truncated"])
def test_corrupt_archive(omniglot_dir: Path, tmp_path: Path, damage: str) -> None:
    full = (omniglot_dir / SMALL1).stat().st_size
    if damage == "truncated":
        copy_small1(omniglot_dir, tmp_path, size=full // 2)
    else:
        copy_small1(omniglot_dir, tmp_path, flip=full // 3)
    with pytest.raises(RuntimeError) as info:
        Omniglot(tmp_path, sets="background_small1")
    message = str(info.value)
    actual = tv_utils.calculate_md5(tmp_path / SMALL1)
    for part in (SMALL1, str(tmp_path), "e704a628b5459e08445c13499850abc4", actual, "Delete", SMALL1_URL):
        assert part in message


def test_archive_in_omniglot_subfolder_is_checked_too(omniglot_dir: Path, tmp_path: Path) -> None:
    copy_small1(omniglot_dir, tmp_path / "omniglot", size=1000)
    with pytest.raises(RuntimeError, match="truncated"):
        Omniglot(tmp_path, sets="background_small1")


def assert_how_to_get(message: str, folder: Path) -> None:
    for part in (SMALL1, str(folder), str(folder / "omniglot"), SMALL1_URL, "MTLCODE_DATA"):
        assert part in message


def test_missing_without_download(
    omniglot_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MTLCODE_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError) as info:
        Omniglot(sets="background_small1", download=False)
    assert_how_to_get(str(info.value), tmp_path)
    assert "download=False" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_missing_and_offline_via_the_downloader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(data.archives, "_download", fail)
    with pytest.raises(FileNotFoundError) as info:
        Omniglot(tmp_path, sets="background_small1")
    assert_how_to_get(str(info.value), tmp_path)
    assert "name resolution" in str(info.value) and "offline" in str(info.value)


def test_missing_and_offline_real_downloader(tmp_path: Path) -> None:
    # The autouse fixture makes urllib fail, so the real downloader runs and fails.
    with pytest.raises(FileNotFoundError) as info:
        Omniglot(tmp_path / "new", sets="background_small1")
    assert_how_to_get(str(info.value), tmp_path / "new")
    assert not (tmp_path / "new" / SMALL1).exists()  # no partial file left behind
    with pytest.raises(FileNotFoundError, match=r"all_runs\.zip.*one-shot-classification/all_runs\.zip"):
        lake_one_shot_runs(tmp_path)


def test_download_lands_in_root(omniglot_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_download(url: str, path: Path) -> None:
        calls.append(url)
        shutil.copy(omniglot_dir / Path(url).name, path)

    monkeypatch.setattr(data.archives, "_download", fake_download)
    ds = Omniglot(tmp_path, sets="background_small1")
    assert calls == [SMALL1_URL] and (tmp_path / SMALL1).is_file() and ds.num_classes == 136
    Omniglot(tmp_path, sets="background_small1")  # now found: no second download
    assert calls == [SMALL1_URL]


def test_bad_download_is_reported_and_deleted(
    omniglot_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fake_download(url: str, path: Path) -> None:
        copy_small1(omniglot_dir, path.parent, size=5000)

    monkeypatch.setattr(data.archives, "_download", fake_download)
    with pytest.raises(RuntimeError, match=r"Downloaded images_background_small1.zip.*corrupt.*md5"):
        Omniglot(tmp_path, sets="background_small1")
    assert not (tmp_path / SMALL1).exists()


# ---------------------------------------------------------------------------- downloads from a local server


class LocalServer:
    """A server on 127.0.0.1 answering each request with ``reply``; None: accept and never answer."""

    def __init__(self, reply: bytes | None) -> None:
        self.reply = reply
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)  # so that the thread notices close() soon
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.listener.getsockname()[1]

    def _serve(self) -> None:
        while not self.closed.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:  # the listener was closed
                return
            # A client may hang up before reading everything (a HEAD-like probe): serve the next one.
            with connection, contextlib.suppress(OSError):
                self._answer(connection)

    def _answer(self, connection: socket.socket) -> None:
        if self.reply is None:
            self.closed.wait(30)  # hold the connection open, silent, until the test ends
            return
        connection.settimeout(5)
        request = b""
        while b"\r\n\r\n" not in request:
            chunk = connection.recv(4096)
            if not chunk:
                return
            request += chunk
        connection.sendall(self.reply)

    def close(self) -> None:
        self.closed.set()
        self.thread.join(5)
        self.listener.close()


def http_reply(body: bytes, length: int | None = None) -> bytes:
    size = len(body) if length is None else length
    return f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n".encode() + body


@pytest.fixture
def serve_small1(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[bytes | None], str]]:
    """``serve_small1(reply)``: point the small1 archive's URL at a local server that sends ``reply``.

    urllib is let through to 127.0.0.1 only; everything else stays offline. Downloads wait 5 s at
    most, so that a broken test fails rather than hangs.
    """
    servers: list[LocalServer] = []

    def local_only(request: object, *args: object, **kwargs: object) -> object:
        url = request.full_url if isinstance(request, urllib.request.Request) else str(request)
        if not url.startswith("http://127.0.0.1:"):
            raise urllib.error.URLError("network disabled in tests")
        return REAL_URLOPEN(request, *args, **kwargs)

    def start(reply: bytes | None) -> str:
        server = LocalServer(reply)
        servers.append(server)
        url = f"http://127.0.0.1:{server.port}/{SMALL1}"
        archive = dataclasses.replace(data._SETS["background_small1"], url=url)
        monkeypatch.setitem(data._SETS, "background_small1", archive)
        monkeypatch.setattr(urllib.request, "urlopen", local_only)
        monkeypatch.setattr(data, "DOWNLOAD_TIMEOUT", 5)
        return url

    yield start
    for server in servers:
        server.close()


def test_download_from_a_server_that_never_answers_times_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, serve_small1: Callable[[bytes | None], str]
) -> None:
    url = serve_small1(None)
    monkeypatch.setattr(data, "DOWNLOAD_TIMEOUT", 1)
    started = time.monotonic()
    with pytest.raises(FileNotFoundError) as info:
        Omniglot(tmp_path, sets="background_small1")
    assert time.monotonic() - started < 5
    message = str(info.value)
    for part in ("timed out", url, "1 s", "DOWNLOAD_TIMEOUT", SMALL1, str(tmp_path), "MTLCODE_DATA"):
        assert part in message
    assert list(tmp_path.iterdir()) == []  # no partial file


def test_download_timeout_is_a_minute_by_default() -> None:
    assert data.DOWNLOAD_TIMEOUT == 60


def test_interrupted_download_leaves_nothing(tmp_path: Path, serve_small1: Callable[[bytes | None], str]) -> None:
    serve_small1(http_reply(b"0123456789", length=1000))  # closes after 10 of 1000 bytes
    with pytest.raises(FileNotFoundError, match=r"10 of 1000 bytes"):
        Omniglot(tmp_path, sets="background_small1")
    assert list(tmp_path.iterdir()) == []


def test_real_downloader_fetches_and_checks(
    omniglot_dir: Path, tmp_path: Path, serve_small1: Callable[[bytes | None], str]
) -> None:
    serve_small1(http_reply((omniglot_dir / SMALL1).read_bytes()))
    ds = Omniglot(tmp_path / "new", sets="background_small1")
    assert ds.num_classes == 136 and ds.archives == [tmp_path / "new" / SMALL1]
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == [SMALL1]  # no .part left over


def test_real_downloader_deletes_a_corrupt_download(
    omniglot_dir: Path, tmp_path: Path, serve_small1: Callable[[bytes | None], str]
) -> None:
    serve_small1(http_reply((omniglot_dir / SMALL1).read_bytes()[:5000]))  # complete reply, wrong file
    with pytest.raises(RuntimeError, match=r"Downloaded images_background_small1.zip.*corrupt.*md5"):
        Omniglot(tmp_path, sets="background_small1")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- argument checks


@pytest.mark.parametrize("sets", [None, 5, ["background", None], [("background",)]])
def test_sets_must_be_names(sets: object) -> None:
    with pytest.raises(TypeError, match=r"sets must be .*name or a sequence of names.*'background'.*'evaluation'"):
        Omniglot(sets=sets, download=False)


@pytest.mark.parametrize("alphabets", [5, ["Greek", 3]])
def test_alphabets_must_be_names(alphabets: object) -> None:
    with pytest.raises(TypeError, match=r"alphabets must be .*name or a sequence of names"):
        Omniglot(sets="background_small1", alphabets=alphabets, download=False)


@pytest.mark.parametrize("size, error", [(True, TypeError), (14.0, TypeError), ("14", TypeError), (0, ValueError)])
def test_image_size_must_be_a_positive_integer(size: object, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"image_size must be an integer >= 1"):
        Omniglot(sets="background_small1", image_size=size, download=False)
    with pytest.raises(error, match=r"image_size must be an integer >= 1"):
        lake_one_shot_runs(image_size=size, download=False)


def test_numpy_integers_are_accepted(omniglot_dir: Path) -> None:
    ds = Omniglot(sets="background_small1", image_size=np.int64(14))
    assert ds.images.shape == (2720, 1, 14, 14) and type(ds.image_size) is int
    assert lake_one_shot_runs(image_size=np.int32(14))[0].support_x.shape == (1, 20, 1, 14, 14)
    names = [f"alphabet{i}" for i in range(8)]
    assert split_alphabets(names, seed=np.int64(3)) == split_alphabets(names, seed=3)
    assert split_alphabets(names, np.array([4, 2, 2]), seed=1) == split_alphabets(names, (4, 2, 2), seed=1)
    shares = np.array([0.5, 0.25, 0.25], dtype=np.float32)
    assert split_alphabets(names, shares, seed=1) == split_alphabets(names, (0.5, 0.25, 0.25), seed=1)


def test_split_alphabets_refuses_bool_seeds_and_shares() -> None:
    names = [f"alphabet{i}" for i in range(8)]
    with pytest.raises(TypeError, match=r"seed must be an integer, got True \(a bool\)"):
        split_alphabets(names, seed=True)
    with pytest.raises(ValueError, match="non-negative numbers"):
        split_alphabets(names, (True, 0.5, 0.5))


# ---------------------------------------------------------------------------- Lake's runs


def test_lake_one_shot_runs(omniglot_dir: Path) -> None:
    runs = lake_one_shot_runs()
    assert len(runs) == 20
    for run in runs:
        assert isinstance(run, TaskBatch) and len(run) == 1
        assert run.support_x.shape == run.query_x.shape == (1, 20, 1, 28, 28)
        assert run.support_x.dtype == torch.float32
        assert run.query_x.min() >= 0.0 and run.query_x.max() <= 1.0
        assert run.support_y.tolist() == [list(range(20))]
        assert sorted(run.query_y[0].tolist()) == list(range(20))  # each class queried once
    assert runs[0].query_y[0, :3].tolist() == [7, 8, 1]  # run01: item01 -> class08, item02 -> class09, ...
    assert sum(not torch.equal(r.query_y[0], torch.arange(20)) for r in runs) == 20
    # The answer key matches the pictures: nearest-pixel-neighbour beats chance (5%) by far.
    hits = sum(
        (torch.cdist(r.query_x[0].flatten(1), r.support_x[0].flatten(1)).argmin(1) == r.query_y[0]).sum()
        for r in runs
    )
    assert hits / 400 > 0.12


def test_lake_runs_corrupt(omniglot_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "all_runs.zip").write_bytes((omniglot_dir / "all_runs.zip").read_bytes()[:1000])
    with pytest.raises(RuntimeError, match=r"all_runs\.zip.*e8996daecdf12afeeb4a53a179f06b19"):
        lake_one_shot_runs(tmp_path, download=False)
