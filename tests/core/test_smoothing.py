"""The One-Euro filter (Casiez, Roussel, Vogel, CHI 2012) and the per-track face smoother."""

from __future__ import annotations

import math

import numpy as np
import pytest

from facealign_cli.core.face import Face
from facealign_cli.core.smoothing import (
    LANDMARK_DEFAULTS,
    POSE_DEFAULTS,
    FaceSmoother,
    LandmarkSmoother,
    OneEuroFilter,
    OneEuroParams,
    smoothing_factor,
)

FPS = 30.0


def test_smoothing_factor_is_the_papers():
    # a = 1 / (1 + tau / dt), tau = 1 / (2 pi fc)
    fc, dt = 2.0, 1 / 30
    assert smoothing_factor(fc, dt) == pytest.approx(1 / (1 + 1 / (2 * math.pi * fc) / dt))
    assert smoothing_factor(1e9, dt) == pytest.approx(1.0)


def test_first_sample_passes_and_constant_stays():
    f = OneEuroFilter(LANDMARK_DEFAULTS)
    x = np.random.default_rng(0).normal(size=(68, 3))
    np.testing.assert_array_equal(f(x, 0.0), x)
    for i in range(1, 10):
        np.testing.assert_allclose(f(x, i / FPS), x, atol=1e-12)


def test_beta_zero_is_a_first_order_low_pass():
    """With beta = 0 the filter is an exponential moving average at min_cutoff: on a ramp of
    speed v its steady-state lag is v * tau (tau = 1 / (2 pi fc))."""
    fc, v = 1.0, 10.0
    f = OneEuroFilter(min_cutoff=fc, beta=0.0, speed="element")
    out = [f(np.array([v * i / FPS]), i / FPS)[0] for i in range(300)]
    a = smoothing_factor(fc, 1 / FPS)
    lag = v * (1 / FPS) * (1 - a) / a  # EMA of a ramp: v dt (1 - a) / a = v tau
    assert v * 299 / FPS - out[-1] == pytest.approx(lag, rel=1e-6)
    assert lag == pytest.approx(v / (2 * math.pi * fc), rel=1e-9)


def test_still_noise_is_damped_and_fast_motion_is_followed():
    rng = np.random.default_rng(1)
    base = rng.uniform(0, 100, (68, 2))
    n = 90
    noise = rng.normal(0, 0.5, (n, 68, 2))
    f = OneEuroFilter(LANDMARK_DEFAULTS)
    still = np.stack([f(base + noise[i], i / FPS, 100.0) for i in range(n)])
    assert still[30:].std(axis=0).mean() < 0.35 * noise[30:].std(axis=0).mean()
    # a face translating at 2 face sizes per second: the lag stays a few % of the face size
    f = OneEuroFilter(LANDMARK_DEFAULTS)
    shift = np.array([200.0, 0.0]) / FPS
    moving = [f(base + i * shift + noise[i], i / FPS, 100.0) for i in range(n)]
    lag = np.linalg.norm(base + (n - 1) * shift - moving[-1], axis=-1).mean()
    plain = OneEuroFilter(min_cutoff=LANDMARK_DEFAULTS.min_cutoff, beta=0.0)
    ema = [plain(base + i * shift, i / FPS, 100.0) for i in range(n)]
    ema_lag = np.linalg.norm(base + (n - 1) * shift - ema[-1], axis=-1).mean()
    assert lag < 3.0 and lag < 0.05 * ema_lag


@pytest.mark.parametrize("speed", ["shared", "point", "element"])
def test_speed_is_in_units_of_scale(speed):
    """Filtering k * x with scale k gives k * (the filtered x): one beta for all face sizes."""
    rng = np.random.default_rng(2)
    xs = np.cumsum(rng.normal(0, 1, (20, 68, 2)), axis=0) + rng.uniform(0, 50, (68, 2))
    p = OneEuroParams(0.7, 20.0, 1.0, speed)
    a, b = OneEuroFilter(p), OneEuroFilter(p)
    for i, x in enumerate(xs):
        ya = a(x, i / FPS, 10.0)
        yb = b(7 * x, i / FPS, 70.0)
    np.testing.assert_allclose(yb, 7 * ya, rtol=1e-9)


def test_restart_on_non_increasing_time_and_bad_params():
    f = OneEuroFilter()
    f(np.zeros(3), 1.0)
    np.testing.assert_array_equal(f(np.ones(3), 1.0), np.ones(3))  # dt = 0: restart
    with pytest.raises(ValueError):
        OneEuroFilter(min_cutoff=0)
    with pytest.raises(ValueError):
        OneEuroFilter(speed="fast")
    with pytest.raises(ValueError):
        OneEuroFilter(beta=-1)


