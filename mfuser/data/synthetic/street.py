"""Drawing the street: sky, ground (road, markings, sidewalks, terrain), skyline, facades, fences / walls, street end.

These are the static layers drawn before the objects, far to near: the sky fills the image, the ground
every row below the horizon (each pixel's ground position gives its surface and depth), then the skyline
on the horizon, the building closing the street, and the facades of both sides (per image column, the
facade segment hit by the viewing ray; per pixel, the height on it). Road markings, crossings and rails
are drawn into the image only; they are labelled road, as in Cityscapes.
"""

import math

import numpy as np

from ..classes import IGNORE_LABEL
from .canvas import (
    BUILDING,
    FENCE,
    ROAD,
    SIDEWALK,
    SKY,
    TERRAIN,
    VEG,
    WALL,
    Camera,
    Canvas,
    noise_tile,
    pick_colour,
    tile_lookup,
    value_noise,
)

__all__ = ["draw_sky", "draw_ground", "draw_skyline", "draw_facades", "draw_street_end"]


def draw_sky(cv: Canvas, cam: Camera, pal, rng, light: dict) -> None:
    """Sky gradient (top to horizon colour) with clouds; labels the whole image sky at infinite depth."""
    H, W = cv.h, cv.w
    rows = int(min(H, max(1, math.ceil(cam.yh) + 2)))  # the ground covers everything below the horizon
    ys = np.arange(rows, dtype=np.float32)[:, None, None]
    t = np.clip(ys / max(cam.yh, 1.0), 0, 1) ** 1.3
    sky = light["sky_top"] * (1 - t) + light["sky_horizon"] * t  # (rows, 1, 3)
    sky = np.broadcast_to(sky, (rows, W, 3))
    if light["clouds"] > 0:
        n = 0.6 * value_noise(rng, rows, W, 48) + 0.4 * value_noise(rng, rows, W, 12)
        cloud = (np.clip((n - (0.55 - light["clouds"])) * 3, 0, 1)[..., None] * (1 - t * 0.7)).astype(np.float32)
        sky = sky * (1 - cloud) + light["cloud_colour"] * cloud
    cv.img[:rows] = sky
    cv.lab[:] = SKY
    cv.depth[:] = 1e4


def _ground_coords(cv: Canvas, cam: Camera, r0: int):
    """Ground-plane X, Z (metres) of rows r0..H-1 (all below the horizon)."""
    dy = np.arange(r0, cv.h, dtype=np.float32)[:, None] + 0.5 - cam.yh
    Z = (cam.f * cam.h / np.maximum(dy, 0.35)).astype(np.float32)
    X = ((np.arange(cv.w, dtype=np.float32)[None, :] + 0.5 - cam.vx) * Z / cam.f).astype(np.float32)
    return X, np.broadcast_to(Z, X.shape)


