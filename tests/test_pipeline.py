"""build_loader end to end on tiny generated shards: views, masks, determinism, ranks, bad data."""

from __future__ import annotations

import tarfile
from collections import Counter
from pathlib import Path

import pytest
import torch

from ssltk.batch import episode_id, validate_batch
from ssltk.data.shards import iter_segments, resolve_shards
from ssltk.data.shards.skips import BadDataError
from ssltk.data.stream.pipeline import build_loader
from ssltk.distributed import resolve_rank_world
from ssltk.errors import UnknownNameError, UsageError
from ssltk.testing.shards import identify, write_raw_tar, write_tiny_shards
from ssltk.views import DeltaRange, ViewPlan, ViewRequest

CAMS = ("front", "left", "right")


def make_plan(*deltas, cameras="anchor", aug=False, data_cameras=CAMS):
    req = ViewRequest(cameras=cameras, augmented_copy=aug, deltas=tuple(DeltaRange.parse(d) for d in deltas))
    return ViewPlan.build({"o": req}, list(data_cameras))


def loader(data, plan, **kw):
    opts = dict(batch_size=4, image_size=16, steps_per_epoch=6, shuffle_buffer=16, augment=False, seed=0)
    opts.update(kw)
    return build_loader(data, plan, **opts)


def collect(ld, epochs=1):
    out = []
    for _ in range(epochs):
        for batch in ld:
            assert validate_batch(batch)
            out.append(batch)
    return out


def ep_of(key: str) -> int:
    return int(key.split("/")[0][2:])


def check_identity(batch, data_cameras=CAMS):
    """Every valid cell shows exactly the (episode, frame, camera) its indices claim; masked cells are zero."""
    B, T, V = batch["mask"].shape
    for b in range(B):
        ep = ep_of(batch["keys"][b])
        assert batch["episode"][b].tolist() == [episode_id(f"ep{ep:04d}")] * T
        for t in range(T):
            for v in range(V):
                if batch["mask"][b, t, v]:
                    cam = data_cameras.index(batch["cameras"][v])
                    assert identify(batch["frames"][b, t, v]) == (ep, int(batch["frame_index"][b, t]), cam)
                else:
                    assert not batch["frames"][b, t, v].any()


@pytest.fixture
def shards(tmp_path):
    write_tiny_shards(tmp_path / "d", episodes=4, length=[12, 9, 20, 16], cameras=CAMS, segment_length=8, overlap=2)
    return tmp_path / "d"


def test_per_frame_view_shapes_and_identity(shards):
    batches = collect(loader(shards, make_plan()))
    assert len(batches) == 6
    for b in batches:
        assert b["frames"].shape == (4, 1, 1, 3, 16, 16) and b["frames"].dtype == torch.uint8
        assert b["slots"] == ["t"] and b["cameras"] == ["front"] and b["mask"].all()
        assert torch.equal(b["dt"], torch.zeros(4, 1))
        assert b["ego"]["speed"].shape == (4, 1) and torch.isnan(b["ego"]["steering"]).all()
        eps = torch.tensor([ep_of(k) for k in b["keys"]], dtype=torch.float32)
        assert torch.equal(b["ego"]["speed"][:, 0], 100 * eps + b["frame_index"][:, 0].float())
        check_identity(b)


def test_pairs_delta_in_frames(shards):
    plan = make_plan("2-4")
    seen = Counter()
    for b in collect(loader(shards, plan, steps_per_epoch=20)):
        assert b["frames"].shape == (4, 2, 1, 3, 16, 16) and b["slots"] == ["t", "t+2..4f"]
        check_identity(b)
        diff = (b["frame_index"][:, 1] - b["frame_index"][:, 0]).tolist()
        assert all(2 <= d <= 4 for d in diff)
        assert torch.allclose(b["dt"][:, 1], torch.tensor(diff, dtype=torch.float32) / 10)
        seen.update(diff)
    assert set(seen) == {2, 3, 4}


