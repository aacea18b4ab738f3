"""layout-prediction: thumbnails against a loop, the loss against a naive reference, masks, the future version."""

from __future__ import annotations

import pytest
import torch

import ssltk
from ssltk.testing import check_objective, fake_batch_for
from ssltk_builtins.layout_prediction import (
    EDGE_EPS,
    PER_IMAGE_EPS,
    PIXEL_MEAN,
    PIXEL_STD,
    LayoutPrediction,
    edge_maps,
    near_edges,
    thumbnails,
)

D = 10


def _naive_thumbnail(img: torch.Tensor, side: int) -> list[list[list[float]]]:
    """``uint8 [C, H, W]`` with H, W multiples of ``side`` -> block means, standardised, by loops."""
    C, H, W = img.shape
    bh, bw = H // side, W // side
    out = []
    for c in range(C):
        rows = []
        for i in range(side):
            row = []
            for j in range(side):
                block = [float(img[c, i * bh + a, j * bw + b]) / 255 for a in range(bh) for b in range(bw)]
                row.append((sum(block) / len(block) - PIXEL_MEAN) / PIXEL_STD)
            rows.append(row)
        out.append(rows)
    return out


def test_thumbnails_are_standardised_block_means():
    g = torch.Generator().manual_seed(0)
    assert thumbnails(torch.zeros(2, 3, 3, 12, 8, dtype=torch.uint8), 4).shape == (2, 3, 3, 4, 4)  # leading dims kept
    frames = torch.randint(0, 256, (2, 3, 16, 16), generator=g, dtype=torch.uint8)
    th = thumbnails(frames, 4)
    for b in range(2):
        torch.testing.assert_close(th[b], torch.tensor(_naive_thumbnail(frames[b], 4)), rtol=0, atol=1e-5)
    gray = thumbnails(frames, 4, gray=True)
    assert gray.shape == (2, 1, 4, 4)
    torch.testing.assert_close(gray[:, 0], th.mean(dim=1) + 0.0, rtol=0, atol=1e-5)  # grey = mean of channels


def test_per_image_thumbnails_drop_colour_and_brightness():
    g = torch.Generator().manual_seed(1)
    frames = torch.randint(0, 200, (3, 3, 16, 16), generator=g, dtype=torch.uint8)
    th = thumbnails(frames, 4, per_image=True)
    assert th.mean(dim=(-2, -1)).abs().max() < 1e-5  # every channel of every thumbnail has mean 0
    raw = thumbnails(frames, 4)
    sd = (raw * PIXEL_STD).std(dim=(-2, -1))
    torch.testing.assert_close(th.std(dim=(-2, -1)), sd / (sd + PER_IMAGE_EPS), rtol=1e-4, atol=1e-5)
    brighter = (frames.int() + 40).to(torch.uint8)  # same layout, brighter: the same target
    torch.testing.assert_close(thumbnails(brighter, 4, per_image=True), th, rtol=0, atol=1e-4)
    flat = torch.full((1, 3, 16, 16), 90, dtype=torch.uint8)
    assert thumbnails(flat, 4, per_image=True).abs().max() < 1e-4  # a flat image is all zeros, not noise


def _naive_edges(img: torch.Tensor, side: int) -> torch.Tensor:
    """``uint8 [C, H, W]`` -> ``[2, side, side]`` by loops: |grey(x+1) - grey(x)| and |grey(y+1) - grey(y)|,
    block means over the (W-1)- and (H-1)-wide difference images, then (e - mean) / (std + eps) over both."""
    C, H, W = img.shape
    grey = [[sum(float(img[c, i, j]) for c in range(C)) / C / 255 for j in range(W)] for i in range(H)]
    gx = [[abs(grey[i][j + 1] - grey[i][j]) for j in range(W - 1)] for i in range(H)]
    gy = [[abs(grey[i + 1][j] - grey[i][j]) for j in range(W)] for i in range(H - 1)]

    e = torch.tensor([_naive_pool(gx, side, side), _naive_pool(gy, side, side)], dtype=torch.float64)
    return ((e - e.mean()) / (e.std() + EDGE_EPS)).float()


