"""Drawing the objects: vehicles, persons, riders and two-wheelers, poles, lamps, traffic lights and signs, trees.

Each object is drawn with flat-shaded polygons, ellipses and lines of :class:`~.canvas.Canvas` at its own
depth (so the label follows), from the dict :func:`~.layout.place_objects` made for it and its own random
generator. Vehicles are 3D boxes: the visible side face, the top when seen from above, then the face
towards the camera (rear, or front for oncoming traffic), with windows, wheels and lights. The caller
draws the objects far to near (:func:`draw_object` one at a time).
"""

from typing import Sequence

import cv2
import numpy as np

from .canvas import BIKE, BUS, CAR, LIGHT, MOTO, PERSON, POLE, RIDER, ROAD, SIGN, TRAIN, TRUCK, VEG, pick_colour

__all__ = ["draw_object"]


def draw_object(cv, cam, o: dict, pal, rng, light) -> None:
    """Draw one object of :func:`~.layout.place_objects` (``o["type"]`` selects the drawing function)."""
    t = o["type"]
    if t == "vehicle":
        if o["label"] == CAR:
            _draw_car(cv, cam, o, pal, rng, light)
        elif o["label"] == TRUCK:
            _draw_truck(cv, cam, o, pal, rng, light)
        else:
            _draw_bus_or_train(cv, cam, o, pal, rng, light, o["label"])
    elif t == "person":
        _draw_person(cv, cam, o["X"], o["Z"], rng, pal, light)
    elif t == "twowheel":
        _draw_twowheeler(cv, cam, o, pal, rng, light)
    elif t == "pole":
        _draw_pole_group(cv, cam, o, pal, rng, light)
    elif t == "tree":
        _draw_tree(cv, cam, o, pal, rng, light)


# --------------------------------------------------------------------------------------------------
# Shared parts: box faces, wheels, shadows
# --------------------------------------------------------------------------------------------------
def _box_faces(cv, cam, X0, X1, Y0, Y1, Z0, Z1, c_back, c_side, label, facing_cam=True):
    """A box: the visible side face (if any) then the face at Z0 (towards the camera)."""
    if X0 > 0:
        xs = X0
    elif X1 < 0:
        xs = X1
    else:
        xs = None
    if xs is not None:
        cv.poly(cam.project([xs, xs, xs, xs], [Y0, Y0, Y1, Y1], [Z0, Z1, Z1, Z0]), c_side, label, Z0 + 0.5)
    if cam.h > Y1:  # top visible from above
        cv.poly(cam.project([X0, X1, X1, X0], [Y1] * 4, [Z0, Z0, Z1, Z1]), c_back * 1.1, label, Z0 + 0.5)
    cv.poly(cam.project([X0, X1, X1, X0], [Y0, Y0, Y1, Y1], [Z0] * 4), c_back, label, Z0)
    return xs


def _wheels_side(cv, cam, xs, zs: Sequence[float], r: float, label, tyre=(0.05, 0.05, 0.06)):
    for z in zs:
        c = cam.project(xs, r, z)
        rx = abs(cam.project(xs, r, z + r)[0] - cam.project(xs, r, z - r)[0]) / 2
        cv.ellipse(c, (max(rx, 0.5), cam.px(r, z)), tyre, label, z)
        cv.ellipse(c, (max(rx * 0.45, 0.5), cam.px(r * 0.45, z)), (0.55, 0.55, 0.58), label, z)


def _shadow(cv, cam, X0, X1, Z0, Z1, light):
    """Darken the road under a vehicle (image only; the label stays road)."""
    if light["shadow"] <= 0:
        return
    pts = cam.project([X0 - 0.2, X1 + 0.4, X1 + 0.4, X0 - 0.2], [0.01] * 4, [Z0 - 0.2, Z0 - 0.2, Z1 + 0.3, Z1 + 0.3])
    x0, y0 = np.floor(pts.min(0)).astype(int)
    x1, y1 = np.ceil(pts.max(0)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, cv.w), min(y1, cv.h)
    if x1 <= x0 or y1 <= y0:
        return
    p = np.round((pts - [x0, y0]) * 16).astype(np.int32).reshape(-1, 1, 2)
    m = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(m, [p], 1, cv2.LINE_8, 4)
    m = m.astype(bool) & (cv.lab[y0:y1, x0:x1] == ROAD)
    cv.img[y0:y1, x0:x1][m] *= 1 - light["shadow"]


