"""Benchmark data sets of ``facealign evaluate``: AFLW2000-3D and photos with 68 landmarks.

* :func:`open_aflw2000` -> :class:`AFLW2000Set`: the one AFLW2000-3D loader, for both layouts
  (the official ``imageNNNNN.jpg`` + ``.mat`` folder, optionally with the ``3ddfa-protocol``
  arrays of cleardusk/3DDFA), both |yaw| splits (:data:`YAW_SPLITS`), ``--limit`` subsets.
* :func:`open_landmarks68` -> list of :class:`AnnotatedImage`: images with 300-W / iBUG ``.pts``
  files (:func:`read_pts`, :func:`write_pts`) or an annotations JSON.

Every path comes from the caller (nothing reads a fixed data location). Landmarks are float64
image pixels (x right, y down, pixel (0, 0) centred at (0, 0)); angles are degrees. Every
layout problem is a :class:`DatasetLayoutError` whose message names the file at fault.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facealign_cli.core import geometry as G

#: The two |yaw| splits of AFLW2000-3D. ``fit``: yaw of the BFM fit (``AFLW2000-3D.pose.npy``,
#: identical to ``Pose_Para`` yaw), the split of the published 3DDFA / 3DDFA-V2 / SynergyNet
#: tables. ``aflw``: |yaw| from the original AFLW labels (``AFLW2000-3D-new.pose.npy``), only
#: available with the ``3ddfa-protocol`` folder.
YAW_SPLITS = {
    "fit": "yaw of the BFM fit (AFLW2000-3D.pose.npy / Pose_Para)",
    "aflw": "|yaw| of the AFLW labels (AFLW2000-3D-new.pose.npy)",
}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".JPG", ".JPEG", ".PNG")


class DatasetLayoutError(ValueError):
    """A benchmark folder does not have the expected layout (missing files, wrong counts)."""


def select_indices(n: int, limit: int = 0) -> np.ndarray:
    """Indices evaluated under ``--limit``: ``limit`` indices spread evenly over ``range(n)``
    (so that a quick run still covers every yaw bin), or all when ``limit`` is 0 or >= n.

    Returns:
        (k,) int64 sorted unique indices.
    """
    if limit <= 0 or limit >= n:
        return np.arange(n, dtype=np.int64)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(np.int64))


def read_dataset_image(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 BGR image of a data set (``cv2.imread``, colour).

    Raises:
        DatasetLayoutError: the file cannot be read or decoded.
    """
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DatasetLayoutError(f"cannot read image {path}")
    return img


def _listing(paths, n: int = 5) -> str:
    paths = [str(p) for p in paths]
    more = f" (and {len(paths) - n} more)" if len(paths) > n else ""
    return ", ".join(paths[:n]) + more


@dataclass
class AFLW2000Set:
    """AFLW2000-3D (or a ``--limit`` subset of it), from :func:`open_aflw2000`.

    Attributes:
        root: the folder with ``imageNNNNN.jpg`` + ``imageNNNNN.mat``.
        layout: ``"3ddfa-protocol"`` (the benchmark arrays were found in
            ``root/3ddfa-protocol``) or ``"official"`` (only the ``.jpg`` / ``.mat`` pairs).
        names: B image file names.
        indices: (B,) int64 positions in the full list (keys of the occluders).
        n_total: size of the full list (2000).
        roi_boxes: (B, 4) float64 ``[sx, sy, ex, ey]`` crop boxes, image pixels: the protocol's
            ``AFLW2000-3D_crop.roi_box.npy``, or, in the official layout,
            :func:`facealign_cli.core.geometry.roi_box_from_landmarks` of ``pt3d_68`` (3DDFA's rule;
            within 1 px of the protocol boxes).
        pts68: (B, 68, 3) float64 ground truth as stored: x, y image pixels, z depth in pixel
            units pointing *towards* the viewer (the nose tip has the largest z).
        yaw_splits: split name (:data:`YAW_SPLITS`) -> (B,) yaw in degrees. ``fit`` always;
            ``aflw`` only with the protocol folder.
        pose: (B, 3) float64 ``[yaw, pitch, roll]`` degrees from ``Pose_Para``.
    """

    root: Path
    layout: str
    names: list[str]
    indices: np.ndarray
    n_total: int
    roi_boxes: np.ndarray
    pts68: np.ndarray
    yaw_splits: dict[str, np.ndarray]
    pose: np.ndarray

    def __len__(self) -> int:
        return len(self.names)

    @property
    def roi_source(self) -> str:
        """Where the roi boxes come from, in words."""
        if self.layout == "3ddfa-protocol":
            return "3ddfa-protocol/AFLW2000-3D_crop.roi_box.npy"
        return "roi_box_from_landmarks(pt3d_68) (3DDFA rule: square of side sqrt(2)*max(w,h))"

    def read_image(self, i: int) -> np.ndarray:
        """(450, 450, 3) uint8 BGR image ``i`` of the subset.

        Raises:
            DatasetLayoutError: the file cannot be decoded.
        """
        return read_dataset_image(self.root / self.names[i])

    def pts68_output_frame(self) -> np.ndarray:
        """(B, 68, 3) ground truth in facealign's output frame (z away from the camera)."""
        p = self.pts68.copy()
        p[..., 2] *= -1
        return p


