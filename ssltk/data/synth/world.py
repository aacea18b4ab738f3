"""Random driving worlds for ``ssltk data synth``: traffic, roadside objects, light, on a road (:mod:`~ssltk.data.synth.road`).

Everything is drawn from one seeded :class:`numpy.random.SeedSequence`, so a
world is a pure function of ``(seed, episode index, options)``.

Observability by design: roadside objects and road-surface patches sit at
irregular spacing (periodic lane dashes alone alias: dashes every ~9 m seen
at 1.5-3 m per frame make speed unreadable), the road curves (yaw), the
distant skyline turns with the ego's heading (yaw), lane lines show the
ego's lateral position in the front view, speed changes within an episode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ssltk.data.synth.render import HILL_SAMPLES, Drawable, box_corners, face_shades
from ssltk.data.synth.road import VIEW_AHEAD, VIEW_BEHIND, Road, sample_road, simulate_ego

if TYPE_CHECKING:  # pragma: no cover
    from ssltk.data.synth.render import Camera


# ---------------------------------------------------------------- traffic and props


def sample_traffic(rng, road: Road, ego: dict, fps: float) -> dict[str, np.ndarray]:
    """Vehicles driving in lanes at one speed per lane (so they never overlap); none ever hits the ego."""
    times = np.arange(len(ego["s"])) / fps
    rows = []
    lanes = [(-(k + 0.5) * road.lane_width, 1) for k in range(road.n_forward)]
    lanes += [((k + 0.5) * road.lane_width, -1) for k in range(road.n_oncoming)]
    for d_lane, direction in lanes:
        v_lane = direction * rng.uniform(7.0, 22.0)
        lo = float(np.min(ego["s"] - VIEW_BEHIND - v_lane * times))
        hi = float(np.max(ego["s"] + VIEW_AHEAD - v_lane * times))
        pos = lo + rng.uniform(0, 30)
        while pos < hi:
            big = rng.random() < 0.15
            length = rng.uniform(8, 12) if big else rng.uniform(3.8, 5.0)
            rows.append([pos, v_lane, d_lane + rng.uniform(-0.25, 0.25), length,
                         rng.uniform(2.3, 2.55) if big else rng.uniform(1.7, 1.95),
                         rng.uniform(2.8, 3.4) if big else rng.uniform(1.35, 1.6), float(big)])  # fmt: skip
            pos += length + rng.uniform(12, 70)
    cars = np.array(rows, dtype=np.float64).reshape(-1, 7)
    s_t = cars[:, None, 0] + cars[:, None, 1] * times[None, :]
    hit = (np.abs(s_t - ego["s"][None, :]) < 0.5 * cars[:, 3:4] + 3.5) & (np.abs(cars[:, 2:3] - ego["d"][None, :]) < 2.5)
    cars = cars[~hit.any(axis=1)]
    colours = _vehicle_colours(rng, len(cars))
    return {"s0": cars[:, 0], "v": cars[:, 1], "d": cars[:, 2], "size": cars[:, 3:6], "big": cars[:, 6] > 0, "colour": colours}


def _vehicle_colours(rng, n: int) -> np.ndarray:
    palette = np.array([[200, 30, 30], [30, 60, 170], [235, 235, 235], [25, 25, 28], [130, 135, 140],
                        [220, 180, 30], [40, 120, 60], [150, 90, 40], [90, 30, 110], [210, 100, 20]], dtype=np.float64)  # fmt: skip
    return palette[rng.integers(len(palette), size=n)] * rng.uniform(0.8, 1.1, size=(n, 1))


def sample_props(rng, road: Road, s_lo: float, s_hi: float, urban: bool) -> tuple[dict, dict]:
    """Roadside billboards (trees, bushes, poles, signs) and buildings, at irregular spacing on both sides."""
    bb, boxes = [], []
    edges = [(road.right_edge, -1.0), (road.left_edge, 1.0)]
    for edge, side in edges:
        base = edge + side * (0.25 + road.sidewalk)
        pos = s_lo + rng.uniform(0, 6)
        while pos < s_hi:
            _add_prop(rng, bb, pos, base, side, urban)
            pos += 2.0 + rng.exponential(5.0 if urban else 7.0)
        pos = s_lo + rng.uniform(0, 20)
        while pos < s_hi:
            if rng.random() < (0.75 if urban else 0.25):
                length, width = rng.uniform(8, 30), rng.uniform(8, 16)
                off = base + side * (rng.uniform(3, 8) + width / 2)
                boxes.append([pos + length / 2, off, length, width, rng.uniform(5, 22 if urban else 9)])
                pos += length
            pos += 2 + rng.exponential(12.0)
    return _billboards(rng, road, bb), _buildings(rng, road, boxes)


def _add_prop(rng, bb: list, pos: float, base: float, side: float, urban: bool) -> None:
    """Append billboard rows [s, d, z, width, height, r, g, b, round] for one roadside object."""
    kind = rng.choice(["tree", "bush", "pole", "sign", "post"], p=[0.25, 0.15, 0.3, 0.12, 0.18] if urban else [0.5, 0.25, 0.1, 0.05, 0.1])
    d = base + side * rng.uniform(0.3, 3.5)
    g = rng.uniform(0.7, 1.15)
    if kind == "tree":
        h = rng.uniform(4, 9)
        bb.append([pos, d, 0.0, 0.35, h * 0.5, 90 * g, 65 * g, 40 * g, 0])
        bb.append([pos, d, h * 0.35, h * 0.55, h * 0.65, 45 * g, 110 * g, 40 * g, 1])
    elif kind == "bush":
        w = rng.uniform(1.0, 2.5)
        bb.append([pos, d, 0.0, w, w * 0.6, 60 * g, 120 * g, 45 * g, 1])
    elif kind == "pole":
        bb.append([pos, d - side * 0.5 * rng.random(), 0.0, 0.22, rng.uniform(6, 9), 150 * g, 150 * g, 155 * g, 0])
    elif kind == "sign":
        colour = [[200, 40, 40], [40, 80, 190], [230, 200, 40], [30, 140, 70]][int(rng.integers(4))]
        bb.append([pos, d, 0.0, 0.1, 2.2, 120, 120, 125, 0])
        bb.append([pos, d, 1.9, rng.uniform(0.6, 1.4), rng.uniform(0.6, 1.0), *colour, 0])
    else:
        bb.append([pos, d, 0.0, 0.25, 1.0, 235 * g, 235 * g, 235 * g, 0])


def _billboards(rng, road: Road, rows: list) -> dict:
    a = np.array(rows, dtype=np.float64).reshape(-1, 9)
    x, y = road.point(a[:, 0], a[:, 1])
    return {"s": a[:, 0], "pos": np.stack([x, y, a[:, 2]], axis=1), "size": a[:, 3:5],
            "colour": a[:, 5:8].astype(np.float32), "round": a[:, 8] > 0}  # fmt: skip


def _buildings(rng, road: Road, rows: list) -> dict:
    a = np.array(rows, dtype=np.float64).reshape(-1, 5)
    x, y = road.point(a[:, 0], a[:, 1])
    palette = np.array([[190, 170, 140], [160, 90, 70], [170, 170, 175], [210, 200, 180], [120, 110, 100]], dtype=np.float64)
    colour = palette[rng.integers(len(palette), size=len(a))] * rng.uniform(0.8, 1.1, size=(len(a), 1))
    size = np.stack([a[:, 2], a[:, 3], a[:, 4]], axis=1)
    corners = box_corners(np.stack([x, y], 1), road.heading_at(a[:, 0]), size, np.zeros(len(a)))
    return {"s": a[:, 0], "corners": corners, "heading": road.heading_at(a[:, 0]), "colour": colour}


# ---------------------------------------------------------------- the world


@dataclass
class Style:
    """Colours (0-255, float32) of one episode."""

    offroad: np.ndarray  # (3, 3): curb, sidewalk/shoulder, grass/dirt
    asphalt: np.ndarray
    paint: np.ndarray
    yellow: np.ndarray
    haze_colour: np.ndarray
    hill_colour: np.ndarray
    sky_top: np.ndarray


def sample_style(rng, urban: bool) -> Style:
    f = lambda *v: np.array(v, dtype=np.float32)  # noqa: E731
    grass = f(70, 115, 45) if rng.random() < 0.7 else f(140, 120, 80)  # green or dry
    side = f(150, 148, 140) if urban else f(120, 105, 80)
    asphalt = f(80, 82, 86) * np.float32(rng.uniform(0.8, 1.2))
    sky_top = f(70, 120, 200) * np.float32(rng.uniform(0.85, 1.1))
    haze = f(185, 195, 205) * np.float32(rng.uniform(0.9, 1.05))
    return Style(
        offroad=np.stack([f(175, 175, 170), side, grass * np.float32(rng.uniform(0.8, 1.15))]),
        asphalt=asphalt, paint=f(235, 235, 230), yellow=f(230, 190, 40), haze_colour=haze,
        hill_colour=f(95, 115, 120) * np.float32(rng.uniform(0.8, 1.1)), sky_top=sky_top,
    )  # fmt: skip


class World:
    """One episode's world and ego motion; :class:`ssltk.data.synth.render.Renderer` draws it."""

    def __init__(self, seed: np.random.SeedSequence, n_frames: int, fps: float, speed_range=(5.0, 25.0)) -> None:
        r_road, r_ego, r_traffic, r_props, r_look = (np.random.default_rng(s) for s in seed.spawn(5))
        self.n, self.fps = n_frames, fps
        duration = (n_frames - 1) / fps
        self.road = sample_road(r_road, s_max=speed_range[1] * 1.05 * duration + VIEW_AHEAD + 80)
        self.ego = simulate_ego(r_ego, self.road, n_frames, fps, speed_range)
        self.urban = bool(r_look.random() < 0.5)
        self.style = sample_style(r_look, self.urban)
        self.cars = sample_traffic(r_traffic, self.road, self.ego, fps)
        s_lo, s_hi = self.ego["s"].min() - VIEW_BEHIND, self.ego["s"].max() + VIEW_AHEAD
        self.props, self.buildings = sample_props(r_props, self.road, s_lo, s_hi, self.urban)
        self.hills = _skyline(r_look)
        self.tex_fine = r_look.normal(0.0, 0.06, (256, 256)).astype(np.float32)
        self.tex_coarse = _patches(r_look)
        self._light = (r_look.uniform(0.75, 1.1), r_look.uniform(0.05, 0.18), r_look.uniform(15, 50), r_look.uniform(0, 2 * math.pi))
        self._tint = r_look.uniform(0.9, 1.1, size=3)
        self._sun = (r_look.uniform(0, 2 * math.pi), r_look.uniform(0.3, 1.1), r_look.uniform(-0.02, 0.02))
        self._sky: dict[str, np.ndarray] = {}

    def ego_pose(self, t: int) -> tuple[float, float, float]:
        e = self.ego
        return float(e["x"][t]), float(e["y"][t]), float(e["heading"][t])

    def light(self, t: int) -> np.ndarray:
        """Per-channel exposure at timestep ``t``: slow sinusoidal brightness change and a colour tint."""
        base, amp, period, phase = self._light
        b = base * (1 + amp * math.sin(2 * math.pi * t / (self.fps * period) + phase))
        return (b * self._tint).astype(np.float32)

    def sun(self, t: int) -> np.ndarray:
        az0, elev, drift = self._sun
        az = az0 + drift * t / self.fps
        return np.array([math.cos(az) * math.cos(elev), math.sin(az) * math.cos(elev), math.sin(elev)])

    def sky_image(self, cam: "Camera") -> np.ndarray:
        """A fresh planar float32 (3, H, W) sky gradient for ``cam`` (haze at and below the horizon)."""
        if cam.spec.name not in self._sky:
            frac = np.clip(cam.elev / 0.7, 0.0, 1.0)[None] ** 0.6
            st = self.style
            sky = st.haze_colour[:, None, None] + frac * (st.sky_top - st.haze_colour)[:, None, None]
            self._sky[cam.spec.name] = sky.astype(np.float32)
        return self._sky[cam.spec.name].copy()

    def drawables(self, t: int) -> Drawable:
        """Boxes (vehicles, buildings) and billboards near the ego at timestep ``t``."""
        s_e = self.ego["s"][t]
        sun = self.sun(t)
        corners, colours = [], []
        car = self.cars
        s = car["s0"] + car["v"] * (t / self.fps)
        near = (s > s_e - VIEW_BEHIND) & (s < s_e + VIEW_AHEAD)
        if near.any():
            corners_c, colours_c = _vehicle_boxes(self.road, s[near], car["d"][near], car["v"][near],
                                                  car["size"][near], car["big"][near], car["colour"][near], sun)  # fmt: skip
            corners.append(corners_c)
            colours.append(colours_c)
        b = self.buildings
        near = (b["s"] > s_e - VIEW_BEHIND - 30) & (b["s"] < s_e + VIEW_AHEAD + 30)
        corners.append(b["corners"][near])
        colours.append(face_shades(b["heading"][near], sun)[..., None] * b["colour"][near][:, None, :])
        p = self.props
        near = (p["s"] > s_e - VIEW_BEHIND) & (p["s"] < s_e + VIEW_AHEAD)
        return Drawable(
            box_corners=np.concatenate(corners), box_colour=np.concatenate(colours).astype(np.float32),
            bb_pos=p["pos"][near], bb_size=p["size"][near], bb_colour=p["colour"][near], bb_round=p["round"][near],
        )  # fmt: skip