# --------------------------------------------------------------------------------------------------
# Vehicles
# --------------------------------------------------------------------------------------------------
def _draw_car(cv, cam, o, pal, rng, light):
    """Car: body box with cabin, windows, wheels, lights and plate; rear view, or front view when oncoming."""
    X, Z, facing = o["X"], o["Z"], o["facing"]
    w, L, h = rng.uniform(1.7, 1.95), rng.uniform(3.9, 4.8), rng.uniform(1.4, 1.6)
    c = pick_colour(rng, pal["car"], 0.08)
    sun = light["sun_front"]
    glass = np.array([0.12, 0.15, 0.2], np.float32) + 0.25 * light["sky_top"]
    X0, X1 = X - w / 2, X + w / 2
    _shadow(cv, cam, X0, X1, Z, Z + L, light)
    hb = 0.95
    xs = _box_faces(cv, cam, X0, X1, 0.25, hb, Z, Z + L, c * sun, c * sun * 0.8, CAR)
    # cabin
    cz0, cz1 = Z + (0.9 if facing else 1.2), Z + L - (1.2 if facing else 0.9)
    ci = 0.12
    if xs is not None:
        xsc = xs + (ci if xs == X0 else -ci)
        cv.poly(cam.project([xsc] * 4, [hb, hb, h, h], [Z + 0.5, Z + L - 0.5, cz1, cz0]), c * sun * 0.75, CAR, Z + 0.6)
        cv.poly(
            cam.project(
                [xsc] * 4, [hb + 0.08, hb + 0.08, h - 0.06, h - 0.06], [Z + 0.7, Z + L - 0.7, cz1 - 0.1, cz0 + 0.1]
            ),
            glass,
            CAR,
            Z + 0.6,
        )
        _wheels_side(cv, cam, xs, (Z + 0.8, Z + L - 0.85), 0.33, CAR)
    cv.poly(
        cam.project([X0 + ci, X1 - ci, X1 - ci - 0.15, X0 + ci + 0.15], [hb, hb, h, h], [Z + 0.5, Z + 0.5, cz0, cz0]),
        c * sun * 0.95,
        CAR,
        Z + 0.3,
    )
    cv.poly(
        cam.project(
            [X0 + ci + 0.08, X1 - ci - 0.08, X1 - ci - 0.2, X0 + ci + 0.2],
            [hb + 0.05] * 2 + [h - 0.06] * 2,
            [Z + 0.52, Z + 0.52, cz0, cz0],
        ),
        glass,
        CAR,
        Z + 0.3,
    )
    # wheels under the body, lights, plate
    for xw in (X0 + 0.05, X1 - 0.3):
        cv.poly(
            cam.project([xw, xw + 0.25, xw + 0.25, xw], [0, 0, 0.3, 0.3], [Z + 0.1] * 4), (0.05, 0.05, 0.06), CAR, Z
        )
    lamp = (0.95, 0.92, 0.8) if facing else (0.85, 0.08, 0.05)
    for xl in (X0 + 0.08, X1 - 0.38):
        cv.poly(cam.project([xl, xl + 0.3, xl + 0.3, xl], [0.65, 0.65, 0.8, 0.8], [Z] * 4), lamp, CAR, Z)
    cv.poly(
        cam.project([X - 0.25, X + 0.25, X + 0.25, X - 0.25], [0.35, 0.35, 0.47, 0.47], [Z] * 4),
        (0.92, 0.92, 0.9),
        CAR,
        Z,
    )