def draw_ground(cv: Canvas, cam: Camera, lay: dict, pal, rng, style) -> None:
    """Road (with markings), kerbs, sidewalks, terrain strips and far ground, rows below the horizon."""
    r0 = int(math.floor(cam.yh + 0.35 - 0.5)) + 1
    r0 = min(max(r0, 0), cv.h)
    if r0 >= cv.h:
        return
    X, Z = _ground_coords(cv, cam, r0)
    road_l, road_r = lay["road"]
    texture = style.texture
    patch = tile_lookup(noise_tile(rng, 128, 10), X * 2.0, Z * 1.0)
    near = Z < 30
    tiles = ((np.mod(X, 0.6) < 0.05) | (np.mod(Z, 0.6) < 0.05)) & near

    # label of every ground pixel by lateral position; "surface" selects a colour/shading recipe
    L, R = lay["left"], lay["right"]
    l_sw, r_sw = L["sidewalk"][1], R["sidewalk"][1]
    l_ter, r_ter = l_sw - L["terrain"], r_sw + R["terrain"]
    far_l = TERRAIN if rng.random() < 0.6 else SIDEWALK
    far_r = TERRAIN if rng.random() < 0.6 else SIDEWALK
    conds = [
        (X >= road_l) & (X <= road_r),
        (X < road_l) & (X >= l_sw),
        (X > road_r) & (X <= r_sw),
        (X < l_sw) & (X >= l_ter),
        (X > r_sw) & (X <= r_ter),
        X < 0,
    ]
    # surfaces: 0 road, 1 left sidewalk, 2 right sidewalk, 3 left terrain, 4 right terrain, 5 far left, 6 far right
    surf = np.select(conds, [0, 1, 2, 3, 4, 5], 6).astype(np.uint8)
    surf_label = np.array([ROAD, SIDEWALK, SIDEWALK, TERRAIN, TERRAIN, far_l, far_r], np.uint8)
    colours = np.stack(
        [
            pick_colour(rng, pal["road"]),
            pick_colour(rng, pal["sidewalk"]),
            pick_colour(rng, pal["sidewalk"]),
            pick_colour(rng, pal["terrain"]),
            pick_colour(rng, pal["terrain"]),
            pick_colour(rng, pal["terrain"] if far_l == TERRAIN else pal["sidewalk"]),
            pick_colour(rng, pal["terrain"] if far_r == TERRAIN else pal["sidewalk"]),
        ]
    )
    amp = np.array([0.12, 0.08, 0.08, 0.2, 0.2, 0.15, 0.15], np.float32) * texture
    shade = 1 + amp[surf] * patch
    is_sw = (surf == 1) | (surf == 2)
    shade -= 0.18 * (tiles & is_sw)
    kerb = ((np.abs(X - road_l) < 0.2) & (surf == 1)) | ((np.abs(X - road_r) < 0.2) & (surf == 2))
    shade[kerb] = 1.15
    img = colours[surf] * shade[..., None]

    # lane markings and crossings (labelled road, as in Cityscapes); rails darker/brighter lines
    road = surf == 0
    lw = 0.12
    mark = (np.abs(X - (road_l + 0.35)) < lw) | (np.abs(X - (road_r - 0.35)) < lw)
    dashes = np.mod(Z, 9.0) < 4.0
    for k in range(-lay["lanes_left"], lay["lanes_right"]):  # lane boundaries; solid between the directions
        xc = (k + 0.5) * lay["lane_w"]
        mark |= (np.abs(X - xc) < lw) & (dashes if k != -1 else True)
    if lay["crossing"] is not None:
        zc = lay["crossing"]
        mark |= (Z > zc) & (Z < zc + 3.5) & (np.mod(X, 1.0) < 0.5)
    mark &= road
    img[mark] = pick_colour(rng, pal["marking"][:1], 0.03) * (1 + 0.05 * texture * patch[mark, None])
    if lay["rails"]:
        rails = road & ((np.abs(X + 0.72) < 0.05) | (np.abs(X - 0.72) < 0.05))
        img[rails] = colours[0] * 1.5
    cv.img[r0:] = img
    cv.lab[r0:] = surf_label[surf]
    cv.depth[r0:] = Z


def draw_skyline(cv: Canvas, cam: Camera, pal, rng, light) -> None:
    """Distant buildings and trees sitting on the horizon (far behind everything else)."""
    x = 0.0
    while x < cv.w:
        wdt = rng.uniform(0.03, 0.12) * cv.w
        hgt = rng.uniform(0.02, 0.12) * cv.h
        kind = BUILDING if rng.random() < 0.6 else VEG
        c = pick_colour(rng, pal["building"] if kind == BUILDING else pal["veg"]) * 0.8 + 0.2 * light["sky_horizon"]
        if kind == BUILDING:
            cv.poly(
                [[x, cam.yh + 1], [x + wdt, cam.yh + 1], [x + wdt, cam.yh - hgt], [x, cam.yh - hgt]], c, BUILDING, 900
            )
        else:
            cv.ellipse((x + wdt / 2, cam.yh), (wdt / 2, hgt), c, VEG, 900)
        x += wdt * rng.uniform(0.7, 1.3)