def _naive_pool(m: list[list[float]], rows: int, cols: int) -> list[list[float]]:
    """Adaptive average pooling by loops: cell k of n covers [floor(k*len/n), ceil((k+1)*len/n))."""
    n_i, n_j = len(m), len(m[0])
    out = []
    for a in range(rows):
        i0, i1 = (a * n_i) // rows, -((-(a + 1) * n_i) // rows)
        row = []
        for b in range(cols):
            j0, j1 = (b * n_j) // cols, -((-(b + 1) * n_j) // cols)
            vals = [m[i][j] for i in range(i0, i1) for j in range(j0, j1)]
            row.append(sum(vals) / len(vals))
        out.append(row)
    return out


def test_edge_maps_are_standardised_pooled_grey_gradients():
    g = torch.Generator().manual_seed(4)
    frames = torch.randint(0, 256, (2, 3, 12, 10), generator=g, dtype=torch.uint8)
    e = edge_maps(frames, 4)
    assert e.shape == (2, 2, 4, 4)
    for b in range(2):
        torch.testing.assert_close(e[b], _naive_edges(frames[b], 4), rtol=0, atol=1e-4)
    assert edge_maps(torch.zeros(5, 2, 3, 16, 16, dtype=torch.uint8), 8).shape == (5, 2, 2, 8, 8)  # leading dims kept


def test_edge_maps_ignore_colour_brightness_and_contrast():
    # a vertical bar: its edges are the target, whatever its colour, brightness or contrast
    img = torch.full((1, 3, 16, 16), 60, dtype=torch.uint8)
    img[:, :, :, 6:9] = 120
    base = edge_maps(img, 4)
    assert base.std() > 0.9  # standardised
    recoloured = img.clone()
    recoloured[:, 0] += 30  # colour shift: grey changes by a constant, edges do not
    stronger = ((img.int() - 60) * 2 + 60).to(torch.uint8)  # double the contrast
    torch.testing.assert_close(edge_maps(recoloured, 4), base, rtol=0, atol=1e-4)
    torch.testing.assert_close(edge_maps(stronger, 4), base, rtol=0.03, atol=1e-4)  # only EDGE_EPS differs
    assert edge_maps(torch.full((1, 3, 16, 16), 77, dtype=torch.uint8), 4).abs().max() < 1e-6  # flat: zeros
    # the bar's columns carry the horizontal edges; nothing crosses it vertically
    assert base[0, 0, :, 1:3].mean() > base[0, 0, :, [0, 3]].mean()
    assert base[0, 1].std() < 1e-5