def _load_mat(path: Path, keys: tuple[str, ...]) -> dict:
    import scipy.io as sio

    try:
        m = sio.loadmat(str(path), variable_names=list(keys))
    except Exception as exc:  # scipy raises several types for corrupt files
        raise DatasetLayoutError(f"cannot read {path}: {exc}") from exc
    missing = [k for k in keys if k not in m]
    if missing:
        raise DatasetLayoutError(f"{path} lacks {', '.join(missing)} (not an AFLW2000-3D .mat)")
    return m


def open_aflw2000(root: str | Path, limit: int = 0) -> AFLW2000Set:
    """Open AFLW2000-3D in either layout and check it.

    * With ``root/3ddfa-protocol`` (3DDFA, Zhu et al. TPAMI 2017; file names as in
      cleardusk/3DDFA): the image list, roi boxes, ground truth and both yaw splits come from its
      arrays; every listed image must have its ``.jpg`` and ``.mat``.
    * Without it (the official folder of ``.jpg`` + ``.mat`` pairs): all pairs, sorted by name;
      roi boxes from ``pt3d_68`` with 3DDFA's landmark rule, the ``fit`` yaw split from
      ``Pose_Para`` yaw (the same values as ``AFLW2000-3D.pose.npy``); the ``aflw`` split is
      unavailable.

    Head pose always comes from ``Pose_Para`` (pitch, yaw, roll in radians -> degrees).

    Args:
        root: the AFLW2000-3D folder.
        limit: evaluate only this many images, spread evenly (:func:`select_indices`); 0 = all.

    Raises:
        DatasetLayoutError: not a folder, missing files, arrays of different lengths or shapes,
            unpaired ``.jpg`` / ``.mat``, unreadable ``.mat``.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetLayoutError(f"{root} is not a folder")
    proto = root / "3ddfa-protocol"
    if proto.is_dir():
        layout, (subset, mats) = "3ddfa-protocol", _open_3ddfa_protocol(root, proto, limit)
    else:
        layout, (subset, mats) = "official", _open_official(root, limit)
    return AFLW2000Set(root=root, layout=layout, **subset, pose=_poses(subset["names"], mats))


#: ``(fields of AFLW2000Set but root, layout and pose, the loaded .mat of each image)``
_Subset = tuple[dict, list[dict]]


def _protocol_arrays(proto: Path):
    """``(names, roi (N, 4), pts68 (N, 3, 68), fit yaw (N,), aflw yaw (N,) or None)`` of
    ``root/3ddfa-protocol``, their shapes checked against its list of names."""
    need = ["AFLW2000-3D_crop.list", "AFLW2000-3D_crop.roi_box.npy", "AFLW2000-3D.pts68.npy",
            "AFLW2000-3D.pose.npy"]
    missing = [n for n in need if not (proto / n).is_file()]
    if missing:
        raise DatasetLayoutError(f"{proto} lacks {', '.join(missing)}")
    try:
        all_names = (proto / "AFLW2000-3D_crop.list").read_text().split()
        roi = np.load(proto / "AFLW2000-3D_crop.roi_box.npy").astype(np.float64)
        pts = np.load(proto / "AFLW2000-3D.pts68.npy").astype(np.float64)
        yaw_fit = np.load(proto / "AFLW2000-3D.pose.npy").astype(np.float64).reshape(-1)
        new = proto / "AFLW2000-3D-new.pose.npy"
        yaw_aflw = (np.load(new).astype(np.float64).reshape(-1) if new.is_file() else None)
    except (OSError, ValueError) as exc:
        raise DatasetLayoutError(f"cannot read the arrays of {proto}: {exc}") from exc
    n = len(all_names)
    if roi.shape != (n, 4) or pts.shape != (n, 3, 68) or yaw_fit.shape != (n,) or (
            yaw_aflw is not None and yaw_aflw.shape != (n,)):
        raise DatasetLayoutError(
            f"the arrays of {proto} do not match AFLW2000-3D_crop.list ({n} names): roi_box "
            f"{roi.shape} (want ({n}, 4)), pts68 {pts.shape} (want ({n}, 3, 68)), pose "
            f"{yaw_fit.shape}" + ("" if yaw_aflw is None else f", new pose {yaw_aflw.shape}"))
    if n == 0:
        raise DatasetLayoutError(f"{proto / 'AFLW2000-3D_crop.list'} is empty")
    return all_names, roi, pts, yaw_fit, yaw_aflw


def _open_3ddfa_protocol(root: Path, proto: Path, limit: int) -> _Subset:
    """The subset of AFLW2000-3D listed by ``root/3ddfa-protocol`` (see :func:`open_aflw2000`)."""
    all_names, roi, pts, yaw_fit, yaw_aflw = _protocol_arrays(proto)
    n = len(all_names)
    lacking = [f for nm in all_names for f in (nm, Path(nm).with_suffix(".mat").name)
               if not (root / f).is_file()]
    if lacking:
        raise DatasetLayoutError(
            f"{len(lacking)} file(s) listed by the 3ddfa protocol are missing from {root} "
            f"(each image needs its .jpg and .mat): {_listing(lacking)}")
    idx = select_indices(n, limit)
    names = [all_names[i] for i in idx]
    roi, pts = roi[idx], pts[idx].transpose(0, 2, 1)
    splits = {"fit": yaw_fit[idx]}
    if yaw_aflw is not None:
        splits["aflw"] = yaw_aflw[idx]
    mats = [_load_mat(root / Path(nm).with_suffix(".mat").name, ("Pose_Para",))
            for nm in names]
    return _subset(names, idx, n, roi, pts, splits), mats


def _open_official(root: Path, limit: int) -> _Subset:
    """The subset of the official folder of ``.jpg`` + ``.mat`` pairs (see
    :func:`open_aflw2000`)."""
    jpgs = {p.stem for p in root.glob("*.jpg")}
    matf = {p.stem for p in root.glob("*.mat")}
    if not jpgs and not matf:
        raise DatasetLayoutError(
            f"{root} holds no AFLW2000-3D files: expected imageNNNNN.jpg + imageNNNNN.mat "
            "pairs (official layout), optionally with a 3ddfa-protocol/ folder")
    _check_pairs(root, jpgs, matf)
    stems = sorted(jpgs)
    n = len(stems)
    idx = select_indices(n, limit)
    names = [stems[i] + ".jpg" for i in idx]
    mats = [_load_mat(root / (stems[i] + ".mat"), ("Pose_Para", "pt3d_68")) for i in idx]
    pts = _pt3d_68(names, mats)
    roi = np.stack([G.roi_box_from_landmarks(p) for p in pts]).astype(np.float64)
    splits = {"fit": np.array([math.degrees(float(m["Pose_Para"].reshape(-1)[1]))
                               for m in mats])}
    return _subset(names, idx, n, roi, pts, splits), mats


def _subset(names, indices, n_total, roi_boxes, pts68, yaw_splits) -> dict:
    """The keyword arguments of :class:`AFLW2000Set` that a layout gives."""
    return {"names": names, "indices": indices, "n_total": n_total, "roi_boxes": roi_boxes,
            "pts68": pts68, "yaw_splits": yaw_splits}


def _check_pairs(root: Path, jpg_stems: set[str], mat_stems: set[str]) -> None:
    """Raises DatasetLayoutError naming the ``.jpg`` without ``.mat`` and back."""
    no_mat, no_jpg = sorted(jpg_stems - mat_stems), sorted(mat_stems - jpg_stems)
    if no_mat or no_jpg:
        parts = []
        if no_mat:
            parts.append(f"{len(no_mat)} .jpg without .mat: "
                         f"{_listing([s + '.jpg' for s in no_mat])}")
        if no_jpg:
            parts.append(f"{len(no_jpg)} .mat without .jpg: "
                         f"{_listing([s + '.mat' for s in no_jpg])}")
        raise DatasetLayoutError(f"unpaired files in {root}: " + "; ".join(parts))


def _pt3d_68(names: list[str], mats: list[dict]) -> np.ndarray:
    """(B, 68, 3) float64 ``pt3d_68`` of each ``.mat`` (stored (3, 68))."""
    pts = []
    for nm, m in zip(names, mats):
        p = np.asarray(m["pt3d_68"], dtype=np.float64)
        if p.shape != (3, 68):
            raise DatasetLayoutError(f"{nm}: pt3d_68 has shape {p.shape}, want (3, 68)")
        pts.append(p.T)
    return np.stack(pts)


def _poses(names: list[str], mats: list[dict]) -> np.ndarray:
    """(B, 3) float64 (yaw, pitch, roll) in degrees from each ``.mat``'s ``Pose_Para``."""
    pose = []
    for nm, m in zip(names, mats):
        pp = np.asarray(m["Pose_Para"], dtype=np.float64).reshape(-1)
        if pp.size < 3:
            raise DatasetLayoutError(f"{nm}: Pose_Para has {pp.size} values, want 7")
        pitch, yw, roll = np.degrees(pp[:3])
        pose.append((yw, pitch, roll))
    return np.array(pose, dtype=np.float64).reshape(-1, 3)


