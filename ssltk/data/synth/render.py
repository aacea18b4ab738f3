"""Perspective renderer for synthetic driving worlds (vectorised numpy).

Frames: *world* (x, y on the ground, z up), *vehicle* (x forward, y left,
z up, origin on the ground under the ego reference point), *camera* (right,
up, depth). Cameras are pinholes with square pixels and a fixed mounting on
the vehicle, so every ground pixel hits the flat ground at a fixed point of the
vehicle frame: :class:`Camera` computes those points (and their footprints)
once, and a frame only rotates/translates them into the world
(:meth:`Renderer.render`). Roads are shaded per pixel from road coordinates
``(s, d)`` found by a vectorised Newton projection onto the centre line, with
lines and textures anti-aliased by each pixel's ground footprint. Boxes
(vehicles, buildings) and billboards (trees, poles, signs) are projected for
all cameras at once, then drawn far to near with PIL at ``SUPERSAMPLE`` times
the resolution and box-filtered down. No per-pixel Python.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
from PIL import Image, ImageDraw

if TYPE_CHECKING:  # pragma: no cover
    from ssltk.data.synth.world import World

MAX_RANGE = 220.0  # metres of ground drawn; beyond it the horizon haze
NEAR = 0.1  # near clipping plane (m)
FOG_DISTANCE = 160.0  # haze: fraction exp(-range / FOG_DISTANCE) of the colour survives
TEX_FINE, TEX_COARSE = 0.1, 0.6  # texel sizes (m) of the two ground textures
HILL_SAMPLES = 2048  # skyline samples over 360 degrees
HILL_MAX = 0.14  # radians: the skyline never rises higher
MIN_AREA = 0.4  # px^2: smaller objects are not drawn
SUPERSAMPLE = 2  # objects are drawn at this many times the resolution, then box-filtered down


@dataclass(frozen=True)
class CameraSpec:
    """Where a camera sits on the ego vehicle and where it looks."""

    name: str
    yaw: float  # radians, left of forward is positive
    x: float  # mount position in the vehicle frame (m): forward,
    y: float  # left,
    z: float  # up
    pitch: float = math.radians(9.0)  # downwards
    fov: float = math.radians(90.0)  # horizontal field of view


CAMERA_RIG: dict[str, CameraSpec] = {
    spec.name: spec
    for spec in (
        CameraSpec("front", 0.0, 1.9, 0.0, 1.45),
        CameraSpec("front_left", math.radians(55), 1.6, 0.85, 1.45),
        CameraSpec("front_right", math.radians(-55), 1.6, -0.85, 1.45),
        CameraSpec("left", math.radians(90), 0.5, 0.95, 1.45),
        CameraSpec("right", math.radians(-90), 0.5, -0.95, 1.45),
        CameraSpec("rear_left", math.radians(125), -0.6, 0.85, 1.45),
        CameraSpec("rear_right", math.radians(-125), -0.6, -0.85, 1.45),
        CameraSpec("rear", math.pi, -1.1, 0.0, 1.45),
    )
}


class Camera:
    """Pinhole camera on the vehicle with per-pixel ground geometry precomputed."""

    def __init__(self, spec: CameraSpec, height: int, width: int) -> None:
        self.spec, self.h, self.w = spec, height, width
        cy_, sy_ = math.cos(spec.yaw), math.sin(spec.yaw)
        cp, sp = math.cos(spec.pitch), math.sin(spec.pitch)
        self.fwd = np.array([cy_ * cp, sy_ * cp, -sp])
        self.right = np.array([sy_, -cy_, 0.0])
        self.up = np.array([cy_ * sp, sy_ * sp, cp])
        self.pos = np.array([spec.x, spec.y, spec.z])
        self.f = (width / 2) / math.tan(spec.fov / 2)
        self.cx, self.cy = width / 2, height / 2
        self.basis = np.stack([self.right, self.up, self.fwd])  # rows: camera axes in the vehicle frame
        self._ground()
        self._sky()

    def rays(self, du: float = 0.0, dv: float = 0.0) -> np.ndarray:
        """Ray directions (H, W, 3) in the vehicle frame through pixel centres shifted by (du, dv)."""
        u = (np.arange(self.w) + 0.5 + du - self.cx) / self.f
        v = (np.arange(self.h) + 0.5 + dv - self.cy) / self.f
        return self.fwd + u[None, :, None] * self.right - v[:, None, None] * self.up

    def _hit(self, rays: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        down = np.minimum(rays[..., 2], -1e-9)
        t = self.pos[2] / -down
        return self.pos[:2] + t[..., None] * rays[..., :2], t * np.linalg.norm(rays, axis=-1)

    def _ground(self) -> None:
        r = self.rays()
        g, rng = self._hit(r)
        mask = (r[..., 2] < -1e-6) & (rng < MAX_RANGE)
        self.ground_idx = np.flatnonzero(mask)
        pick = lambda a: a.reshape(-1, *a.shape[2:])[self.ground_idx]  # noqa: E731
        self.gx, self.gy, self.range = pick(g[..., 0]), pick(g[..., 1]), pick(rng)
        # ground displacement per pixel step in u and v (the pixel footprint)
        gu = self._hit(self.rays(0.5))[0] - self._hit(self.rays(-0.5))[0]
        gv = self._hit(self.rays(0.0, 0.5))[0] - self._hit(self.rays(0.0, -0.5))[0]
        self.gu, self.gv = pick(gu), pick(gv)
        size = np.sqrt(np.abs(self.gu[:, 0] * self.gv[:, 1] - self.gu[:, 1] * self.gv[:, 0])) + 1e-6
        self.fade_fine = np.clip(1.6 - size / (1.5 * TEX_FINE), 0.0, 1.0)
        self.fade_coarse = np.clip(1.6 - size / (1.5 * TEX_COARSE), 0.0, 1.0)
        self.haze = 1.0 - np.exp(-self.range / FOG_DISTANCE)

    def _sky(self) -> None:
        r = self.rays()
        self.elev = np.arctan2(r[..., 2], np.hypot(r[..., 0], r[..., 1]))
        self.azim = np.arctan2(r[..., 1], r[..., 0])
        self.hill_idx = np.flatnonzero((self.elev.ravel() > -0.02) & (self.elev.ravel() < HILL_MAX + 0.02))
        self.hill_az = (self.azim.ravel()[self.hill_idx] % (2 * math.pi)).astype(np.float32)
        self.hill_elev = self.elev.ravel()[self.hill_idx].astype(np.float32)


# ---------------------------------------------------------------- boxes

# corners of a unit box: x in {-1/2, 1/2} (length), y (width), z in {0, 1} (height)
_UNIT = np.array([[sx, sy, sz] for sz in (0, 1) for sy in (-0.5, 0.5) for sx in (-0.5, 0.5)], dtype=np.float64)
# visible-candidate faces (bottom never faces a camera above ground): corner ids, outward normal (local)
_FACES = (
    ((4, 5, 7, 6), (0, 0, 1)),  # top
    ((1, 3, 7, 5), (1, 0, 0)),  # front (+x)
    ((0, 4, 6, 2), (-1, 0, 0)),  # back
    ((2, 6, 7, 3), (0, 1, 0)),  # left (+y)
    ((0, 1, 5, 4), (0, -1, 0)),  # right
)
_FACE_IDS = np.array([f[0] for f in _FACES])
_FACE_NORMALS = np.array([f[1] for f in _FACES], dtype=np.float64)


def box_corners(centre: np.ndarray, heading: np.ndarray, size: np.ndarray, z0: np.ndarray) -> np.ndarray:
    """World corners (N, 8, 3) of boxes: ground centre (N, 2), heading (N,), size (N, 3) = l, w, h, base z0 (N,)."""
    c, s = np.cos(heading)[:, None], np.sin(heading)[:, None]
    lx, ly = _UNIT[None, :, 0] * size[:, :1], _UNIT[None, :, 1] * size[:, 1:2]
    out = np.empty((len(centre), 8, 3))
    out[..., 0] = centre[:, :1] + c * lx - s * ly
    out[..., 1] = centre[:, 1:2] + s * lx + c * ly
    out[..., 2] = z0[:, None] + _UNIT[None, :, 2] * size[:, 2:3]
    return out


def face_shades(heading: np.ndarray, sun: np.ndarray) -> np.ndarray:
    """Lambert shade (N, 5) of each candidate face for a unit sun vector (3,) in the world frame."""
    c, s = np.cos(heading)[:, None], np.sin(heading)[:, None]
    nx = c * _FACE_NORMALS[None, :, 0] - s * _FACE_NORMALS[None, :, 1]
    ny = s * _FACE_NORMALS[None, :, 0] + c * _FACE_NORMALS[None, :, 1]
    lam = nx * sun[0] + ny * sun[1] + _FACE_NORMALS[None, :, 2] * sun[2]
    return 0.55 + 0.45 * np.clip(lam, 0.0, 1.0)


@dataclass
class Drawable:
    """Things to paint in one frame (world frame): boxes and billboards."""

    box_corners: np.ndarray  # (N, 8, 3)
    box_colour: np.ndarray  # (N, 5, 3) per visible-candidate face, already shaded
    bb_pos: np.ndarray  # (M, 3) billboard base centre (x, y, z)
    bb_size: np.ndarray  # (M, 2) width, height (m)
    bb_colour: np.ndarray  # (M, 3)
    bb_round: np.ndarray  # (M,) bool: ellipse instead of rectangle


# ---------------------------------------------------------------- renderer


class Renderer:
    """Renders a :class:`~ssltk.data.synth.world.World` from a camera rig.

    Sky and ground are computed per pixel in planar float32 (3, H, W); boxes
    and billboards are then drawn far to near with PIL on a ``SUPERSAMPLE``
    times larger canvas and box-filtered down, which anti-aliases their edges.
    """

    def __init__(self, cameras: Sequence[str], height: int, width: int) -> None:
        self.cams = [Camera(CAMERA_RIG[c], height, width) for c in cameras]
        self.h, self.w = height, width
        cat = lambda name: np.concatenate([getattr(c, name) for c in self.cams]).astype(np.float32)  # noqa: E731
        self.gx, self.gy, self.haze = cat("gx"), cat("gy"), cat("haze")
        gu, gv = cat("gu"), cat("gv")
        self.gux, self.guy, self.gvx, self.gvy = (np.ascontiguousarray(a) for a in (gu[:, 0], gu[:, 1], gv[:, 0], gv[:, 1]))
        self.fade_fine, self.fade_coarse = cat("fade_fine"), cat("fade_coarse")
        bounds = np.cumsum([0] + [len(c.ground_idx) for c in self.cams])
        self.slices = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
        self.basis = np.stack([c.basis for c in self.cams])  # (C, 3, 3) camera axes in the vehicle frame
        self.mount = np.stack([c.pos for c in self.cams])  # (C, 3)
        self.f = np.array([c.f for c in self.cams])

    def render(self, world: "World", t: int, which: Sequence[bool] | None = None) -> list[np.ndarray | None]:
        """Images (H, W, 3) uint8 of timestep ``t`` for each camera (None where ``which`` is False)."""
        which = [True] * len(self.cams) if which is None else which
        x, y, heading = world.ego_pose(t)
        ground = self._ground(world, float(world.ego["s"][t]), x, y, heading)
        draw = world.drawables(t)
        light = world.light(t)
        out: list[np.ndarray | None] = []
        plan = self._plan(draw, (x, y, heading), world.style.haze_colour, light)
        for ci, (cam, sl, on) in enumerate(zip(self.cams, self.slices, which)):
            if not on:
                out.append(None)
                continue
            img = self._sky(world, cam, heading)
            img.reshape(3, -1)[:, cam.ground_idx] = ground[:, sl]
            img *= light[:, None, None]
            canvas = Image.fromarray(np.ascontiguousarray(_unit8(img).transpose(1, 2, 0)))
            canvas = canvas.resize((self.w * SUPERSAMPLE, self.h * SUPERSAMPLE), Image.Resampling.NEAREST)
            self._objects(ImageDraw.Draw(canvas), ci, cam, plan)
            out.append(np.asarray(canvas.reduce(SUPERSAMPLE)))
        return out

    # -- ground
    def _ground(self, world: "World", s_e: float, ex: float, ey: float, heading: float) -> np.ndarray:
        """Colours (3, N) of every ground pixel of every camera."""
        road, st = world.road, world.style
        c, s = np.float32(math.cos(heading)), np.float32(math.sin(heading))
        wx = (self.gx * c - self.gy * s) + np.float32(ex)
        wy = (self.gx * s + self.gy * c) + np.float32(ey)
        sr, d, ok = road.project(wx, wy, s_e)
        # pixel footprint across (fp_d) and along (fp_s) the road, from the local road direction
        th = float(road.heading_at(s_e)) - heading
        tc, ts = np.float32(math.cos(th)), np.float32(math.sin(th))
        fp_d = np.abs(self.guy * tc - self.gux * ts) + np.abs(self.gvy * tc - self.gvx * ts) + np.float32(1e-3)
        fp_s = np.abs(self.gux * tc + self.guy * ts) + np.abs(self.gvx * tc + self.gvy * ts) + np.float32(1e-3)
        d = np.where(ok, d, np.float32(1e4))
        out = np.maximum(d - np.float32(road.left_edge), np.float32(road.right_edge) - d)  # > 0 off the road
        curb, side = out > np.float32(0.25), out > np.float32(0.25 + road.sidewalk)
        on_road = _unit(np.float32(0.5) - out / fp_d)
        tex = _texture(world.tex_fine, wx, wy, TEX_FINE) * self.fade_fine
        tex += _texture(world.tex_coarse, wx, wy, TEX_COARSE) * self.fade_coarse
        tex += np.float32(1.0)
        white, yellow = _markings(road, sr, d, out, fp_d, fp_s)
        col = np.empty((3, len(wx)), np.float32)
        for ch in range(3):
            o = st.offroad[:, ch]
            v = np.where(side, o[2], np.where(curb, o[1], o[0]))
            v += on_road * (st.asphalt[ch] - v)
            v *= tex
            v += white * (st.paint[ch] - v)
            if yellow is not None:
                v += yellow * (st.yellow[ch] - v)
            v += self.haze * (st.haze_colour[ch] - v)
            col[ch] = v
        return col

    # -- sky and distant hills
    def _sky(self, world: "World", cam: Camera, heading: float) -> np.ndarray:
        st = world.style
        img = world.sky_image(cam)
        flat = img.reshape(3, -1)
        idx = cam.hill_idx
        k = ((cam.hill_az + np.float32(heading)) * np.float32(HILL_SAMPLES / (2 * math.pi))).astype(np.int32) % HILL_SAMPLES
        cover = _unit((np.take(world.hills, k) - cam.hill_elev) * np.float32(cam.f) + np.float32(0.5))
        flat[:, idx] += cover * (st.hill_colour[:, None] - flat[:, idx])
        return img

    # -- boxes and billboards, far to near
    def _plan(self, draw: Drawable, pose, haze: np.ndarray, light: np.ndarray) -> dict:
        """Project, cull and colour every box and billboard for all cameras at once (arrays with a camera axis)."""
        ex, ey, heading = pose
        c, s = math.cos(heading), math.sin(heading)
        rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])  # world -> vehicle, for row vectors
        w2c = rot @ self.basis.transpose(0, 2, 1)  # (C, 3, 3)
        off = -(np.array([ex, ey, 0.0]) @ w2c) - np.einsum("cj,ckj->ck", self.mount, self.basis)  # (C, 3)
        f, cx, cy = self.f[:, None, None], self.w / 2, self.h / 2
        n = len(draw.box_corners)
        pts = (draw.box_corners.reshape(1, -1, 3) @ w2c + off[:, None, :]).reshape(len(w2c), n, 8, 3)
        front = pts[..., 2] > NEAR
        all_front = front.all(axis=-1)
        dist = np.linalg.norm(pts.mean(axis=2), axis=-1)  # (C, N)
        z = np.where(front, pts[..., 2], np.nan)
        u, v = cx + f * pts[..., 0] / z, cy - f * pts[..., 1] / z  # NaN behind the camera
        umin, umax, vmin, vmax = u.min(-1), u.max(-1), v.min(-1), v.max(-1)
        off_screen = (umax < 0) | (umin > self.w) | (vmax < 0) | (vmin > self.h)
        small = (umax - umin) * (vmax - vmin) < MIN_AREA
        keep = front.any(axis=-1) & (dist < MAX_RANGE) & ~(all_front & (off_screen | small))
        a = pts[:, :, _FACE_IDS[:, 0]]
        normal = np.cross(pts[:, :, _FACE_IDS[:, 1]] - a, pts[:, :, _FACE_IDS[:, 3]] - a)
        # Facing the camera at the origin. The camera frame (right, up, depth) is left-handed, so the
        # outward normals computed from the corner order point inwards here: visible faces have n.a > 0.
        visible = np.einsum("cnfk,cnfk->cnf", normal, a) > 0
        quads = (np.stack([u, v], axis=-1)[:, :, _FACE_IDS] * SUPERSAMPLE).reshape(len(w2c), n, 5, 8)
        clipped, inside = self._clip_faces(pts[:, :, _FACE_IDS])  # for boxes reaching behind the camera
        box_col = _fogged(draw.box_colour[None], dist[..., None, None], haze, light)  # (C, N, 5, 3)
        # billboards
        q = draw.bb_pos @ w2c + off[:, None, :]  # (C, M, 3)
        zq = np.maximum(q[..., 2], 1e-6)
        bu, bv = cx + f[..., 0] * q[..., 0] / zq, cy - f[..., 0] * q[..., 1] / zq
        half, tall = 0.5 * f[..., 0] * draw.bb_size[:, 0] / zq, f[..., 0] * draw.bb_size[:, 1] / zq
        show = (q[..., 2] > 0.3) & (bu + half > 0) & (bu - half < self.w) & (bv > 0) & (bv - tall < self.h)
        show &= 2 * half * tall > MIN_AREA
        k = SUPERSAMPLE
        rect = np.stack([(bu - half) * k, (bv - tall) * k, np.maximum((bu + half) * k - 1, (bu - half) * k),
                         np.maximum(bv * k - 1, (bv - tall) * k)], axis=-1)  # fmt: skip
        bb_dist = np.hypot(q[..., 2], q[..., 0])
        bb_col = _fogged(draw.bb_colour[None], bb_dist[..., None], haze, light)  # (C, M, 3)
        return {"keep": keep, "dist": dist, "all_front": all_front, "visible": visible, "quads": quads,
                "clipped": clipped, "inside": inside,
                "box_col": box_col, "show": show, "rect": rect, "bb_dist": bb_dist, "bb_col": bb_col,
                "round": draw.bb_round}  # fmt: skip

    def _objects(self, canvas: "ImageDraw.ImageDraw", ci: int, cam: Camera, plan: dict) -> None:
        """Draw camera ``ci``'s boxes and billboards far to near."""
        ib, im = np.flatnonzero(plan["keep"][ci]), np.flatnonzero(plan["show"][ci])
        dist = np.concatenate([plan["dist"][ci, ib], plan["bb_dist"][ci, im]])
        nb = len(ib)
        quads, visible = plan["quads"][ci, ib].tolist(), plan["visible"][ci, ib].tolist()
        box_col, all_front = plan["box_col"][ci, ib].tolist(), plan["all_front"][ci, ib].tolist()
        rects, bb_col, rnd = plan["rect"][ci, im].tolist(), plan["bb_col"][ci, im].tolist(), plan["round"][im].tolist()
        for j in np.argsort(-dist, kind="stable").tolist():
            if j >= nb:
                b = j - nb
                (canvas.ellipse if rnd[b] else canvas.rectangle)(rects[b], fill=tuple(bb_col[b]))
                continue
            for fi, vis in enumerate(visible[j]):
                if not vis:
                    continue
                if all_front[j]:
                    canvas.polygon(quads[j][fi], fill=tuple(box_col[j][fi]))
                    continue
                keep = plan["inside"][ci, ib[j], fi]
                if keep.sum() >= 3:
                    canvas.polygon(plan["clipped"][ci, ib[j], fi][keep].ravel().tolist(), fill=tuple(box_col[j][fi]))

    def _clip_faces(self, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Clip quads (..., 4, 3) in camera coordinates to depth >= NEAR, all at once (Sutherland-Hodgman, one plane).

        Returns pixel coordinates (..., 8, 2) scaled by ``SUPERSAMPLE`` and a mask
        (..., 8) of the slots in use: slot ``2i`` is corner ``i`` (if in front),
        slot ``2i + 1`` is where edge ``i -> i+1`` crosses the near plane.
        """
        nxt = np.roll(faces, -1, axis=-2)
        za, zb = faces[..., 2], nxt[..., 2]
        ina, inb = za >= NEAR, zb >= NEAR
        with np.errstate(divide="ignore", invalid="ignore"):
            tcut = np.where(ina != inb, (NEAR - za) / (zb - za), 0.0)
        cut = faces + tcut[..., None] * (nxt - faces)
        pts = np.stack([faces, cut], axis=-2).reshape(*faces.shape[:-2], 8, 3)
        mask = np.stack([ina, ina != inb], axis=-1).reshape(*faces.shape[:-2], 8)
        z = np.maximum(pts[..., 2], NEAR)
        f = self.f.reshape(-1, *([1] * (pts.ndim - 2)))
        uv = np.stack([self.w / 2 + f * pts[..., 0] / z, self.h / 2 - f * pts[..., 1] / z], axis=-1)
        return uv * SUPERSAMPLE, mask


def _fogged(colour: np.ndarray, dist: np.ndarray, haze: np.ndarray, light: np.ndarray) -> np.ndarray:
    """Integer RGB of colours seen through haze at ``dist`` metres, then exposed with ``light``."""
    fog = 1.0 - np.exp(-dist / FOG_DISTANCE)
    out = (colour + fog * (haze - colour)) * light
    return np.clip(out + 0.5, 0, 255).astype(np.int64)


def _unit(x: np.ndarray) -> np.ndarray:
    """Clamp to [0, 1]."""
    return np.minimum(np.maximum(x, np.float32(0.0)), np.float32(1.0))


def _unit8(img: np.ndarray) -> np.ndarray:
    return np.minimum(np.maximum(img, 0.0), 255.0).astype(np.uint8)


def _band(dist: np.ndarray, half: float, fp: np.ndarray) -> np.ndarray:
    """Fraction of a pixel of width ``fp`` centred at ``dist`` (>= 0) that lies in [-half, half]."""
    h = np.float32(half)
    lo = np.maximum(dist - np.float32(0.5) * fp, -h)
    hi = np.minimum(dist + np.float32(0.5) * fp, h)
    return np.maximum(hi - lo, np.float32(0.0)) / fp


def _texture(tex: np.ndarray, wx: np.ndarray, wy: np.ndarray, texel: float) -> np.ndarray:
    """Nearest-texel lookup of a periodic square texture (side a power of two) at world points."""
    n = tex.shape[0]
    i = (wx * np.float32(1.0 / texel)).astype(np.int32) & (n - 1)
    j = (wy * np.float32(1.0 / texel)).astype(np.int32) & (n - 1)
    return np.take(tex.ravel(), j * n + i)


def _markings(road, s: np.ndarray, d: np.ndarray, out: np.ndarray, fp_d: np.ndarray, fp_s: np.ndarray):
    """Coverage of white paint (lane dividers, edge lines) and of the yellow centre line."""
    lw = road.line_width / 2
    w = np.float32(road.lane_width)
    k = np.rint(d / w)
    lane_line = (k != 0) & (k > -road.n_forward) & (k < road.n_oncoming)
    phase = np.mod(s + np.float32(road.dash_phase), np.float32(road.dash_period))
    dash = _band(np.abs(phase - np.float32(road.dash_length / 2)), road.dash_length / 2, fp_s)
    white = _band(np.abs(d - k * w), lw, fp_d) * dash * lane_line
    white = np.maximum(white, _band(np.abs(out + np.float32(0.35)), lw, fp_d))
    if road.n_oncoming == 0:
        return white, None
    yellow = _band(np.abs(np.abs(d) - np.float32(0.12)), lw * 0.8, fp_d)
    return white, yellow