def test_delta_in_seconds_across_frame_rates(tmp_path):
    write_tiny_shards(tmp_path, episodes=2, length=24, fps=[10.0, 20.0], cameras=("front",), segment_length=16)
    plan = make_plan("0.2s-0.4s", data_cameras=("front",))
    per_fps = {10: set(), 20: set()}
    for b in collect(loader(tmp_path, plan, steps_per_epoch=15), epochs=1):
        check_identity(b, ("front",))
        for i, key in enumerate(b["keys"]):
            if not b["mask"][i, 1, 0]:
                continue
            fps = 10 if ep_of(key) == 0 else 20
            frames = int(b["frame_index"][i, 1] - b["frame_index"][i, 0])
            dt = float(b["dt"][i, 1])
            assert 0.2 - 1e-6 <= dt <= 0.4 + 1e-6 and dt == pytest.approx(frames / fps)
            per_fps[fps].add(frames)
    assert per_fps[10] <= {2, 3, 4} and per_fps[20] <= set(range(4, 9)) and max(per_fps[20]) > 4


def test_multi_camera_view(shards):
    plan = make_plan(cameras="all")
    for b in collect(loader(shards, plan)):
        assert b["frames"].shape == (4, 1, 3, 3, 16, 16) and b["cameras"] == list(CAMS)
        check_identity(b)


def test_clip_of_fixed_deltas(shards):
    plan = make_plan(1, 2, 3)
    assert plan.slots == ["t", "t+1f", "t+2f", "t+3f"]
    for b in collect(loader(shards, plan)):
        check_identity(b)
        fi = b["frame_index"]
        assert torch.equal(fi - fi[:, :1], torch.tensor([0, 1, 2, 3]).expand(4, 4))
        # a partner is masked only where the segment is too short (episode 1's last segment has 3 steps)
        for i, key in enumerate(b["keys"]):
            assert b["mask"][i].all() or key == "ep0001/s000006"


def test_partner_never_crosses_an_episode(tmp_path):
    write_tiny_shards(tmp_path, episodes=6, length=[5, 3, 7, 4, 6, 2], segment_length=4, overlap=1, cameras=("front",))
    plan = make_plan(2, 3, data_cameras=("front",))
    lengths = [5, 3, 7, 4, 6, 2]
    invalid = 0
    for b in collect(loader(tmp_path, plan, steps_per_epoch=30)):
        check_identity(b, ("front",))  # a valid partner shows a frame of the anchor's own episode
        for i, key in enumerate(b["keys"]):
            ep = ep_of(key)
            valid = b["mask"][i, :, 0]
            assert (b["frame_index"][i][valid] < lengths[ep]).all()
            invalid += int((~valid).sum())
    assert invalid > 0  # short segments do produce masked partners


def test_missing_frames_are_masked_and_zero(tmp_path):
    drop = {"left": [1, 3, 5, 7], "front": [4]}
    write_tiny_shards(tmp_path, episodes=2, length=10, cameras=("front", "left"), drop=drop)
    plan = make_plan(1, cameras="all", data_cameras=("front", "left"))
    masked = 0
    for b in collect(loader(tmp_path, plan, steps_per_epoch=10)):
        check_identity(b, ("front", "left"))
        for i in range(4):
            for t in range(2):
                for v, cam in enumerate(b["cameras"]):
                    expect = int(b["frame_index"][i, t]) not in drop[cam]
                    assert bool(b["mask"][i, t, v]) == expect
                    masked += not expect
    assert masked > 0


def test_batches_filled_group_by_group_and_a_partial_last_batch():
    """Cells copied in as each group arrives give the contract batch; a partial last batch is its own tensor."""
    from ssltk.data.stream.batching import Batch
    from ssltk.data.stream.cells import Decoded
    from ssltk.data.stream.sampling import RawView
    from ssltk.data.stream.stages import Context

    plan = make_plan(1, cameras="all", data_cameras=("front", "left"))  # T = 2, V = 2
    g = torch.Generator().manual_seed(0)

    def item(i):
        view = RawView(key=f"k{i}", url="mem", episode="ep", refs=[[None, None], [None, None]], images={},
                       frame_index=[i, i + 1], timestamp=[0.0, 0.1], dt=[0.0, 0.1], ego={})  # fmt: skip
        cells = []
        for t in range(2):
            for v in range(2):
                if (i + t + v) % 3:  # the rest stay masked
                    hwc = (i + t) % 2  # channels-last (as the resize kernel leaves a frame) or planar
                    img = torch.randint(0, 256, (8, 8, 3) if hwc else (3, 8, 8), generator=g, dtype=torch.uint8)
                    cells.append((t, v, img.permute(2, 0, 1) if hwc else img))
        return Decoded(view, cells)

    items = [item(i) for i in range(7)]
    batcher = Batch(Context(0, 0, 1, False, False, 1), plan, 3, 8, True, [])
    batches = list(batcher(iter([items[0:2], items[2:5], items[5:7]])))  # groups across batch boundaries
    assert [b["keys"] for b in batches] == [["k0", "k1", "k2"], ["k3", "k4", "k5"], ["k6"]]
    for n, b in enumerate(batches):
        frames = b["frames"]
        assert frames.shape == (len(b["keys"]), 2, 2, 3, 8, 8)
        assert frames.untyped_storage().nbytes() == frames.numel()  # not a view of a full-size buffer
        for j, it in enumerate(items[3 * n : 3 * n + 3]):
            expect = torch.zeros(2, 2, 3, 8, 8, dtype=torch.uint8)
            mask = torch.zeros(2, 2, dtype=torch.bool)
            for t, v, img in it.cells:
                expect[t, v], mask[t, v] = img, True
            assert torch.equal(frames[j], expect) and torch.equal(torch.as_tensor(b["mask"][j]), mask)