def _naive_near(img: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """``uint8 [C, H, W]`` -> ``[2, rows, cols]`` by loops: the edge maps of rows H//2.. only, on a rows x cols grid."""
    C, H, W = img.shape
    lower = img[:, H // 2 :]
    grey = [[sum(float(lower[c, i, j]) for c in range(C)) / C / 255 for j in range(W)] for i in range(lower.shape[1])]
    gx = [[abs(r[j + 1] - r[j]) for j in range(W - 1)] for r in grey]
    gy = [[abs(grey[i + 1][j] - grey[i][j]) for j in range(W)] for i in range(len(grey) - 1)]

    e = torch.tensor([_naive_pool(gx, rows, cols), _naive_pool(gy, rows, cols)], dtype=torch.float64)
    return ((e - e.mean()) / (e.std() + EDGE_EPS)).float()


def test_near_edges_are_the_lower_halfs_edge_maps_on_a_wide_grid():
    g = torch.Generator().manual_seed(6)
    frames = torch.randint(0, 256, (2, 3, 16, 24), generator=g, dtype=torch.uint8)
    e = near_edges(frames, 2, 6)
    assert e.shape == (2, 2, 2, 6)
    for b in range(2):
        torch.testing.assert_close(e[b], _naive_near(frames[b], 2, 6), rtol=0, atol=1e-4)
    # the upper half does not count: anything drawn there leaves the target as it was
    other_sky = frames.clone()
    other_sky[:, :, :8] = torch.randint(0, 256, (2, 3, 8, 24), generator=g, dtype=torch.uint8)
    torch.testing.assert_close(near_edges(other_sky, 2, 6), e, rtol=0, atol=1e-6)
    # a lane marking (a vertical bar in the lower half) moved to the right moves the horizontal-edge peak with it
    road = torch.full((1, 3, 16, 24), 50, dtype=torch.uint8)
    left, right = road.clone(), road.clone()
    left[..., 8:, 4:6] = 200
    right[..., 8:, 16:18] = 200
    assert int(near_edges(left, 1, 6)[0, 0, 0].argmax()) == 1 and int(near_edges(right, 1, 6)[0, 0, 0].argmax()) == 4


@pytest.mark.parametrize("target, side, edge_side, size", [
    ("pixels", 4, 0, 3 * 16), ("edges", 4, 0, 2 * 16), ("pixels+edges", 4, 0, 3 * 16 + 2 * 16),
    ("pixels+edges", 4, 8, 3 * 16 + 2 * 64), ("colour", 4, 0, 3 * 4), ("edges+colour+pixels", 4, 8, 2 * 64 + 3 * 4 + 3 * 16),
    ("pixels+near", 4, 0, 3 * 16 + 2 * 8 * 32), ("near", 4, 0, 2 * 8 * 32),
])
def test_targets_are_the_named_parts_in_their_order(target, side, edge_side, size):
    obj = LayoutPrediction.from_options(D, side=side, edge_side=edge_side, target=target, colour_side=2)
    assert obj.target_size() == size and obj.decoder.out_features == size
    frames = fake_batch_for(obj, 3, ("front",), seed=5, missing=0.0)["frames"][:, 0]  # [B, V, C, H, W]
    t = obj.targets(frames)
    assert t.shape == (*frames.shape[:2], size)
    expected = {  # in the order the target names them (colour_side=2 here)
        "pixels": thumbnails(frames, side, per_image=True).flatten(-3),
        "edges": edge_maps(frames, edge_side or side).flatten(-3),
        "colour": thumbnails(frames, 2, per_image=False).flatten(-3),
        "near": near_edges(frames, 8, 32).flatten(-3),
    }
    parts = [expected[p] for p in target.split("+")]
    torch.testing.assert_close(t, torch.cat(parts, -1), rtol=0, atol=0)
    out = obj(torch.randn(*frames.shape[:2], D)[:, None], {**fake_batch_for(obj, 3, ("front",), seed=5, missing=0.0)})
    assert torch.isfinite(out.loss)


def test_the_colour_part_keeps_what_per_image_pixels_remove():
    # Scene colour tells episodes apart (temporal retrieval at large Δt); the per-image thumbnail drops it.
    obj = LayoutPrediction.from_options(D, target="pixels+colour", side=4, colour_side=2)
    g = torch.Generator().manual_seed(3)
    frames = torch.randint(0, 200, (2, 3, 16, 16), generator=g, dtype=torch.uint8)
    brighter = frames + 40
    a, b = obj.targets(frames), obj.targets(brighter)
    torch.testing.assert_close(a[:, :48], b[:, :48], rtol=0, atol=1e-2)  # pixels: nearly unchanged
    torch.testing.assert_close(b[:, 48:] - a[:, 48:], torch.full((2, 12), 40 / 255 / PIXEL_STD), rtol=0, atol=1e-5)


def _inputs(obj, seed=0, missing=0.2, B=8, cameras=("front", "rear")):
    batch = fake_batch_for(obj, B, cameras, seed=seed, missing=missing, episode_length=20)
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(*batch["mask"].shape, D, generator=g) * batch["mask"][..., None]
    return emb, batch


def _naive_loss(obj, emb, batch, cell_error):
    """Mean over valid ``(sample, camera)`` cells of ``cell_error(pred, frame)``, one cell at a time."""
    mask, frames = batch["mask"], batch["frames"]
    errs = []
    for b in range(mask.shape[0]):
        for v in range(mask.shape[2]):
            if not mask[b, 0, v]:
                continue
            with torch.no_grad():
                pred = obj.decoder(emb[b, 0, v])
            errs.append(cell_error(pred, frames[b, 0, v]))
    assert 0 < len(errs) < mask[:, 0].numel()  # some cells are masked
    return sum(errs) / len(errs)


def test_loss_is_the_mse_over_valid_cells():
    obj = LayoutPrediction.from_options(D, side=4, normalize="fixed", target="pixels")
    emb, batch = _inputs(obj)
    assert emb.shape[1] == 1  # dt=0: the anchor frame only
    out = obj(emb, batch)
    naive = _naive_loss(obj, emb, batch, lambda pred, frame: float((pred - thumbnails(frame, 4).flatten()).pow(2).mean()))
    assert float(out.loss) == pytest.approx(naive, rel=1e-5)
    assert out.metrics["mse"] == pytest.approx(float(out.loss))


def test_colour_weight_scales_the_colour_numbers_in_the_mse():
    obj = LayoutPrediction.from_options(D, side=2, target="pixels+colour", colour_side=1, colour_weight=5.0)
    emb, batch = _inputs(obj, seed=2)

    def cell_error(pred, frame):
        pix = thumbnails(frame, 2, per_image=True).flatten()  # 12 numbers, weight 1
        col = thumbnails(frame, 1).flatten()  # 3 numbers, weight 5
        se = (pred - torch.cat([pix, col])).pow(2)
        return float((se[:12].sum() + 5 * se[12:].sum()) / (12 + 5 * 3))  # weights scaled to mean 1

    assert float(obj(emb, batch).loss) == pytest.approx(_naive_loss(obj, emb, batch, cell_error), rel=1e-5)


def test_a_perfect_decoder_gives_zero_loss_and_r2_one():
    obj = LayoutPrediction.from_options(3 * 4 * 4, side=4, target="pixels")  # normalize="image"
    batch = fake_batch_for(obj, 6, ("front",), seed=3, missing=0.0)
    emb = thumbnails(batch["frames"], 4, per_image=True).flatten(-3)  # the embedding *is* the thumbnail
    with torch.no_grad():
        obj.decoder.weight.copy_(torch.eye(48))
        obj.decoder.bias.zero_()
    out = obj(emb, batch)
    assert float(out.loss) == pytest.approx(0.0, abs=1e-10)
    assert out.metrics["r2"] == pytest.approx(1.0)


def test_the_default_target_is_an_8px_thumbnail_a_16px_edge_map_2px_colour_weighted_16_and_the_near_field():
    obj = LayoutPrediction(6)  # defaults
    o = obj.options
    assert (o.target, o.side, o.edge_side, o.colour_side, o.colour_weight, o.near_rows, o.near_cols) == (
        "pixels+edges+colour+near", 8, 16, 2, 16.0, 8, 32)
    assert obj.target_size() == 3 * 8 * 8 + 2 * 16 * 16 + 3 * 2 * 2 + 2 * 8 * 32
    w = obj.number_weights()
    assert w.shape == (1228,) and w.mean() == pytest.approx(1.0)
    assert torch.allclose(w[704:716], 16 * w[0]) and torch.allclose(w[716:], w[0])  # colour weighs 16, near 1
    batch = fake_batch_for(obj, 4, ("front",), seed=2, missing=0.0)
    big = LayoutPrediction(obj.target_size())
    emb = big.targets(batch["frames"])  # the embedding *is* the target
    with torch.no_grad():
        big.decoder.weight.copy_(torch.eye(obj.target_size()))
        big.decoder.bias.zero_()
    out = big(emb, batch)
    assert float(out.loss) == pytest.approx(0.0, abs=1e-10) and out.metrics["r2"] == pytest.approx(1.0)


def test_masked_cells_do_not_change_the_loss():
    obj = LayoutPrediction.from_options(D, side=4)
    emb, batch = _inputs(obj, missing=0.3)
    noisy = emb + torch.randn_like(emb) * 100 * (~batch["mask"])[..., None]
    frames = batch["frames"].clone()
    frames[~batch["mask"]] = 255 - frames[~batch["mask"]]
    assert float(obj(noisy, {**batch, "frames": frames}).loss) == pytest.approx(float(obj(emb, batch).loss), rel=1e-6)


def test_future_version_predicts_the_later_frame_and_is_told_dt():
    obj = LayoutPrediction.from_options(D, side=4, dt="2-4", camera="all", target="pixels")
    req = obj.views()
    assert len(req.deltas) == 1 and (req.deltas[0].lo, req.deltas[0].hi) == (2, 4)
    emb, batch = _inputs(obj, missing=0.2)
    assert emb.shape[1] == 2 and emb.shape[2] == 2
    out = obj(emb, batch)
    mask, per_cell = batch["mask"], []
    for b in range(emb.shape[0]):
        for v in range(emb.shape[2]):
            if not (mask[b, 0, v] and mask[b, 1, v]):
                continue  # a pair needs both frames
            src = torch.cat([emb[b, 0, v], batch["dt"][b, 1].float().view(1)])
            with torch.no_grad():
                pred = obj.decoder(src)
            target = thumbnails(batch["frames"][b, 1, v], 4, per_image=True).flatten()  # the default normalize="image"
            per_cell.append(float((pred - target).pow(2).mean()))
    assert 0 < len(per_cell) < emb.shape[0] * emb.shape[2]  # some cells are missing
    assert float(out.loss) == pytest.approx(sum(per_cell) / len(per_cell), rel=1e-5)
    # The slot-1 frames are the target: swapping in the anchor frames changes the loss.
    swapped = batch["frames"].clone()
    swapped[:, 1] = swapped[:, 0]
    assert float(obj(emb, {**batch, "frames": swapped}).loss) != pytest.approx(float(out.loss))


@pytest.mark.parametrize("opts", [dict(), dict(dt="2-6", hidden_dim=16, gray=True, side=8, normalize="fixed"),
                                  dict(target="pixels+edges", side=8, edge_side=4),
                                  dict(target="pixels+edges+colour", colour_side=2),
                                  dict(target="pixels+edges+colour+near", near_rows=4, near_cols=8)])
def test_passes_the_objective_contract(opts):
    check_objective(LayoutPrediction, options=opts)


@pytest.mark.parametrize("bad, match", [
    (dict(side=1), "side must be 2..64"),
    (dict(dt="0.5s"), "must be '0' or frames"),
    (dict(hidden_dim=-1), "hidden_dim must be >= 0"),
    (dict(camera=","), "cameras must be"),
    (dict(normalize="batch"), "normalize must be 'image' or 'fixed'"),
    (dict(target="flow"), "target must join distinct parts of pixels, edges, colour, near"),
    (dict(near_rows=0), "near_rows must be 1..64"),
    (dict(near_cols=65), "near_cols must be 1..64"),
    (dict(target="pixels+pixels"), "target must join distinct parts"),
    (dict(colour_side=0), "colour_side must be 1..64"),
    (dict(colour_weight=0), "colour_weight must be > 0"),
    (dict(edge_side=1), "edge_side must be 0 or 2..64"),
])
def test_bad_options_say_what_is_wrong(bad, match):
    with pytest.raises(ssltk.UsageError, match=match):
        LayoutPrediction.from_options(D, **bad)


@pytest.mark.slow
def test_trains_from_the_cli_composed_with_temporal_infonce(tmp_path):
    import json

    from typer.testing import CliRunner

    from ssltk.cli import build_app
    from ssltk.plugins import get_plugin_manager
    from ssltk.testing.shards import write_tiny_shards

    write_tiny_shards(tmp_path / "shards", episodes=4, length=20, cameras=("front", "rear"), image_size=32,
                      segment_length=10, overlap=4)
    out = tmp_path / "run"
    args = ["pretrain", "--backbone", "test_resnet", "--image-size", "32", "--batch-size", "8", "--num-workers", "0",
            "--data", str(tmp_path / "shards"), "--out", str(out), "--steps", "3",
            "-o", "layout-prediction", "-o", "temporal-infonce=0.25", "--set", "temporal-infonce.dt=1-4",
            "--set", "layout-prediction.dt=1-3", "--set", "layout-prediction.side=8", "--set", "log_every=1"]
    r = CliRunner().invoke(build_app(get_plugin_manager(load=["ssltk"])), args)
    assert r.exit_code == 0, r.output
    manifest = json.loads((out / "ssltk.json").read_text())
    assert [(o["name"], o["weight"]) for o in manifest["objectives"]] == [("layout-prediction", 1.0), ("temporal-infonce", 0.25)]
    rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        assert row["loss"] == pytest.approx(row["loss/layout-prediction"] + 0.25 * row["loss/temporal-infonce"], rel=1e-5)
        assert row["layout-prediction/r2"] <= 1.0
    # the decoder is part of the model (trained and saved with the heads)
    assert any("layout-prediction" in k for k in torch.load(out / "train_state" / "modules.pt", weights_only=True)["model"])