def _draw_truck(cv, cam, o, pal, rng, light):
    """Truck: cab and cargo box (seen from the rear the cab is beyond the box; oncoming, it is nearest)."""
    X, Z = o["X"], o["Z"]
    w, h = rng.uniform(2.3, 2.55), rng.uniform(3.2, 3.9)
    Lbox, Lcab = rng.uniform(5, 8), 2.2
    sun = light["sun_front"]
    cbox, ccab = pick_colour(rng, pal["truck"]), pick_colour(rng, pal["truck"])
    X0, X1 = X - w / 2, X + w / 2
    _shadow(cv, cam, X0, X1, Z, Z + Lbox + Lcab, light)
    # cab behind the box (seen from the rear) or in front (oncoming)
    if o["facing"]:
        zc0, zb0 = Z, Z + Lcab + 0.3
    else:
        zb0, zc0 = Z, Z + Lbox + 0.3
    hc = 2.9
    items = sorted([(zc0, "cab"), (zb0, "box")], reverse=True)
    for z0, kind in items:
        if kind == "cab":
            xs = _box_faces(cv, cam, X0 + 0.05, X1 - 0.05, 0.5, hc, z0, z0 + Lcab, ccab * sun, ccab * sun * 0.8, TRUCK)
            glass = np.array([0.12, 0.15, 0.2], np.float32) + 0.2 * light["sky_top"]
            if xs is not None:
                cv.poly(
                    cam.project([xs] * 4, [1.6, 1.6, hc - 0.3, hc - 0.3], [z0 + 0.3, z0 + 1.4, z0 + 1.4, z0 + 0.3]),
                    glass,
                    TRUCK,
                    z0,
                )
                _wheels_side(cv, cam, xs, (z0 + 1.1,), 0.5, TRUCK)
            if o["facing"]:
                cv.poly(
                    cam.project([X0 + 0.2, X1 - 0.2, X1 - 0.2, X0 + 0.2], [1.6, 1.6, hc - 0.25, hc - 0.25], [z0] * 4),
                    glass,
                    TRUCK,
                    z0,
                )
        else:
            xs = _box_faces(cv, cam, X0, X1, 0.9, h, z0, z0 + Lbox, cbox * sun, cbox * sun * 0.8, TRUCK)
            if xs is not None:
                _wheels_side(cv, cam, xs, (z0 + 1.0, z0 + Lbox - 1.2), 0.5, TRUCK)
            if not o["facing"]:
                cv.line(
                    cam.project(X, 1.0, z0), cam.project(X, h - 0.1, z0), cbox * sun * 0.5, TRUCK, z0, cam.px(0.06, z0)
                )
    for xw in (X0 + 0.05, X1 - 0.45):
        cv.poly(
            cam.project([xw, xw + 0.4, xw + 0.4, xw], [0, 0, 0.95, 0.95], [Z + 0.2] * 4), (0.06, 0.06, 0.07), TRUCK, Z
        )


def _draw_bus_or_train(cv, cam, o, pal, rng, light, label):
    """Bus (``label`` BUS) or tram (TRAIN, with a pantograph): a long box with a window band and a stripe."""
    X, Z = o["X"], o["Z"]
    if label == BUS:
        w, h, L, hw0 = 2.55, rng.uniform(3.0, 3.3), rng.uniform(11, 13), 1.1
        c = pick_colour(rng, pal["bus"])
    else:
        w, h, L, hw0 = 2.65, 3.5, rng.uniform(25, 35), 1.3
        c = pick_colour(rng, pal["train"])
    sun = light["sun_front"]
    X0, X1 = X - w / 2, X + w / 2
    _shadow(cv, cam, X0, X1, Z, Z + L, light)
    y0 = 0.3 if label == BUS else 0.45
    xs = _box_faces(cv, cam, X0, X1, y0, h, Z, Z + L, c * sun, c * sun * 0.8, label)
    glass = np.array([0.10, 0.12, 0.16], np.float32) + 0.2 * light["sky_top"]
    stripe = c * 0.5 if label == BUS else np.array([0.75, 0.1, 0.1], np.float32)
    if xs is not None:
        pitch = 1.3 if label == BUS else 1.6
        for zz in np.arange(Z + 0.6, Z + L - 0.8, pitch):
            cv.poly(
                cam.project([xs] * 4, [hw0, hw0, h - 0.5, h - 0.5], [zz, zz + pitch - 0.25, zz + pitch - 0.25, zz]),
                glass,
                label,
                zz,
            )
        cv.poly(
            cam.project([xs] * 4, [y0 + 0.2, y0 + 0.2, y0 + 0.45, y0 + 0.45], [Z, Z + L, Z + L, Z]),
            stripe,
            label,
            Z + 1,
        )
        if label == BUS:
            _wheels_side(cv, cam, xs, (Z + 2.2, Z + L - 3.0), 0.5, label)
    # front / rear window
    cv.poly(
        cam.project([X0 + 0.15, X1 - 0.15, X1 - 0.15, X0 + 0.15], [hw0 + 0.3] * 2 + [h - 0.3] * 2, [Z] * 4),
        glass,
        label,
        Z,
    )
    if label == TRAIN:
        cv.line(
            cam.project(X, h, Z + 3),
            cam.project(X - 0.4, h + 1.2, Z + 4),
            (0.2, 0.2, 0.2),
            label,
            Z + 3,
            cam.px(0.05, Z),
        )
        cv.poly(
            cam.project([X0 + 0.2, X1 - 0.2, X1 - 0.2, X0 + 0.2], [y0 + 0.2] * 2 + [y0 + 0.45] * 2, [Z] * 4),
            stripe,
            label,
            Z,
        )
    lamp = (0.95, 0.92, 0.8) if o["facing"] else (0.85, 0.1, 0.05)
    for xl in (X0 + 0.15, X1 - 0.45):
        cv.poly(cam.project([xl, xl + 0.3, xl + 0.3, xl], [0.6, 0.6, 0.8, 0.8], [Z] * 4), lamp, label, Z)
    if label == BUS:
        for xw in (X0 + 0.05, X1 - 0.35):
            cv.poly(
                cam.project([xw, xw + 0.3, xw + 0.3, xw], [0, 0, 0.5, 0.5], [Z + 0.2] * 4), (0.05, 0.05, 0.06), BUS, Z
            )