@dataclass
class AnnotatedImage:
    """One image with its annotated faces (``landmarks68`` protocol).

    Attributes:
        path: the image file.
        faces: list of (68, 2) float64 landmarks, 0-based image pixels (pixel (0, 0) has its
            centre at (0, 0)), iBUG 68-point order.
        sources: one label per face (the ``.pts`` file or ``annotations.json:stem#k``).
    """

    path: Path
    faces: list[np.ndarray]
    sources: list[str]


def read_pts(path: str | Path) -> np.ndarray:
    """Read a 300-W / iBUG ``.pts`` file (``version: 1``, ``n_points: K``, ``{``, K lines
    ``x y``, ``}``).

    Coordinates are returned as written (300-W files are 1-based; see
    :func:`open_landmarks68`).

    Returns:
        (K, 2) float64.

    Raises:
        DatasetLayoutError: malformed file: no header or braces, a point count other than
            ``n_points``, a point line that is not two finite numbers (the message names the
            file and the point).
    """
    path = Path(path)
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()
                 if ln.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetLayoutError(f"cannot read {path}: {exc}") from exc
    try:
        n = next(int(ln.split(":", 1)[1]) for ln in lines if ln.lower().startswith("n_points"))
        i0, i1 = lines.index("{"), lines.index("}")
    except (StopIteration, ValueError, IndexError) as exc:
        raise DatasetLayoutError(f"{path} is not a .pts file (version / n_points / {{ x y }})"
                                 ) from exc
    body = lines[i0 + 1:i1]
    if len(body) != n:
        raise DatasetLayoutError(f"{path}: n_points is {n} but {len(body)} points are listed")
    pts = np.empty((n, 2), dtype=np.float64)
    for i, ln in enumerate(body):
        values = ln.split()
        try:
            xy = [float(v) for v in values] if len(values) == 2 else None
        except ValueError:  # not a number
            xy = None
        if xy is None or not all(math.isfinite(v) for v in xy):
            raise DatasetLayoutError(
                f"{path}: point {i} is {ln!r}, want two finite numbers 'x y'")
        pts[i] = xy
    return pts