def same(a, b):
    return all(torch.equal(x["frames"], y["frames"]) and x["keys"] == y["keys"] for x, y in zip(a, b)) and len(a) == len(b)


def test_deterministic_for_a_seed_and_epochs_differ(shards):
    plan = make_plan("1-3", aug=True)
    kw = dict(augment=True, samples_per_segment=2, steps_per_epoch=4)
    a = collect(loader(shards, plan, **kw), epochs=2)
    b = collect(loader(shards, plan, **kw), epochs=2)
    c = collect(loader(shards, plan, seed=1, **kw), epochs=2)
    assert same(a, b)
    assert not same(a, c)
    assert not same(a[:4], a[4:])  # epoch 2 draws new shards, anchors and augmentations


@pytest.mark.slow
def test_deterministic_with_workers(shards):
    plan = make_plan(2)
    a = collect(loader(shards, plan, num_workers=2, steps_per_epoch=5), epochs=2)
    b = collect(loader(shards, plan, num_workers=2, steps_per_epoch=5), epochs=2)
    assert len(a) == 10 and same(a, b)


def test_samples_per_segment_keeps_groups_together(shards):
    for b in collect(loader(shards, make_plan(), batch_size=8, samples_per_segment=4)):
        keys = b["keys"]
        assert len(set(keys[:4])) == 1 and len(set(keys[4:])) == 1
    with pytest.raises(UsageError, match="multiple of samples_per_segment 3"):
        loader(shards, make_plan(), batch_size=8, samples_per_segment=3)


def test_augmentation_is_independent_per_slot(shards):
    plan = make_plan(aug=True)
    batches = collect(loader(shards, plan, augment=True))
    differs = sum(not torch.equal(b["frames"][i, 0], b["frames"][i, 1]) for b in batches for i in range(4))
    assert differs >= 20  # t and t:aug: same decoded frame, independent crops and colours
    plain = collect(loader(shards, plan, augment=False))
    assert all(torch.equal(b["frames"][:, 0], b["frames"][:, 1]) for b in plain)


def all_keys(path):
    return sorted(sample_key for _, m, _ in iter_segments(resolve_shards(path)) for sample_key in [f"{m.episode}/s{m.start:06d}"])


def test_finite_mode_reads_every_segment_once_split_over_ranks(shards):
    plan = make_plan()
    keys = []
    for rank in range(2):
        ld = loader(shards, plan, resampled=False, rank=rank, world_size=2, steps_per_epoch=None)
        batches = collect(ld)
        assert all(len(b["keys"]) == 4 for b in batches[:-1])  # last batch may be partial
        keys += [k for b in batches for k in b["keys"]]
    assert sorted(keys) == all_keys(shards)
    with pytest.raises(TypeError):
        len(ld)


@pytest.mark.slow
def test_equal_batch_counts_two_ranks_two_workers_three_shards(tmp_path):
    write_tiny_shards(tmp_path, episodes=3, length=8, cameras=("front",), segments_per_shard=1)
    assert len(resolve_shards(tmp_path)) == 3
    plan = make_plan(1, data_cameras=("front",))
    keys = []
    for rank in range(2):
        ld = loader(tmp_path, plan, rank=rank, world_size=2, num_workers=2, steps_per_epoch=5, batch_size=2)
        counts = [len(collect(ld)) for _ in range(2)]
        assert counts == [5, 5] and len(ld) == 5
        keys.append([k for b in collect(ld) for k in b["keys"]])
    assert keys[0] != keys[1]  # ranks draw different streams