# --------------------------------------------------------------------------------------------------
# People, riders and two-wheelers
# --------------------------------------------------------------------------------------------------
def _draw_person(cv, cam, X, Z, rng, pal, light, label=PERSON, seated=False, Y0=0.0, d=1):
    """Walking person (legs, torso, arms, head, hair) or, ``seated``, a rider at seat height ``Y0`` facing ``d``."""
    hgt = rng.uniform(1.55, 1.9)
    shirt, trousers = pick_colour(rng, pal["clothes"]), pick_colour(rng, pal["clothes"])
    skin = pick_colour(rng, pal["skin"], 0.04)
    sun = light["sun_front"]
    if not seated:
        step = rng.uniform(-0.18, 0.18)
        for dx, st in ((-0.1, step), (0.1, -step)):
            cv.line(
                cam.project(X + dx, 0.85 * hgt / 1.75, Z),
                cam.project(X + dx + st, 0.05, Z),
                trousers * sun,
                label,
                Z,
                cam.px(0.15, Z),
            )
        ytor = 0.85 * hgt / 1.75
    else:
        ytor = Y0
        cv.line(
            cam.project(X, ytor, Z), cam.project(X + 0.3 * d, ytor - 0.55, Z), trousers * sun, label, Z, cam.px(0.14, Z)
        )
    ytop = ytor + 0.62 * hgt / 1.75
    lean = 0.25 * d if seated else 0.0
    cv.poly(
        cam.project([X - 0.2, X + 0.2, X + 0.2 + lean, X - 0.2 + lean], [ytor, ytor, ytop, ytop], [Z] * 4),
        shirt * sun,
        label,
        Z,
    )
    for dx in (-0.23, 0.23):
        arm_end = (X + dx + (0.45 * d if seated else 0.02), ytor + (0.15 if seated else 0.0))
        cv.line(
            cam.project(X + dx * 0.9 + lean, ytop - 0.05, Z),
            cam.project(*arm_end, Z),
            shirt * sun * 0.9,
            label,
            Z,
            cam.px(0.09, Z),
        )
    head = cam.project(X + lean, ytop + 0.13, Z)
    cv.ellipse(head, (cam.px(0.1, Z), cam.px(0.13, Z)), skin * sun, label, Z)
    if seated and label == RIDER and rng.random() < 0.7:  # helmet
        cv.ellipse(
            cam.project(X + lean, ytop + 0.18, Z),
            (cam.px(0.12, Z), cam.px(0.1, Z)),
            pick_colour(rng, pal["clothes"]),
            label,
            Z,
        )
    else:
        cv.ellipse(
            cam.project(X + lean, ytop + 0.2, Z),
            (cam.px(0.1, Z), cam.px(0.06, Z)),
            np.array([0.15, 0.1, 0.05], np.float32),
            label,
            Z,
        )