def write_pts(path: str | Path, points: np.ndarray) -> None:
    """Write (K, 2) points as a 300-W ``.pts`` file (coordinates written as given)."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    body = "\n".join(f"{x:.3f} {y:.3f}" for x, y in p)
    Path(path).write_text(f"version: 1\nn_points: {len(p)}\n{{\n{body}\n}}\n")


def _find_image(folder: Path, stem: str) -> Path | None:
    for suf in IMAGE_SUFFIXES:
        p = folder / (stem + suf)
        if p.is_file():
            return p
    return None


def _is_number(v) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # an integer beyond the float range
        return False


def _json_face(face, where: str) -> np.ndarray:
    """(68, 2) float64 landmarks of one face of an annotations JSON: a list of 68 ``[x, y]``
    pairs of finite numbers (strings, booleans, NaN and infinities are refused, so that a
    corrupt label is never scored as a detector miss).

    Raises:
        DatasetLayoutError: anything else, with ``where`` (file, photo, face) and the point.
    """
    if not isinstance(face, list) or len(face) != 68:
        got = f"{len(face)} points" if isinstance(face, list) else type(face).__name__
        raise DatasetLayoutError(f"{where}: want a list of 68 [x, y] points, got {got}")
    for i, p in enumerate(face):
        if not (isinstance(p, list) and len(p) == 2 and all(_is_number(v) for v in p)):
            raise DatasetLayoutError(
                f"{where}: point {i} is {json.dumps(p)[:80]}, want [x, y] (finite numbers)")
    return np.array(face, dtype=np.float64)


def open_landmarks68(root: str | Path, annotations: str | Path | None = None,
                     pts_one_based: bool = True, limit: int = 0) -> list[AnnotatedImage]:
    """Collect images with 68-point annotations.

    * ``.pts`` mode (no ``annotations``): every ``*.pts`` in ``root`` (not recursive) with an
      image of the same stem beside it; 300-W's multi-face naming ``photo_1.pts``,
      ``photo_2.pts`` -> ``photo.jpg`` is understood. 300-W ``.pts`` coordinates are 1-based
      (Matlab), so 1 is subtracted unless ``pts_one_based`` is false.
    * JSON mode: ``{"photos": {stem: [[[x, y] * 68], ...]}}`` with 0-based pixel coordinates;
      the images ``stem.<ext>`` are looked up in ``root``.

    Args:
        root: the image folder.
        annotations: optional JSON file.
        pts_one_based: subtract 1 from ``.pts`` coordinates.
        limit: keep this many images, spread evenly over the sorted list (0 = all).

    Returns:
        Images sorted by path, each with >= 1 face.

    Raises:
        DatasetLayoutError: no annotations, a face without 68 points, a coordinate that is not
            a finite number (a string, NaN, an infinity: in a ``.pts`` file or the JSON), an
            annotation without its image. The message names the file, the photo and the face.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetLayoutError(f"{root} is not a folder")
    if annotations is not None:
        items = _json_annotated(root, annotations)
    else:
        items = _pts_annotated(root, pts_one_based)
    out = [items[k] for k in sorted(items)]
    return [out[i] for i in select_indices(len(out), limit)]


