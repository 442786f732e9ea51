"""Scene layout: a random street in world coordinates (metres), and the objects placed on it.

Nothing is drawn here; the layout depends only on the random generator and the featured rare class, and
the object placement also on the camera (nothing nearer than the ground at the bottom image row).

:func:`street_layout` returns a dict: ``lane_w``, ``lanes_left`` / ``lanes_right`` (the camera drives in
lane 0 at X = 0; lanes left of it carry oncoming traffic), ``road`` (left and right road edge X),
``z_end`` (street length; 400 = open to the horizon, else a building closes it), ``crossing`` (Z of a
zebra crossing or ``None``), ``rails`` (tram rails in lane 0), and per side ``"left"`` / ``"right"``:
``sidewalk`` (inner and outer X), ``terrain`` (width of the grass / dirt strip behind it, 0 for none),
``facade`` (X of the facade plane), ``segments`` (facade pieces along Z: building, vegetation, wall or
gap) and ``boundary`` (``"fence"``, ``"wall"`` or ``None`` along the outer sidewalk edge).

:func:`place_objects` returns dicts with ``type`` ``"vehicle"`` (``label`` car / truck / bus / train,
``facing`` the camera), ``"person"``, ``"twowheel"`` (``kind`` bicycle / motorcycle, ``rider``),
``"pole"`` (``kind`` lamp / sign / light / pole) or ``"tree"``, and their ground position ``X``, ``Z``.
"""

from typing import List

import numpy as np

from .canvas import BIKE, BUS, CAR, FENCE, LIGHT, MOTO, RIDER, TERRAIN, TRAIN, TRUCK, WALL, Camera

__all__ = ["FEATURED", "street_layout", "place_objects"]

#: Classes that each image features in turn (so every class appears in any 10 consecutive images).
FEATURED = (TRAIN, BUS, TRUCK, MOTO, BIKE, RIDER, LIGHT, WALL, FENCE, TERRAIN)


# --------------------------------------------------------------------------------------------------
# Street
# --------------------------------------------------------------------------------------------------
def _side_segments(rng, z0: float, z1: float, featured: int, side_kind: str) -> List[dict]:
    """Facade segments along Z on one street side: building / vegetation / wall / gap."""
    segs, z = [], z0
    while z < z1:
        if side_kind == "park":
            kind = rng.choice(["veg", "veg", "gap", "wall"] if featured == WALL else ["veg", "veg", "gap"])
        else:
            kind = rng.choice(["building"] * 6 + ["veg", "gap"] + (["wall", "wall"] if featured == WALL else ["wall"]))
        length = {
            "building": rng.uniform(8, 25),
            "veg": rng.uniform(6, 20),
            "wall": rng.uniform(5, 15),
            "gap": rng.uniform(3, 10),
        }[kind]
        height = {"building": rng.uniform(7, 22), "veg": rng.uniform(3, 9), "wall": rng.uniform(1.5, 3.5), "gap": 0.0}[
            kind
        ]
        segs.append(dict(kind=str(kind), z0=z, z1=z + length, height=height, seed=int(rng.integers(1 << 30))))
        z += length
    return segs


def street_layout(rng: np.random.Generator, featured: int) -> dict:
    """Random street layout in world coordinates (metres)."""
    # the camera drives in lane 0 (centred on X = 0); lanes k < 0 carry oncoming traffic
    lanes_left, lanes_right = int(rng.integers(0, 3)), int(rng.integers(0, 2))
    lane_w = rng.uniform(3.0, 3.6)
    road_l, road_r = -(0.5 + lanes_left) * lane_w - 0.3, (0.5 + lanes_right) * lane_w + 0.3
    lay = dict(lane_w=lane_w, road=(road_l, road_r), lanes_left=lanes_left, lanes_right=lanes_right)
    z_end = rng.uniform(60, 160) if rng.random() < 0.5 else 400.0
    lay["z_end"] = z_end
    for side, edge in (("left", road_l), ("right", road_r)):
        sw = rng.uniform(1.8, 4.0)
        terrain = rng.uniform(1.5, 5.0) if (rng.random() < 0.45 or featured == TERRAIN) else 0.0
        kind = "park" if rng.random() < 0.2 else "urban"
        sgn = -1 if side == "left" else 1
        lay[side] = dict(
            sidewalk=(edge, edge + sgn * sw),
            terrain=terrain,
            facade=edge + sgn * (sw + terrain + rng.uniform(0.0, 1.0)),
            segments=_side_segments(rng, 0.0, z_end, featured, kind),
        )
        # boundary along the outer sidewalk edge: none, a fence or a wall
        u = rng.random()
        if featured == FENCE:
            lay[side]["boundary"] = "fence" if u < 0.9 else None
        elif featured == WALL:
            lay[side]["boundary"] = "wall" if u < 0.8 else None
        else:
            lay[side]["boundary"] = "fence" if u < 0.25 else ("wall" if u < 0.45 else None)
    lay["crossing"] = rng.uniform(8, 30) if rng.random() < 0.3 else None
    lay["rails"] = featured == TRAIN or rng.random() < 0.08
    return lay