def _facade_pixels(cv: Canvas, cam: Camera, xplane: float, z_max: float):
    """Per-column depth and per-pixel height on the vertical plane X = xplane (the visible columns only)."""
    xs = np.arange(cv.w, dtype=np.float32) + 0.5 - cam.vx
    with np.errstate(divide="ignore"):
        Zc = np.where(xs * xplane > 0, cam.f * xplane / xs, np.inf).astype(np.float32)
    Zc = np.where(Zc < z_max, Zc, np.inf)
    ys = np.arange(cv.h, dtype=np.float32)[:, None] + 0.5 - cam.yh
    Y = cam.h - ys * np.where(np.isfinite(Zc), Zc, 0)[None, :] / cam.f
    return Zc, Y


_KIND = {"gap": 0, "building": 1, "veg": 2, "wall": 3}
_KIND_LABEL = np.array([IGNORE_LABEL, BUILDING, VEG, WALL], np.uint8)
_KIND_PALETTE = ("building", "building", "veg", "wall")  # per kind; a gap draws an (unused) colour too


def draw_facades(cv: Canvas, cam: Camera, lay: dict, pal, rng, light, style) -> None:
    """Both street sides: per column, the facade segment hit at depth Zc; per pixel, the height Y on it."""
    texture = style.texture
    tex = noise_tile(rng, 64, 3)
    for side in ("left", "right"):
        s = lay[side]
        shade = light["sun_left"] if side == "left" else light["sun_right"]
        Zc, Y = _facade_pixels(cv, cam, s["facade"], lay["z_end"])
        cols = np.isfinite(Zc)
        if cols.any():
            segs = s["segments"]
            srng = np.random.default_rng(segs[0]["seed"])
            kind = np.array([_KIND[g["kind"]] for g in segs], np.int64)
            height = np.array([g["height"] for g in segs], np.float32)
            z0 = np.array([g["z0"] for g in segs], np.float32)
            base = np.stack([pick_colour(srng, pal[_KIND_PALETTE[k]]) for k in kind])
            win_c = np.stack([pick_colour(srng, pal["window"]) for _ in segs])
            fh = srng.uniform(2.8, 3.6, len(segs)).astype(np.float32)
            ws = srng.uniform(1.8, 3.5, len(segs)).astype(np.float32)
            shop = srng.random(len(segs)) < 0.6
            zc = Zc[cols]
            Yc = Y[:, cols]
            i = np.clip(np.searchsorted(z0, zc, side="right") - 1, 0, len(segs) - 1)
            k = kind[i]
            top = height[i] + np.where(k == 2, 1.5 * tile_lookup(tex, zc * 0.7, np.zeros_like(zc)), 0)
            m = (Yc >= 0) & (Yc <= top[None, :]) & (k != 0)[None, :]
            colr = np.broadcast_to(base[i][None] * shade, Yc.shape + (3,)).copy()
            n = tile_lookup(tex, zc[None, :] * 4, Yc * 4)
            veg, wall, bld = (k == 2)[None, :], (k == 3)[None, :], (k == 1)[None, :]
            joint = (np.mod(Yc, 0.3) < 0.035) | (np.mod(zc[None, :] + 0.3 * np.mod(np.floor(Yc / 0.3), 2), 0.6) < 0.035)
            gain = 1 + np.where(veg, 0.35 * n, 0) + np.where(wall, 0.1 * texture * n - 0.25 * joint, 0)
            colr *= gain[..., None]
            rel_z = (zc - z0[i])[None, :]
            wy, wz = np.mod(Yc - 0.5, fh[i]) / fh[i], np.mod(rel_z, ws[i]) / ws[i]
            win = (wy > 0.3) & (wy < 0.78) & (wz > 0.25) & (wz < 0.75) & (Yc > 3.2) & (Yc < top - 0.8)
            shp = (Yc > 0.3) & (Yc < 2.6) & (np.mod(rel_z, 6.0) > 1.0) & shop[i][None, :]
            glass = bld & (win | shp)
            colr[glass] = (np.broadcast_to(win_c[i][None], colr.shape)[glass]) * shade
            cornice = bld & (np.abs(Yc - (top - 0.3)) < 0.3)
            colr[cornice] *= 0.8
            sub_img, sub_lab, sub_dep = cv.img[:, cols], cv.lab[:, cols], cv.depth[:, cols]
            sub_img[m] = colr[m]
            sub_lab[m] = np.broadcast_to(_KIND_LABEL[k][None, :], m.shape)[m]
            sub_dep[m] = np.broadcast_to(zc[None, :], m.shape)[m]
            cv.img[:, cols], cv.lab[:, cols], cv.depth[:, cols] = sub_img, sub_lab, sub_dep
        if s["boundary"] is not None:
            _draw_boundary(cv, cam, s, lay, pal, rng, shade, texture)