def _draw_twowheeler(cv, cam, o, pal, rng, light):
    """Bicycle (frame of lines) or motorcycle (body, seat, fork), side view, with its rider if ``o['rider']``."""
    X, Z, motor = o["X"], o["Z"], o["kind"] == "motorcycle"
    label = MOTO if motor else BIKE
    r = 0.32 if motor else 0.34
    sun = light["sun_front"]
    d = -1 if rng.random() < 0.5 else 1
    xa, xb = X - 0.6 * d, X + 0.6 * d
    tyre = max(cam.px(0.1 if motor else 0.06, Z), 1)
    frame = pick_colour(rng, pal["twowheel"])
    for xw in (xa, xb):
        c = cam.project(xw, r, Z)
        rad = cam.px(r, Z)
        cv.ellipse(c, (rad, rad), (0.06, 0.06, 0.07), label, Z, thickness=max(int(round(tyre)), 1))
    if motor:
        cv.poly(
            cam.project([xa + 0.1 * d, xb - 0.2 * d, xb - 0.35 * d, xa + 0.1 * d], [0.35, 0.45, 0.95, 0.8], [Z] * 4),
            frame * sun,
            label,
            Z,
        )
        cv.poly(
            cam.project([X - 0.35 * d, X + 0.2 * d, X + 0.2 * d, X - 0.35 * d], [0.55, 0.55, 0.75, 0.75], [Z] * 4),
            (0.25, 0.25, 0.27),
            label,
            Z,
        )
        cv.line(cam.project(xb, r, Z), cam.project(xb - 0.25 * d, 1.1, Z), (0.3, 0.3, 0.3), label, Z, cam.px(0.06, Z))
    else:
        th = max(cam.px(0.06, Z), 1)
        pts = {
            "rear": (xa, r),
            "crank": (X - 0.05 * d, r - 0.02),
            "seat": (X - 0.2 * d, 0.95),
            "head": (xb - 0.15 * d, 1.0),
            "front": (xb, r),
        }
        for a, b in (
            ("rear", "crank"),
            ("crank", "seat"),
            ("seat", "head"),
            ("head", "crank"),
            ("rear", "seat"),
            ("head", "front"),
        ):
            cv.line(cam.project(*pts[a], Z), cam.project(*pts[b], Z), frame * sun, label, Z, th)
        cv.line(cam.project(xb - 0.15 * d, 1.0, Z), cam.project(xb - 0.3 * d, 1.1, Z), (0.1, 0.1, 0.1), label, Z, th)
    if o.get("rider"):
        _draw_person(
            cv, cam, X - 0.3 * d, Z - 0.05, rng, pal, light, label=RIDER, seated=True, Y0=(0.9 if motor else 0.95), d=d
        )