def place_objects(rng: np.random.Generator, lay: dict, featured: int, cam: Camera, height: int) -> List[dict]:
    """Objects with world positions; sorted far to near by the caller."""
    objs: List[dict] = []
    z_bottom = cam.f * cam.h / max(1.0, height - cam.yh)  # depth of the ground at the bottom image row
    z_min = max(4.0, 0.9 * z_bottom)
    z_max = min(lay["z_end"] - 2, 120.0)
    road_l, road_r = lay["road"]
    lane_w = lay["lane_w"]

    def zpos(lo=z_min, hi=z_max):
        # more objects near the camera (uniform in 1/Z would be too sparse near; use a power law)
        return float(lo + (hi - lo) * rng.random() ** 1.8)

    lane_centres = [k * lane_w for k in range(-lay["lanes_left"], lay["lanes_right"] + 1)]
    # vehicles in lanes
    n_veh = int(rng.integers(2, 8))
    wanted = [featured] if featured in (TRUCK, BUS, TRAIN) else []
    feat_lane, feat_z = None, None
    for i in range(n_veh + len(wanted)):
        kind = wanted[i] if i < len(wanted) else int(rng.choice([CAR] * 8 + [TRUCK, BUS]))
        lane = lane_centres[int(rng.integers(len(lane_centres)))] if lane_centres else 0.0
        if kind == TRAIN:
            lane = 0.0 if lay["rails"] else lane
        z = zpos(6.0 if kind != CAR else z_min)
        if i < len(wanted):  # the featured vehicle: fairly near, and nothing in front of it in its lane
            z = float(rng.uniform(z_min + 2, max(z_min + 3, min(35.0, z_max))))
            feat_lane, feat_z = lane, z
        elif lane == feat_lane and z < feat_z + 15:
            z = feat_z + float(rng.uniform(15, 40)) + (30 if kind == TRAIN else 0)
        jitter = 0.0 if kind == TRAIN else rng.uniform(-0.3, 0.3)
        objs.append(dict(type="vehicle", label=kind, X=lane + jitter, Z=z, facing=lane < 0))
    # parked cars along the kerb
    for edge in (road_l, road_r):
        if rng.random() < 0.6:
            z = zpos(5.0, 40.0)
            for _ in range(int(rng.integers(1, 5))):
                objs.append(dict(type="vehicle", label=CAR, X=edge - np.sign(edge) * 1.2, Z=z, facing=edge < 0))
                z += rng.uniform(5.0, 8.0)
    # pedestrians on sidewalks, sometimes crossing
    for _ in range(int(rng.integers(2, 10))):
        side = lay["left" if rng.random() < 0.5 else "right"]
        a, b = sorted(side["sidewalk"])
        x = rng.uniform(a + 0.3, b - 0.3) if rng.random() < 0.85 else rng.uniform(road_l, road_r)
        objs.append(dict(type="person", X=x, Z=zpos(4.0, 35.0)))
    # two-wheelers: riders on the road edge or bike lane, parked ones on the sidewalk
    n2 = int(rng.integers(1, 3)) + (2 if featured in (MOTO, BIKE, RIDER) else 0)
    for i in range(n2):
        kind = "motorcycle" if (featured == MOTO and i == 0) or (featured != BIKE and rng.random() < 0.4) else "bicycle"
        ridden = rng.random() < 0.7 or (featured == RIDER and i == 0)
        if ridden:
            x = road_r - rng.uniform(0.6, 1.5) if rng.random() < 0.7 else rng.uniform(road_l + 1, road_r - 1)
        else:
            side = lay["left" if rng.random() < 0.5 else "right"]
            a, b = sorted(side["sidewalk"])
            x = rng.uniform(a + 0.5, b - 0.5)
        objs.append(dict(type="twowheel", kind=kind, rider=ridden, X=x, Z=zpos(4.0, 25.0)))
    # poles, lamps, lights, signs on the sidewalks
    for side in ("left", "right"):
        s = lay[side]
        x = s["sidewalk"][0] + np.sign(s["sidewalk"][0] or 1) * 0.5
        z = rng.uniform(3.0, 12.0)
        while z < z_max:
            kind = str(rng.choice(["lamp", "sign", "light", "pole", "sign"]))
            objs.append(dict(type="pole", kind=kind, X=x, Z=z))
            z += rng.uniform(8, 25)
    if featured == LIGHT or rng.random() < 0.7:
        objs.append(dict(type="pole", kind="light", X=lay["right"]["sidewalk"][0] + 0.5, Z=zpos(6.0, 25.0)))
    # trees on terrain strips / sidewalks
    for side in ("left", "right"):
        s = lay[side]
        if rng.random() < 0.5:
            xt = s["sidewalk"][1] + np.sign(s["sidewalk"][1]) * (s["terrain"] / 2 if s["terrain"] else -0.6)
            z = rng.uniform(5, 15)
            while z < z_max * 0.8:
                objs.append(dict(type="tree", X=xt, Z=z))
                z += rng.uniform(7, 15)
    return objs