def _draw_boundary(cv: Canvas, cam: Camera, s: dict, lay: dict, pal, rng, shade, texture) -> None:
    """A fence (mesh with posts and a top rail) or a wall (blocks with mortar joints and a coping) on the
    vertical plane along the outer sidewalk edge, over a random stretch of Z."""
    kind = s["boundary"]
    xplane = s["sidewalk"][1]
    z0 = rng.uniform(0, 15)
    z1 = z0 + rng.uniform(15, 60)
    Zc, Y = _facade_pixels(cv, cam, xplane, min(lay["z_end"], z1))
    cols = np.isfinite(Zc) & (Zc >= z0)
    if not cols.any():
        return
    zc, Yc = Zc[cols], Y[:, cols]
    if kind == "fence":
        hgt = rng.uniform(1.0, 2.0)
        c = pick_colour(rng, pal["fence"])
        post = np.mod(zc, 2.5) < 0.15
        mesh = (np.mod(zc[None, :] * 6 + Yc * 6, 1.0) < 0.3) | (np.mod(zc[None, :] * 6 - Yc * 6, 1.0) < 0.3)
        rail = (np.abs(Yc - hgt) < 0.06) | post[None, :]
        colr = np.where((mesh | rail)[..., None], c * shade, c * shade * 0.55 + 0.1)
        label = FENCE
    else:
        hgt = rng.uniform(1.2, 3.0)
        c = pick_colour(rng, pal["wall"])
        course = np.floor(Yc / 0.3)
        joint = (np.mod(Yc, 0.3) < 0.035) | (np.mod(zc[None, :] + 0.3 * np.mod(course, 2), 0.6) < 0.035)
        n = tile_lookup(noise_tile(rng, 64, 4), zc[None, :] * 3, Yc * 3)
        colr = c * shade * (1 + 0.1 * texture * n[..., None] - 0.25 * joint[..., None])
        colr = np.where((Yc > hgt - 0.15)[..., None], c * shade * 0.75, colr)
        label = WALL
    m = (Yc >= 0) & (Yc <= hgt)
    full = np.zeros((cv.h, cv.w), bool)
    full[:, cols] = m
    sub = cv.img[:, cols]
    sub[m] = colr[m]
    cv.img[:, cols] = sub
    cv.lab[full] = label
    cv.depth[full] = np.broadcast_to(zc[None, :], m.shape)[m]


def draw_street_end(cv: Canvas, cam: Camera, lay: dict, pal, rng, light) -> None:
    """The building closing a street shorter than the open-street 400 m, with a grid of windows."""
    if lay["z_end"] >= 399:
        return
    z = lay["z_end"]
    xl, xr = lay["left"]["facade"] - 20, lay["right"]["facade"] + 20
    hgt = rng.uniform(8, 25)
    c = pick_colour(rng, pal["building"]) * light["sun_front"]
    pts = cam.project([xl, xr, xr, xl], [0, 0, hgt, hgt], [z, z, z, z])
    cv.poly(pts, c, BUILDING, z)
    # windows as a grid of small quads
    wc = pick_colour(rng, pal["window"])
    for yy in np.arange(3.5, hgt - 1, 3.2):
        for xx in np.arange(xl + 1.0, xr - 1, 3.0):
            q = cam.project([xx, xx + 1.4, xx + 1.4, xx], [yy, yy, yy + 1.6, yy + 1.6], [z] * 4)
            cv.poly(q, wc, BUILDING, z)