_GLASS = np.array([45, 52, 62], dtype=np.float64)


def _vehicle_boxes(road: Road, s, d, v, size, big, colour, sun) -> tuple[np.ndarray, np.ndarray]:
    """Corners (2N, 8, 3) and shaded face colours (2N, 5, 3) of vehicle bodies and cabins."""
    x, y = road.point(s, d)
    heading = road.heading_at(s) + np.where(v < 0, math.pi, 0.0)
    ctr = np.stack([x, y], 1)
    body_h = np.where(big, size[:, 2], 0.58 * size[:, 2])
    body = box_corners(ctr, heading, np.stack([size[:, 0], size[:, 1], body_h], 1), np.zeros(len(s)))
    cab_l = np.where(big, 0.01, 0.5 * size[:, 0])
    back = -0.08 * size[:, 0]
    cab_ctr = ctr + back[:, None] * np.stack([np.cos(heading), np.sin(heading)], 1)
    cab = box_corners(cab_ctr, heading, np.stack([cab_l, 0.86 * size[:, 1], size[:, 2] - body_h + 1e-3], 1), body_h)
    shade = face_shades(heading, sun)[..., None]
    body_col = shade * colour[:, None, :]
    cab_col = np.repeat(_GLASS[None, None, :], len(s), 0).repeat(5, 1)
    cab_col[:, 0] = colour  # roof
    cab_col = shade * cab_col
    return np.concatenate([body, cab]), np.concatenate([body_col, cab_col])