@pytest.mark.slow
def test_fewer_shards_than_workers(tmp_path):
    write_tiny_shards(tmp_path, episodes=1, length=8, cameras=("front",))
    assert len(resolve_shards(tmp_path)) == 1
    ld = loader(tmp_path, make_plan(data_cameras=("front",)), num_workers=2, steps_per_epoch=7)
    assert len(collect(ld)) == 7


def test_rank_world_from_env(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert resolve_rank_world() == (1, 3)
    assert resolve_rank_world(0, 2) == (0, 2)
    with pytest.raises(UsageError, match="rank 3 is not in"):
        resolve_rank_world(3, 2)


def test_startup_errors(shards):
    with pytest.raises(UsageError, match=r"Δt t\+9f needs segments of at least 10 timesteps, but the data's segments have 8"):
        loader(shards, make_plan(9))
    with pytest.raises(UnknownNameError, match="unknown camera 'rear'"):
        loader(shards, ViewPlan(["t"], [None], ["rear"]))
    with pytest.raises(UsageError, match="steps_per_epoch"):
        loader(shards, make_plan(), steps_per_epoch=None)


# ---------------------------------------------------------------- bad data
def members(path):
    with tarfile.open(path) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]


def corrupt(path: Path, kind: str) -> str:
    """Make one shard bad in the way ``kind`` names; return the affected key (or '')."""
    mem = members(path)
    first_key = mem[0][0].split(".")[0]
    if kind == "truncated_tar":  # cut inside a member's data
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2 + 100])
        return ""
    if kind == "truncated_tar_at_header":  # tarfile reads this as a short, complete archive
        data = path.read_bytes()
        path.write_bytes(data[: 512 * (len(data) // 1024)])
        return ""
    if kind == "not_a_tar":
        path.write_bytes(b"this is not a tar file\n" * 100)
    elif kind == "empty_shard":
        write_raw_tar(path, [])
    elif kind == "missing_shard":
        path.unlink()
    elif kind == "no_json":
        write_raw_tar(path, [(n, d) for n, d in mem if not (n.startswith(first_key + ".") and n.endswith(".json"))])
    elif kind == "bad_json":
        write_raw_tar(path, [(n, b"{not json" if n == first_key + ".json" else d) for n, d in mem])
    elif kind == "corrupt_image":
        write_raw_tar(path, [(n, b"\xff\xd8garbage" if n.startswith(first_key + ".") and n.endswith(".jpg") else d) for n, d in mem])
    return first_key


@pytest.fixture
def two_shards(tmp_path):
    write_tiny_shards(tmp_path, episodes=2, length=8, segment_length=4, segments_per_shard=2, cameras=("front",))
    return tmp_path, resolve_shards(tmp_path)


KINDS = ["truncated_tar", "not_a_tar", "empty_shard", "missing_shard", "no_json", "bad_json", "corrupt_image"]


@pytest.mark.parametrize("kind", KINDS + ["truncated_tar_at_header"])
def test_bad_data_is_skipped_and_counted(two_shards, kind):
    path, urls = two_shards
    good = all_keys(path)
    key = corrupt(Path(urls[1]), kind)
    kind = kind.replace("_at_header", "")
    ld = loader(path, make_plan(data_cameras=("front",)), resampled=False, steps_per_epoch=None, batch_size=1)
    got = [k for b in collect(ld) for k in b["keys"]]
    assert ld.skipped[kind] == 1 and sum(ld.skipped.values()) == 1
    assert set(got) < set(good) and (key == "" or key not in got)
    assert all(k in got for k in good[:2])  # the good shard is untouched


@pytest.mark.slow
def test_skip_counts_sum_over_workers(tmp_path):
    write_tiny_shards(tmp_path, episodes=4, length=8, segment_length=4, segments_per_shard=2, cameras=("front",))
    urls = resolve_shards(tmp_path)
    corrupt(Path(urls[1]), "corrupt_image")
    corrupt(Path(urls[2]), "no_json")
    corrupt(Path(urls[3]), "truncated_tar")
    ld = loader(tmp_path, make_plan(data_cameras=("front",)), resampled=False, steps_per_epoch=None, batch_size=1, num_workers=2)
    collect(ld)
    assert {k: v for k, v in ld.skipped.items() if v} == {"corrupt_image": 1, "no_json": 1, "truncated_tar": 1}


@pytest.mark.parametrize("workers", [0, pytest.param(2, marks=pytest.mark.slow)])
def test_strict_mode_stops_with_one_line(two_shards, workers):
    path, urls = two_shards
    key = corrupt(Path(urls[1]), "corrupt_image")
    ld = loader(path, make_plan(data_cameras=("front",)), resampled=False, steps_per_epoch=None, strict=True, num_workers=workers)
    with pytest.raises(BadDataError) as info:
        collect(ld)
    msg = str(info.value)
    assert "\n" not in msg and urls[1] in msg and key in msg and "corrupt image" in msg
    ld.close()  # the raised exception keeps this frame (and the loader) alive; stop the workers now
    with pytest.raises(UsageError, match="closed"):
        collect(ld)


def test_strict_names_bad_shard_at_startup(two_shards):
    path, urls = two_shards
    corrupt(Path(urls[0]), "not_a_tar")
    with pytest.raises(BadDataError, match=f"shard is not a tar file in shard {urls[0]}"):
        loader(path, make_plan(data_cameras=("front",)), strict=True)


def test_all_images_corrupt_does_not_hang(two_shards):
    path, urls = two_shards
    for u in urls:
        corrupt(Path(u), "corrupt_image")  # only each shard's first segment
    ld = loader(path, make_plan(data_cameras=("front",)), samples_per_segment=1, batch_size=1)
    assert len(collect(ld)) == 6  # the other segments still feed the stream
    ld = loader(path, make_plan(data_cameras=("front",)), samples_per_segment=1, batch_size=1, augment=True)
    assert len(collect(ld)) == 6  # with augmentation too (a group with no usable cell is skipped)
    for u in urls:
        write_raw_tar(Path(u), [(n, b"\xff\xd8bad" if n.endswith(".jpg") else d) for n, d in members(Path(u))])
    with pytest.raises(UsageError, match="without one usable sample"):
        collect(loader(path, make_plan(data_cameras=("front",)), batch_size=1))


@pytest.mark.slow
def test_no_usable_data_in_a_worker_is_one_line(two_shards):
    path, urls = two_shards
    for u in urls:
        write_raw_tar(Path(u), [(n, b"\xff\xd8bad" if n.endswith(".jpg") else d) for n, d in members(Path(u))])
    ld = loader(path, make_plan(data_cameras=("front",)), batch_size=1, num_workers=1)
    with pytest.raises(UsageError, match="without one usable sample") as info:
        collect(ld)
    assert "\n" not in str(info.value)
    ld.close()


RANK_SCRIPT = """
import sys
from ssltk.data.stream.pipeline import build_loader
from ssltk.views import ViewPlan, ViewRequest, DeltaRange
plan = ViewPlan.build({"o": ViewRequest(deltas=(DeltaRange(1, 2),))}, ["front"])
ld = build_loader(sys.argv[1], plan, batch_size=2, image_size=16, steps_per_epoch=5, num_workers=2, shuffle_buffer=8)
for epoch in range(2):
    keys = [k for b in ld for k in b["keys"]]
    print(len(keys) // 2, ld.settings["rank"], ld.settings["world_size"], ",".join(keys))
"""


@pytest.mark.slow
def test_ranks_from_env_in_subprocesses_get_equal_counts(tmp_path):
    import os
    import subprocess
    import sys

    write_tiny_shards(tmp_path / "d", episodes=3, length=8, cameras=("front",), segments_per_shard=1)
    outputs = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": "2"}
        out = subprocess.run([sys.executable, "-c", RANK_SCRIPT, str(tmp_path / "d")], env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        outputs.append([line.split(" ") for line in out.stdout.splitlines()])
    for rank, lines in enumerate(outputs):
        assert [(n, r, w) for n, r, w, _ in lines] == [("5", str(rank), "2")] * 2
    assert outputs[0][0][3] != outputs[1][0][3]  # different streams per rank


def test_frames_equal_the_per_frame_transform_of_the_stored_jpeg(tmp_path):
    """Batched resize and the channels-last collate give exactly decode -> centre square -> resize."""
    import random

    from ssltk.data.stream.augment import FrameTransform
    from ssltk.data.stream.decode import decode_jpeg

    write_tiny_shards(tmp_path / "d", episodes=2, length=10, cameras=("front", "left"), image_size=(36, 60), segment_length=5)
    stored = {}
    for _, meta, imgs in iter_segments(resolve_shards(tmp_path / "d")):
        for (i, cam), data in imgs.items():
            stored[(meta.episode, int(meta.frames[i]), cam)] = data
    plan = make_plan("1-2", cameras="all", data_cameras=("front", "left"))
    transform = FrameTransform(20)
    batches = collect(loader(tmp_path / "d", plan, image_size=20, steps_per_epoch=3, samples_per_segment=2))
    checked = 0
    for batch in batches:
        assert batch["frames"].is_contiguous()
        for b, key in enumerate(batch["keys"]):
            episode = key.split("/")[0]
            for t in range(batch["mask"].shape[1]):
                for v, cam in enumerate(batch["cameras"]):
                    if batch["mask"][b, t, v]:
                        data = stored[(episode, int(batch["frame_index"][b, t]), cam)]
                        want = transform(decode_jpeg(data, 20), random.Random(0))
                        assert torch.equal(batch["frames"][b, t, v], want)
                        checked += 1
    assert checked > 20


def test_rig_flip_mirrors_frames_swaps_left_and_right_and_negates_yaw_like_fields(shards):
    plan = make_plan(cameras="all")
    still = {"crop_scale": (1.0, 1.0), "jitter_p": 0.0, "grayscale_p": 0.0, "blur_p": 0.0}  # geometry only
    plain = collect(loader(shards, plan, augment={**still, "rig_flip_p": 0.0}))
    flipped = collect(loader(shards, plan, augment={**still, "rig_flip_p": 1.0}))
    seen = {}
    for b in plain:
        for i, key in enumerate(b["keys"]):
            seen[(key, int(b["frame_index"][i, 0]))] = (b["frames"][i], {f: v[i] for f, v in b["ego"].items()})
    matched = 0
    for b in flipped:
        assert b["cameras"] == list(CAMS)
        for i, key in enumerate(b["keys"]):
            ref = seen.get((key, int(b["frame_index"][i, 0])))
            if ref is None:
                continue
            frames, ego = ref
            matched += 1
            for v, mirror in enumerate((0, 2, 1)):  # front stays, left <-> right
                assert torch.equal(b["frames"][i, :, mirror], frames[:, v].flip(-1))
            for f, value in b["ego"].items():
                sign = -1 if f in ("yaw_rate", "steering", "lane_offset", "curvature", "y", "heading") else 1
                torch.testing.assert_close(value[i], sign * ego[f], equal_nan=True)
    assert matched >= 4


def test_rig_flip_negates_the_yaw_like_ego_fields_of_a_sample():
    from ssltk.data.stream.cells import Decode as _Decode
    from ssltk.data.stream.cells import Decoded as _Decoded
    from ssltk.data.stream.sampling import RawView

    dec = object.__new__(_Decode)
    dec.mirror = [0, 2, 1]
    ego = {"speed": [5.0, 6.0], "yaw_rate": [0.1, -0.2], "steering": [0.05, 0.0], "lane_offset": [0.4, 0.3],
           "heading": [1.0, 1.1], "y": [2.0, 2.5], "x": [3.0, 4.0]}  # fmt: skip
    view = RawView("k", "u", "ep", [[(0, "front")]], {}, [0, 1], [0.0, 0.1], [0.0, 0.1], ego)
    img = torch.arange(12, dtype=torch.uint8).reshape(1, 3, 4).expand(3, 3, 4)
    out = dec._mirrored(_Decoded(view, [(0, 1, img)]))
    assert out.cells[0][1] == 2 and torch.equal(out.cells[0][2], img.flip(-1))
    assert out.view.ego["yaw_rate"] == [-0.1, 0.2] and out.view.ego["lane_offset"] == [-0.4, -0.3]
    assert out.view.ego["heading"] == [-1.0, -1.1] and out.view.ego["y"] == [-2.0, -2.5]
    assert out.view.ego["speed"] == [5.0, 6.0] and out.view.ego["x"] == [3.0, 4.0]
    assert view.ego["yaw_rate"] == [0.1, -0.2]  # the original sample is untouched


def test_rig_flip_needs_both_cameras_of_a_pair(shards):
    plan = make_plan(cameras=("front", "left"))
    with pytest.raises(UsageError, match="no mirror partner"):
        loader(shards, plan, augment={"rig_flip_p": 0.5})