def _json_annotated(root: Path, annotations: str | Path) -> dict[Path, AnnotatedImage]:
    """The images of ``root`` annotated by the JSON file (see :func:`open_landmarks68`)."""
    items: dict[Path, AnnotatedImage] = {}
    lacking: list[str] = []
    try:
        photos = json.loads(Path(annotations).read_bytes())["photos"]  # UTF-8/16/32
        if not isinstance(photos, dict):
            raise TypeError
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise DatasetLayoutError(
            f"{annotations} is not an annotations file of the form "
            '{"photos": {stem: [[[x, y] * 68], ...]}}') from exc
    for stem in sorted(photos):
        img = _find_image(root, stem)
        if img is None:
            lacking.append(stem)
            continue
        if not isinstance(photos[stem], list):
            raise DatasetLayoutError(f"{annotations}: photo {stem!r}: want a list of faces, "
                                     f"got {type(photos[stem]).__name__}")
        faces = [_json_face(f, f"{annotations}: photo {stem!r}, face {k}")
                 for k, f in enumerate(photos[stem])]
        if faces:
            items[img] = AnnotatedImage(img, faces, [f"{Path(annotations).name}:{stem}#{k}"
                                                     for k in range(len(faces))])
    if lacking:
        raise DatasetLayoutError(f"{len(lacking)} annotated photo(s) have no image in {root}: "
                                 f"{_listing(lacking)}")
    if not items:
        raise DatasetLayoutError(f"{annotations} annotates no face")
    return items


def _pts_annotated(root: Path, pts_one_based: bool) -> dict[Path, AnnotatedImage]:
    """The images of ``root`` with ``.pts`` files beside them (see :func:`open_landmarks68`)."""
    items: dict[Path, AnnotatedImage] = {}
    lacking: list[str] = []
    pts_files = sorted(root.glob("*.pts"))
    if not pts_files:
        raise DatasetLayoutError(
            f"{root} holds no .pts files: put 300-W .pts files beside the images or pass "
            "--annotations FILE.json")
    for pf in pts_files:
        img = _find_image(root, pf.stem)
        if img is None and "_" in pf.stem and pf.stem.rsplit("_", 1)[1].isdigit():
            img = _find_image(root, pf.stem.rsplit("_", 1)[0])
        if img is None:
            lacking.append(pf.name)
            continue
        face = f"face {len(items[img].faces) if img in items else 0} of {img.name}"
        try:
            a = read_pts(pf)
        except DatasetLayoutError as exc:
            raise DatasetLayoutError(f"{exc} ({face})") from exc
        if a.shape != (68, 2):
            raise DatasetLayoutError(f"{pf} has {len(a)} points, want 68 ({face})")
        if pts_one_based:
            a = a - 1.0
        items.setdefault(img, AnnotatedImage(img, [], [])).faces.append(a)
        items[img].sources.append(pf.name)
    if lacking:
        raise DatasetLayoutError(f"{len(lacking)} .pts file(s) have no image beside them in "
                                 f"{root}: {_listing(lacking)}")
    return items