def _patches(rng, n: int = 512, cells: int = 32) -> np.ndarray:
    """Periodic (n, n) brightness texture: a smooth random field whose low values make dark, irregular patches."""
    field = rng.normal(0.0, 1.0, (cells, cells))
    x = np.arange(n) * (cells / n)
    xp = np.arange(cells + 1)
    field = np.vstack([field, field[:1]])
    field = np.stack([np.interp(x, xp, col) for col in field.T], axis=1)  # rows upsampled
    field = np.hstack([field, field[:, :1]])
    field = np.stack([np.interp(x, xp, row) for row in field])  # columns upsampled
    patch = np.clip((-field - 1.0) * 3.0, 0.0, 1.0)
    return (0.05 * field - 0.22 * patch).astype(np.float32)


def _skyline(rng) -> np.ndarray:
    """Elevation (radians) of distant hills per azimuth sample: a random sum of harmonics."""
    a = np.linspace(0, 2 * math.pi, HILL_SAMPLES, endpoint=False)
    h = np.zeros_like(a)
    for k in range(1, 24):
        h += rng.normal(0, 1.0 / k) * np.sin(k * a + rng.uniform(0, 2 * math.pi))
    h = (h - h.min()) / (np.ptp(h) + 1e-9)
    return (0.01 + rng.uniform(0.03, 0.12) * h).astype(np.float32)
