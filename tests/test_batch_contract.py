"""The batch contract (docs/batch_contract.md): validator messages, select, to_device, normalize."""

from __future__ import annotations

import pytest
import torch

from ssltk.batch import BatchContractError, episode_id, normalize, select, select_embeddings, to_device, validate_batch

B, T, V, H, W = 2, 3, 2, 4, 5


def good_batch():
    ts = torch.tensor([[1.0, 1.0, 1.3], [2.0, 2.0, 2.5]], dtype=torch.float64)
    return {
        "frames": torch.randint(0, 255, (B, T, V, 3, H, W), dtype=torch.uint8),
        "mask": torch.ones(B, T, V, dtype=torch.bool),
        "episode": torch.tensor([[7] * T, [9] * T]),
        "frame_index": torch.tensor([[10, 10, 13], [20, 20, 25]]),
        "timestamp": ts,
        "dt": (ts - ts[:, :1]).float(),
        "slots": ["t", "t:aug", "t+2..5f"],
        "cameras": ["front", "left"],
        "ego": {"speed": torch.zeros(B, T)},
    }


def test_good_batch_returns_btv():
    assert validate_batch(good_batch()) == (B, T, V)


@pytest.mark.parametrize("key", ["frames", "mask", "episode", "frame_index", "timestamp", "dt", "slots", "cameras"])
def test_missing_key_is_named(key):
    batch = good_batch()
    del batch[key]
    with pytest.raises(BatchContractError, match=f"missing key '{key}'"):
        validate_batch(batch)


@pytest.mark.parametrize(
    "key, bad, expect",
    [
        ("mask", torch.ones(B, T, dtype=torch.bool), r"batch\['mask'\] must have shape \[B, T, V\] = \(2, 3, 2\), got \(2, 3\)"),
        ("mask", torch.ones(B, T, V, dtype=torch.uint8), r"batch\['mask'\] must be torch.bool, got torch.uint8"),
        ("episode", torch.zeros(B, T + 1, dtype=torch.int64), r"batch\['episode'\] must have shape \[B, T\] = \(2, 3\), got \(2, 4\)"),
        ("episode", torch.zeros(B, T, dtype=torch.int32), r"batch\['episode'\] must be torch.int64, got torch.int32"),
        ("frame_index", [[0] * T] * B, r"batch\['frame_index'\] must have shape \[B, T\] = \(2, 3\), got list"),
        ("timestamp", torch.zeros(B, dtype=torch.float64), r"batch\['timestamp'\] must have shape \[B, T\] = \(2, 3\), got \(2,\)"),
        ("timestamp", torch.zeros(B, T, dtype=torch.int64), r"batch\['timestamp'\] must be torch.float64 or torch.float32"),
        ("dt", torch.zeros(T, B), r"batch\['dt'\] must have shape \[B, T\] = \(2, 3\), got \(3, 2\)"),
        ("frames", torch.zeros(B, T, 3, H, W, dtype=torch.uint8), r"batch\['frames'\] must be a tensor \[B, T, V, C, H, W\], got \(2, 3, 3, 4, 5\)"),
        ("frames", torch.zeros(B, T, V, 3, H, W, dtype=torch.int32), r"batch\['frames'\] must be uint8 or float, got torch.int32"),
        ("slots", ["t", "t:aug"], r"batch\['slots'\] must list T=3 slot names, got 2"),
        ("cameras", ["front"], r"batch\['cameras'\] must list V=2 camera names, got 1"),
        ("ego", {"speed": torch.zeros(B)}, r"batch\['ego'\]\['speed'\] must have shape \[B, T\] = \(2, 3\), got \(2,\)"),
    ],
)
def test_each_broken_key_names_key_and_expected_shape(key, bad, expect):
    batch = good_batch()
    batch[key] = bad
    with pytest.raises(BatchContractError, match=expect):
        validate_batch(batch)


def test_float_frames_after_normalize_are_valid():
    batch = good_batch()
    batch["frames"] = normalize(batch["frames"], (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert validate_batch(batch) == (B, T, V)


def test_contract_error_is_a_value_error_for_callers():
    assert issubclass(BatchContractError, ValueError)


def test_select_picks_slots_and_cameras_in_order():
    batch = good_batch()
    sub = select(batch, (2, 0), (1,))
    assert validate_batch(sub) == (B, 2, 1)
    assert sub["slots"] == ["t+2..5f", "t"] and sub["cameras"] == ["left"]
    assert torch.equal(sub["frames"][:, 0, 0], batch["frames"][:, 2, 1])
    assert torch.equal(sub["frame_index"], batch["frame_index"][:, [2, 0]])
    assert sub["ego"]["speed"].shape == (B, 2)
    emb = torch.randn(B, T, V, 8)
    assert torch.equal(select_embeddings(emb, (2, 0), (1,)), emb[:, [2, 0]][:, :, [1]])


def test_normalize_closed_form():
    frames = torch.tensor([0, 51, 255], dtype=torch.uint8).view(3, 1, 1).expand(3, 2, 2)
    out = normalize(frames, (0.0, 0.2, 0.5), (1.0, 0.5, 0.25))
    assert torch.allclose(out[:, 0, 0], torch.tensor([0.0, (0.2 - 0.2) / 0.5, (1.0 - 0.5) / 0.25]))


def test_to_device_moves_tensors_and_ego_keeps_lists():
    batch = good_batch()
    batch["skipped"] = {"corrupt_image": 1}
    out = to_device(batch, "cpu")
    assert out["slots"] is batch["slots"] and out["skipped"] == {"corrupt_image": 1}
    assert torch.equal(out["ego"]["speed"], batch["ego"]["speed"])
    assert validate_batch(out) == (B, T, V)


def test_episode_id_is_stable_and_non_negative():
    assert episode_id("ep0001") == episode_id("ep0001") != episode_id("ep0002")
    assert 0 <= episode_id("ep0001") < 2**63
    assert episode_id("abc") == int.from_bytes(__import__("hashlib").blake2b(b"abc", digest_size=8).digest(), "little") >> 1