def _face(track, lm, pose=(0, 0, 0), vertices=None):
    return Face(box=np.array([0, 0, 10, 10], np.float32), score=1.0,
                landmarks_3d=np.asarray(lm, np.float32),
                pose=np.asarray(pose, np.float32),
                vertices=None if vertices is None else np.asarray(vertices, np.float32),
                track=track)


def test_face_smoother_per_track_raw_kept_and_untracked_untouched():
    rng = np.random.default_rng(3)
    a0, b0 = rng.uniform(0, 100, (68, 3)), rng.uniform(300, 400, (68, 3))
    sm = FaceSmoother()
    outs = []
    for i in range(30):
        fa = _face(0, a0 + rng.normal(0, 1, (68, 3)), vertices=a0[:10] + 1.0)
        fb = _face(1, b0 + rng.normal(0, 1, (68, 3)))
        fn = _face(None, b0)
        raw = fa.landmarks_3d.copy()
        sm.apply([fa, fb, fn], i / FPS)
        np.testing.assert_array_equal(fa.raw_landmarks_3d, raw)
        assert fn.landmarks_3d is not None and fn.raw_landmarks_3d is None
        outs.append((fa.landmarks_3d.copy(), fb.landmarks_3d.copy()))
        assert fa.vertices.dtype == np.float32 and fa.vertices.shape == (10, 3)
    # the two tracks never mix
    assert np.abs(outs[-1][0] - a0).mean() < 1.0 and np.abs(outs[-1][1] - b0).mean() < 1.0
    sm.keep_only([1])
    assert list(sm._state) == [1]


def test_pose_is_unwrapped_across_180():
    sm = FaceSmoother(pose=POSE_DEFAULTS)
    lm = np.random.default_rng(4).uniform(0, 100, (68, 3))
    out = []
    for i, roll in enumerate([179.0, -179.0, 179.5, -179.5, 180.0]):
        f = _face(0, lm, pose=(0.0, 0.0, roll))
        sm.apply([f], i / FPS)
        out.append(float(f.pose[2]))
        assert f.raw_pose[2] == roll
    # never pulled towards 0 by the jump from +179 to -179
    assert all(abs(abs(r) - 180) < 2 for r in out)


def test_rotation_stays_a_rotation_and_raw_is_kept():
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(5)
    sm = FaceSmoother()
    lm = rng.uniform(0, 100, (68, 3))
    for i in range(10):
        f = _face(0, lm, pose=(10.0 + i, 0.0, 0.0))
        raw = Rotation.from_euler("y", 10.0 + i + rng.normal(0, 2), degrees=True).as_matrix()
        f.rotation = raw
        sm.apply([f], i / FPS)
        np.testing.assert_allclose(f.rotation @ f.rotation.T, np.eye(3), atol=1e-9)
        assert np.linalg.det(f.rotation) == pytest.approx(1.0)
        assert f.raw_rotation is raw


def _similarity(points, scale, theta, shift):
    c, s = math.cos(theta), math.sin(theta)
    out = np.array(points, dtype=np.float64)
    xy = out[:, :2] @ np.array([[c, s], [-s, c]])
    out[:, :2] = scale * xy + shift
    out[:, 2:] *= scale
    return out


def test_dead_zone_smooths_still_noise_and_keeps_ramps_close():
    """Below the dead-zone speed the cutoff stays at min_cutoff, so a still noisy face is
    smoothed much more than by the paper's filter; on a noise-free ramp the lag builds only
    until the speed estimate (which counts the lag) leaves the dead zone: about
    dead_zone / fps face sizes."""
    plain = OneEuroParams(min_cutoff=0.5, beta=256.0, d_cutoff=1.0, speed="shared")
    dead = OneEuroParams(min_cutoff=0.5, beta=256.0, d_cutoff=1.0, speed="shared",
                         dead_zone=0.12)
    noise = np.random.default_rng(9).normal(0, 0.5, (300, 1, 2))

    def still_std(p):
        f = OneEuroFilter(p)
        y = np.stack([f(noise[i], i / FPS, 100.0) for i in range(300)])
        return y[60:].std(axis=0).mean()

    assert still_std(dead) < 0.5 * still_std(plain)

    def ramp_lag(p, v):  # v in face sizes per second, face size 100 px
        f = OneEuroFilter(p)
        x = [f(np.array([[100.0 * v * i / FPS, 0.0]]), i / FPS, 100.0) for i in range(400)]
        return (100.0 * v * 399 / FPS - x[-1][0, 0]) / 100.0

    for v in (0.02, 0.1, 0.5):
        assert ramp_lag(plain, v) < ramp_lag(dead, v) <= 1.5 * dead.dead_zone / FPS
    with pytest.raises(ValueError):
        OneEuroFilter(dead_zone=-0.1)