# --------------------------------------------------------------------------------------------------
# Street furniture and trees
# --------------------------------------------------------------------------------------------------
def _draw_pole_group(cv, cam, o, pal, rng, light):
    """Pole with what it carries: a street lamp, one or two traffic lights, a traffic sign, or nothing."""
    X, Z, kind = o["X"], o["Z"], o["kind"]
    sun = light["sun_front"]
    pc = pick_colour(rng, pal["pole"])
    width = rng.uniform(0.12, 0.25)
    height = {
        "lamp": rng.uniform(6, 9),
        "light": rng.uniform(3.0, 4.2),
        "sign": rng.uniform(2.3, 3.2),
        "pole": rng.uniform(3, 8),
    }[kind]
    cv.poly(
        cam.project([X - width / 2, X + width / 2, X + width / 2, X - width / 2], [0, 0, height, height], [Z] * 4),
        pc * sun,
        POLE,
        Z,
    )
    if kind == "lamp":
        tox = -np.sign(X) * rng.uniform(1.0, 2.5)
        cv.line(
            cam.project(X, height - 0.1, Z), cam.project(X + tox, height + 0.2, Z), pc * sun, POLE, Z, cam.px(0.1, Z)
        )
        cv.poly(
            cam.project(
                [X + tox - 0.3, X + tox + 0.3, X + tox + 0.3, X + tox - 0.3],
                [height, height, height + 0.2, height + 0.2],
                [Z] * 4,
            ),
            pc * 0.8,
            POLE,
            Z,
        )
    elif kind == "light":
        n_heads = 2 if rng.random() < 0.5 else 1
        box = pick_colour(rng, pal["light_box"], 0.03)
        state = int(rng.integers(3))
        for j in range(n_heads):
            if j == 0:
                bx, by = X, height
            else:  # second head hanging from an arm over the road
                tox = -np.sign(X) * rng.uniform(2.5, 4.5)
                cv.line(
                    cam.project(X, height + 0.9, Z),
                    cam.project(X + tox, height + 0.9, Z),
                    pc * sun,
                    POLE,
                    Z,
                    cam.px(0.12, Z),
                )
                bx, by = X + tox, height - 0.2
            bw, bh = 0.45, 1.25
            cv.poly(
                cam.project(
                    [bx - bw / 2, bx + bw / 2, bx + bw / 2, bx - bw / 2], [by, by, by + bh, by + bh], [Z - 0.1] * 4
                ),
                box * sun,
                LIGHT,
                Z - 0.1,
            )
            for k, lamp in enumerate(((0.95, 0.1, 0.05), (0.95, 0.7, 0.05), (0.1, 0.9, 0.3))):
                on = k == state
                col = np.array(lamp, np.float32) * (1.0 if on else 0.25) + (0.0 if on else 0.05)
                cv.ellipse(
                    cam.project(bx, by + bh - 0.21 - k * 0.4, Z - 0.12),
                    (cam.px(0.13, Z), cam.px(0.13, Z)),
                    col,
                    LIGHT,
                    Z - 0.12,
                )
    elif kind == "sign":
        shape = int(rng.integers(4))
        sc = pick_colour(rng, pal["sign"], 0.03)
        cy, size = height + 0.4, rng.uniform(0.7, 1.1)
        centre = cam.project(X, cy, Z - 0.05)
        r = cam.px(size / 2, Z)
        if shape == 0:  # prohibition disc: red ring, white inside
            cv.ellipse(centre, (r, r), (0.85, 0.1, 0.1), SIGN, Z - 0.05)
            cv.ellipse(centre, (r * 0.72, r * 0.72), (0.95, 0.95, 0.95), SIGN, Z - 0.05)
        elif shape == 1:  # mandatory: blue disc
            cv.ellipse(centre, (r, r), (0.1, 0.3, 0.8), SIGN, Z - 0.05)
            cv.line(centre - [r * 0.5, 0], centre + [r * 0.5, 0], (0.95, 0.95, 0.95), SIGN, Z, max(r * 0.25, 1))
        elif shape == 2:  # warning triangle
            tri = centre + np.array([[0, -r], [r * 0.95, r * 0.7], [-r * 0.95, r * 0.7]])
            cv.poly(tri, (0.85, 0.1, 0.1), SIGN, Z - 0.05)
            cv.poly(centre + (tri - centre) * 0.6, (0.95, 0.95, 0.95), SIGN, Z - 0.05)
        else:  # square information sign
            cv.poly(centre + np.array([[-r, -r], [r, -r], [r, r], [-r, r]]), sc * sun, SIGN, Z - 0.05)
            cv.poly(centre + np.array([[-r, -r], [r, -r], [r, r], [-r, r]]) * 0.6, (0.95, 0.95, 0.95), SIGN, Z - 0.05)


def _draw_tree(cv, cam, o, pal, rng, light):
    """Tree: trunk and a crown of overlapping ellipses (labelled vegetation)."""
    X, Z = o["X"], o["Z"]
    hgt = rng.uniform(4, 9)
    trunk = np.array([0.3, 0.22, 0.15], np.float32) * light["sun_front"]
    cv.poly(cam.project([X - 0.12, X + 0.12, X + 0.1, X - 0.1], [0, 0, hgt * 0.6, hgt * 0.6], [Z] * 4), trunk, VEG, Z)
    base = pick_colour(rng, pal["veg"])
    for _ in range(int(rng.integers(4, 8))):
        dx, dy = rng.uniform(-1.5, 1.5), hgt * rng.uniform(0.55, 0.95)
        rr = rng.uniform(0.9, 1.8)
        col = base * rng.uniform(0.75, 1.2) * light["sun_front"]
        cv.ellipse(cam.project(X + dx, dy, Z), (cam.px(rr, Z), cam.px(rr * 0.85, Z)), col, VEG, Z)

