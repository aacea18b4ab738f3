"""The road and the ego's motion on it, for the synthetic worlds (:mod:`ssltk.data.synth.world`).

A road is a centre line whose curvature changes in plateaus and clothoid
ramps, with lanes either side. The ego's ground truth is derived from its
continuous path (simulated at :data:`SUBSTEPS` per frame), so ``x, y`` are the
integral of ``speed`` along ``heading`` and ``yaw_rate`` is the derivative of
``heading``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Road", "sample_road", "simulate_ego", "SUBSTEPS", "VIEW_AHEAD", "VIEW_BEHIND", "WHEELBASE"]

WHEELBASE = 2.8  # m, for the steering angle of the bicycle model
SUBSTEPS = 10  # simulation steps per frame
VIEW_AHEAD, VIEW_BEHIND = 140.0, 120.0  # metres of road around the ego where objects are drawn


@dataclass
class Road:
    """Centre line sampled every ``ds`` metres plus the cross-section layout.

    ``d`` is the lateral offset from the centre line (left positive). Forward
    lanes lie at ``-n_forward * lane_width <= d <= 0``, oncoming lanes at
    ``0 <= d <= n_oncoming * lane_width``.
    """

    s0: float
    ds: float
    cx: np.ndarray
    cy: np.ndarray
    th: np.ndarray
    kappa: np.ndarray
    n_forward: int
    n_oncoming: int
    lane_width: float
    sidewalk: float
    line_width: float = 0.15
    dash_length: float = 3.0
    dash_period: float = 9.0
    dash_phase: float = 0.0
    tables: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        tx = np.diff(self.cx, append=self.cx[-1] + self.ds * math.cos(self.th[-1])) / self.ds
        ty = np.diff(self.cy, append=self.cy[-1] + self.ds * math.sin(self.th[-1])) / self.ds
        f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
        sg = self.s0 + self.ds * np.arange(len(self.cx))
        self.tables = {"sg": f32(sg), "cx": f32(self.cx), "cy": f32(self.cy), "tx": f32(tx), "ty": f32(ty)}

    @property
    def left_edge(self) -> float:
        return self.n_oncoming * self.lane_width

    @property
    def right_edge(self) -> float:
        return -self.n_forward * self.lane_width

    def _interp(self, s, arr):
        return np.interp(s, self.tables["sg"], arr)

    def heading_at(self, s):
        return self._interp(s, self.th)

    def curvature_at(self, s):
        return self._interp(s, self.kappa)

    def point(self, s, d=0.0):
        """World (x, y) of road coordinates (s, d)."""
        th = self.heading_at(s)
        return self._interp(s, self.cx) - d * np.sin(th), self._interp(s, self.cy) + d * np.cos(th)

    def project(self, wx: np.ndarray, wy: np.ndarray, s_guess: float, iters: int = 2):
        """Road coordinates (s, d) of world points, plus a flag that the projection converged.

        Starts from the osculating circle at ``s_guess`` (arc length
        ``along / (1 - kappa * across)``), then takes Newton steps on the centre
        polyline (nearest-segment lookups, all vectorised); points that have not
        converged after ``iters`` steps (far away, on strong curves) get more.
        """
        t = self.tables
        i = int(np.clip((s_guess - self.s0) / self.ds, 0, len(t["sg"]) - 1))
        dx, dy = wx - t["cx"][i], wy - t["cy"][i]
        along, across = dx * t["tx"][i] + dy * t["ty"][i], dy * t["tx"][i] - dx * t["ty"][i]
        k = np.float32(self.kappa[i])
        s = t["sg"][i] + along / np.maximum(np.float32(1.0) - k * across, np.float32(0.2))
        s, d, ok = self._newton(wx, wy, s, iters)
        retry = np.flatnonzero(~ok)
        if len(retry):
            s[retry], d[retry], ok[retry] = self._newton(wx[retry], wy[retry], s[retry], 4)
        return s, d, ok

    def _newton(self, wx, wy, s, iters: int):
        t = self.tables
        scale, s0 = np.float32(1.0 / self.ds), np.float32(self.s0)
        for _ in range(iters):
            i = ((s - s0) * scale).astype(np.int32)
            tx, ty = np.take(t["tx"], i, mode="clip"), np.take(t["ty"], i, mode="clip")
            dx, dy = wx - np.take(t["cx"], i, mode="clip"), wy - np.take(t["cy"], i, mode="clip")
            along = dx * tx + dy * ty
            s = np.take(t["sg"], i, mode="clip") + along
        d = dy * tx - dx * ty
        ok = (along > -2 * self.ds) & (along < 3 * self.ds)
        return s, d, ok


def sample_road(rng: np.random.Generator, s_max: float, s_min: float = -VIEW_BEHIND - 60, ds: float = 0.5) -> Road:
    """A road whose curvature changes in plateaus and linear ramps (clothoids), never looping back."""
    n = int(math.ceil((s_max - s_min) / ds)) + 1
    s = s_min + ds * np.arange(n)
    knots_s, knots_k = [s_min], [0.0]
    pos, heading_drift, k = s_min, 0.0, 0.0
    while pos < s_max:
        if rng.random() < 0.3:
            k_new = 0.0
        else:
            k_new = float(rng.uniform(1 / 400, 1 / 45)) * (1 if rng.random() < 0.5 else -1)
            if abs(heading_drift) > 0.8:  # steer back towards the initial direction
                k_new = -math.copysign(abs(k_new), heading_drift)
        ramp, plateau = rng.uniform(10, 40), rng.uniform(15, 90)
        heading_drift += 0.5 * (k + k_new) * ramp + k_new * plateau
        knots_s += [pos + ramp, pos + ramp + plateau]
        knots_k += [k_new, k_new]
        pos, k = pos + ramp + plateau, k_new
    kappa = np.interp(s, knots_s, knots_k)
    th = np.concatenate([[0.0], np.cumsum(0.5 * (kappa[1:] + kappa[:-1]) * ds)])
    th = th - np.interp(0.0, s, th) + rng.uniform(-math.pi, math.pi)  # s = 0 heads anywhere
    cx = np.concatenate([[0.0], np.cumsum(np.cos(0.5 * (th[1:] + th[:-1])) * ds)])
    cy = np.concatenate([[0.0], np.cumsum(np.sin(0.5 * (th[1:] + th[:-1])) * ds)])
    cx, cy = cx - np.interp(0.0, s, cx), cy - np.interp(0.0, s, cy)  # s = 0 at the world origin
    n_forward = int(rng.choice([2, 2, 3]))
    return Road(
        s0=s_min, ds=ds, cx=cx, cy=cy, th=th, kappa=kappa,
        n_forward=n_forward, n_oncoming=int(rng.choice([0, 1, 2])),
        lane_width=float(rng.uniform(3.2, 3.8)), sidewalk=float(rng.uniform(1.2, 3.0)),
        dash_length=float(rng.uniform(2.5, 4.0)), dash_period=float(rng.uniform(8.0, 13.0)),
        dash_phase=float(rng.uniform(0, 13.0)),
    )  # fmt: skip


# ---------------------------------------------------------------- ego


def _speed_profile(rng, n: int, dt: float, vmin: float, vmax: float) -> np.ndarray:
    """Speed (m/s) on the fine grid: random targets every 1.5-4 s, limited and smoothed acceleration."""
    v, a = rng.uniform(vmin, vmax), 0.0
    target, next_change = rng.uniform(vmin, vmax), rng.uniform(0.5, 3.0)
    out = np.empty(n)
    for i in range(n):
        t = i * dt
        if t >= next_change:
            target, next_change = rng.uniform(vmin, vmax), t + rng.uniform(1.5, 4.0)
        a_cmd = float(np.clip(1.2 * (target - v), -4.0, 3.0))
        a += (a_cmd - a) * min(1.0, dt / 0.4)
        v = min(max(v + a * dt, 0.5 * vmin), vmax * 1.05)
        out[i] = v
    return out


def _lateral_profile(rng, t: np.ndarray, road: Road):
    """Offset d(t) from the centre line: lane changes (smoothstep over 2.5-4.5 s) plus slow wander."""
    w, n_lanes = road.lane_width, road.n_forward
    lane = int(rng.integers(n_lanes))
    centre = np.full(len(t), -(lane + 0.5) * w)
    start = rng.uniform(0.5, 4.0)
    while start < t[-1] and n_lanes > 1:
        new = int(rng.choice([k for k in range(n_lanes) if k != lane]))
        dur = rng.uniform(2.5, 4.5)
        u = np.clip((t - start) / dur, 0.0, 1.0)
        step = u * u * (3 - 2 * u)
        centre += step * ((lane - new) * w)  # d of lane k is -(k + 0.5) w
        lane, start = new, start + dur + rng.exponential(5.0) + 1.0
    period, amp = rng.uniform(4.0, 12.0), rng.uniform(0.1, 0.45)
    wander = amp * np.sin(2 * math.pi * t / period + rng.uniform(0, 2 * math.pi))
    return centre + wander


def simulate_ego(rng, road: Road, n_frames: int, fps: float, speed_range=(5.0, 25.0)) -> dict[str, np.ndarray]:
    """Ego ground truth per frame, derived from the continuous path simulated at ``SUBSTEPS`` per frame."""
    dt = 1.0 / (fps * SUBSTEPS)
    pad = 2
    m = (n_frames - 1) * SUBSTEPS + 1 + 2 * pad
    t = (np.arange(m) - pad) * dt
    v = _speed_profile(rng, m, dt, *speed_range)
    s = np.concatenate([[0.0], np.cumsum(0.5 * (v[1:] + v[:-1]) * dt)])
    s -= s[pad]
    d = _lateral_profile(rng, t, road)
    d_dot = np.gradient(d, dt)
    th, kap = road.heading_at(s), road.curvature_at(s)
    # velocity in the road frame: along = v (1 - kappa d), across = d'
    along = v * (1 - kap * d)
    heading = th + np.arctan2(d_dot, along)
    speed = np.hypot(along, d_dot)
    x, y = road.point(s, d)
    yaw_rate = np.gradient(heading, dt)
    accel = np.gradient(speed, dt)
    w = road.lane_width
    lane = np.clip(np.floor(-d / w), 0, road.n_forward - 1)
    sel = slice(pad, m - pad, SUBSTEPS)
    gt = {
        "speed": speed, "yaw_rate": yaw_rate, "steering": np.arctan(WHEELBASE * yaw_rate / np.maximum(speed, 1.0)),
        "accel": accel, "x": x, "y": y, "heading": heading, "lane_offset": d + (lane + 0.5) * w,
        "lane": road.n_forward - 1 - lane, "curvature": kap,
    }  # fmt: skip
    out = {k: np.asarray(val)[sel] for k, val in gt.items()}
    out["s"], out["d"] = s[sel], d[sel]
    return out