def test_landmark_smoother_commutes_with_a_similarity():
    """Smoothing a turned, zoomed, shifted copy of a sequence gives the same copy of the
    smoothed sequence: the rigid/shape split does not depend on where the face is."""
    rng = np.random.default_rng(6)
    base = rng.uniform(0, 100, (68, 3))
    seq = [_similarity(base + rng.normal(0, 1.0, (68, 3)), 1 + 0.01 * i, 0.02 * i,
                       (2.0 * i, -i)) for i in range(40)]
    a, b = LandmarkSmoother(LANDMARK_DEFAULTS), LandmarkSmoother(LANDMARK_DEFAULTS)
    for i, x in enumerate(seq):
        ya = a(x, i / FPS, 100.0)
        yb = b(_similarity(x, 1.7, 0.4, (30.0, 50.0)), i / FPS, 170.0)
        np.testing.assert_allclose(yb, _similarity(ya, 1.7, 0.4, (30.0, 50.0)), atol=1e-6)


def test_landmark_smoother_follows_rigid_motion_and_damps_shape_noise():
    """A face turning and sliding at half a face size per second with noisy points: the
    shape noise is damped as on a still face while the rigid motion is followed."""
    rng = np.random.default_rng(7)
    base = rng.uniform(0, 100, (68, 2))
    n = 90
    truth = [_similarity(base, 1.0, 0.3 * i / FPS, (50.0 * i / FPS, 0.0)) for i in range(n)]
    noisy = [t + rng.normal(0, 1.0, t.shape) for t in truth]
    sm = LandmarkSmoother(LANDMARK_DEFAULTS)
    out = [sm(x, i / FPS, 100.0) for i, x in enumerate(noisy)]
    def err(seq):
        return np.mean([np.linalg.norm(y - t, axis=-1).mean()
                        for y, t in zip(seq[30:], truth[30:])])

    assert err(out) < 0.6 * err(noisy)


def test_face_smoother_vertices_follow_the_landmarks():
    """Dense vertices get the landmarks' rigid motion and shape factor: vertices that are the
    landmarks come out as the smoothed landmarks."""
    rng = np.random.default_rng(8)
    verts = rng.uniform(0, 100, (200, 3))
    idx = rng.choice(200, 68, replace=False)
    sm = FaceSmoother()
    for i in range(20):
        v = _similarity(verts + rng.normal(0, 1.0, verts.shape), 1.0, 0.01 * i, (3.0 * i, 0))
        f = _face(0, v[idx], vertices=v)
        sm.apply([f], i / FPS)
        np.testing.assert_allclose(f.vertices[idx], f.landmarks_3d, atol=1e-3)


def _pose_run(poses):
    """Poses (T, 3) through a FaceSmoother with the default pose filter at FPS; (T, 3) out."""
    sm = FaceSmoother()
    lm = np.random.default_rng(6).uniform(0, 100, (68, 3))
    out = []
    for i, p in enumerate(poses):
        f = _face(0, lm, pose=p)
        sm.apply([f], i / FPS)
        out.append(np.asarray(f.pose, np.float64))
    return np.stack(out)


def test_pose_defaults_damp_a_still_pose_and_follow_a_turning_head():
    rng = np.random.default_rng(7)
    n = 90
    # a still head with the pipeline's pose noise (about 0.4 deg mean absolute deviation on
    # the tuning photos): 0.5 deg per angle
    noisy = np.array([20.0, -10.0, 5.0]) + rng.normal(0, 0.5, (n, 3))
    out = _pose_run(noisy)
    assert np.abs(out[30:] - out[30:].mean(0)).mean() < 0.5 * np.abs(
        noisy[30:] - noisy[30:].mean(0)).mean()
    # a head turning (yaw) at 30 deg/s from rest, noise-free: the lag stays under 1.5 degrees
    # (the paper's filter at min_cutoff 1 Hz without beta lags 30 / (2 pi) = 4.8 degrees)
    t = np.arange(n) / FPS
    turn = np.stack([30.0 * t, np.full(n, -10.0), np.full(n, 5.0)], 1)
    out = _pose_run(turn)
    assert np.abs(out - turn).max() < 1.5
    assert np.abs(out[-30:] - turn[-30:]).max() < 1.0  # and settles closer
    # a quick turn, 90 deg/s: at most the 2 degrees of the tuning rule
    quick = turn * [3.0, 1.0, 1.0]  # to 267 degrees: the output is wrapped to +-180
    out = _pose_run(quick)
    assert np.abs((out - quick + 180.0) % 360.0 - 180.0).max() < 2.0
