"""Each numba kernel against a plain numpy reference."""
import cv2
import numpy as np
import pytest

from vcam.imaging import kernels

RNG = np.random.default_rng(7)


def _img(h, w):
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (72, 128), (241, 320)])
def test_blend_matches_numpy(shape):
    fg, bg = _img(*shape), _img(*shape)
    a = RNG.integers(0, 256, shape, dtype=np.uint8)
    a[0, 0] = 0
    a[-1, -1] = 255
    ref = np.round((fg * (a[..., None] / 255.0)) + bg * (1 - a[..., None] / 255.0)).astype(np.uint8)
    out = np.empty_like(fg)
    kernels.blend(out, fg, bg, a)
    assert np.abs(out.astype(int) - ref).max() <= 1
    assert (out[a == 255] == fg[a == 255]).all() and (out[a == 0] == bg[a == 0]).all()


def test_blend_color_matches_numpy():
    fg = _img(50, 60)
    a = RNG.integers(0, 256, (50, 60), dtype=np.uint8)
    color = np.array([10, 200, 30], np.uint8)
    ref = np.round(fg * (a[..., None] / 255.0) + color * (1 - a[..., None] / 255.0)).astype(np.uint8)
    out = np.empty_like(fg)
    kernels.blend_color(out, fg, color, a)
    assert np.abs(out.astype(int) - ref).max() <= 1


def _edge_reference(img, bg, est, soft, wrap, a8):
    a = a8[..., None] / 255.0
    f = np.clip((img - (1 - a) * est) / np.maximum(a, 0.125), 0, 255)
    f = f + (soft - f) * (wrap[..., None] / 255.0) * a * a
    ref = np.clip(f * a + bg * (1 - a) + 0.5, 0, 255).astype(np.uint8)
    plain = (a8 == 0) | ((a8 == 255) & (wrap == 0))
    ref[plain] = np.round(img[plain] * a[plain] + bg[plain] * (1 - a[plain])).astype(np.uint8)
    return ref


@pytest.mark.parametrize("shape", [(1, 1), (9, 17), (120, 160)])
def test_blend_edge_matches_numpy(shape):
    img, bg, est, soft = (_img(*shape) for _ in range(4))
    a = RNG.integers(0, 256, shape, dtype=np.uint8)
    wrap = RNG.integers(0, 256, shape, dtype=np.uint8)
    a.flat[0], wrap.flat[0] = 255, 0
    out = np.empty_like(img)
    kernels.blend_edge(out, img, bg, est, soft, wrap, a)
    ref = _edge_reference(img.astype(float), bg.astype(float), est.astype(float), soft.astype(float), wrap, a)
    assert np.abs(out.astype(int) - ref).max() <= 1
    # With est = img and no wrap it is the plain blend (where alpha is not tiny: there the
    # decontaminated colour is clamped so that noise cannot be amplified).
    kernels.blend_edge(out, img, bg, img, soft, np.zeros_like(a), a)
    plain = np.empty_like(img)
    kernels.blend(plain, img, bg, a)
    big = a >= 32
    assert np.abs(out[big].astype(int) - plain[big]).max() <= 1


@pytest.mark.parametrize("shape", [(9, 17), (72, 128)])
def test_blend_edge_takes_the_room_at_low_resolution_and_a_colour(shape):
    """The old room's estimate at the blur's working size is stretched inside the kernel as
    cv2.resize would (within rounding, which the decontamination's 1/a amplifies where a is
    small); a colour background gives what a frame of that colour gives, byte for byte."""
    H, W = shape
    img, bg, soft = (_img(H, W) for _ in range(3))
    small = _img(max(1, H // 4), max(1, W // 4))
    a = RNG.integers(0, 256, shape, dtype=np.uint8)
    a[:, :3] = 0
    a[:, 3:6] = 255  # whole words of 0 and 255 next to soft ones
    wrap = RNG.integers(0, 256, shape, dtype=np.uint8) * (RNG.random(shape) < 0.3)
    wrap = wrap.astype(np.uint8)
    full = cv2.resize(small, (W, H), interpolation=cv2.INTER_LINEAR)
    got, ref = np.empty_like(img), np.empty_like(img)
    kernels.blend_edge(got, img, bg, small, soft, wrap, a)
    kernels.blend_edge(ref, img, bg, full, soft, wrap, a)
    d = np.abs(got.astype(int) - ref)
    assert d[a >= 64].max() <= 2 and d.max() <= 16
    plain = (a == 0) | ((a == 255) & (wrap == 0))
    assert (d[plain] == 0).all()
    color = np.array([20, 140, 230], np.uint8)
    kernels.blend_edge(got, img, color, small, soft, wrap, a)
    kernels.blend_edge(ref, img, np.broadcast_to(color, img.shape).copy(), small, soft, wrap, a)
    assert (got == ref).all()


@pytest.mark.parametrize("lo,hi", [((9, 16), (72, 128)), ((256, 448), (720, 1280)), ((32, 32), (40, 50)), ((5, 5), (5, 5))])
def test_guided_upsample_matches_reference(lo, hi):
    a = RNG.normal(0, 1, lo).astype(np.float32)
    b = RNG.normal(0.5, 0.5, lo).astype(np.float32)
    gray = RNG.integers(0, 256, hi, dtype=np.uint8)
    out = np.empty(hi, np.uint8)
    kernels.guided_upsample(out, a, b, gray)
    A = cv2.resize(a, hi[::-1], interpolation=cv2.INTER_LINEAR)
    B = cv2.resize(b, hi[::-1], interpolation=cv2.INTER_LINEAR)
    ref = np.clip((A * (gray / 255.0) + B) * 255 + 0.5, 0, 255).astype(np.uint8)
    # cv2 uses fixed-point interpolation weights; allow for rounding at steep coefficients.
    assert np.mean(np.abs(out.astype(int) - ref)) < 0.6
    assert np.percentile(np.abs(out.astype(int) - ref), 99) <= 2


@pytest.mark.parametrize("lo,hi", [((9, 16), (72, 128)), ((224, 384), (1080, 1920)), ((5, 5), (5, 5)), ((1, 2), (1, 3))])
def test_guided_upsample_from_bgr_matches_gray_then_box(lo, hi):
    """The BGR guide path makes cv2.blur(cvtColor(BGR2GRAY), (3, 3)) itself, row by row."""
    a = RNG.normal(0, 1, lo).astype(np.float32)
    b = RNG.normal(0.5, 0.5, lo).astype(np.float32)
    img = cv2.GaussianBlur(_img(*hi), (0, 0), 1.5) if min(hi) > 4 else _img(*hi)
    out = np.empty(hi, np.uint8)
    kernels.guided_upsample(out, a, b, img)
    guide = cv2.blur(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), (3, 3))
    ref = np.empty(hi, np.uint8)
    kernels.guided_upsample(ref, a, b, guide)
    d = np.abs(out.astype(int) - ref)
    # 8-bit against cv2's 14-bit luma weights: a level of guide is |a| levels of alpha.
    assert np.percentile(d, 99) <= 3 and d.mean() < 0.4


@pytest.mark.parametrize("lo,hi", [((67, 120), (1080, 1920)), ((5, 7), (72, 128)), ((9, 16), (9, 16)), ((1, 1), (3, 4))])
def test_blend_upsample_matches_resize_then_blend(lo, hi):
    fg = _img(*hi)
    small = cv2.GaussianBlur(_img(*lo), (0, 0), 1.0)
    a = RNG.integers(0, 256, hi, dtype=np.uint8)
    out = np.empty_like(fg)
    kernels.blend_upsample(out, fg, small, a)
    ref = np.empty_like(fg)
    kernels.blend(ref, fg, cv2.resize(small, hi[::-1], interpolation=cv2.INTER_LINEAR), a)
    d = np.abs(out.astype(int) - ref)
    assert d.max() <= 2 and d.mean() < 0.3  # rounding of the fixed-point weights only


@pytest.mark.parametrize("bg_kind", ["small", "full", "color", "one_row", "same_height"])
@pytest.mark.parametrize("lo,hi", [((224, 400), (720, 1280)), ((9, 16), (72, 128)), ((1, 2), (1, 3))])
def test_refine_blend_is_guided_upsample_then_blend(lo, hi, bg_kind):
    """The fused pass gives exactly what the two kernels give one after the other, for every kind
    of background, and keeps the alpha only when asked."""
    a = RNG.normal(0, 1, lo).astype(np.float32)
    b = RNG.normal(0.5, 0.5, lo).astype(np.float32)
    img = _img(*hi)
    bg = {"small": lambda: _img(max(1, hi[0] // 8), max(1, hi[1] // 8)), "full": lambda: _img(*hi),
          "color": lambda: np.array([12, 200, 31], np.uint8), "one_row": lambda: _img(1, 5),
          "same_height": lambda: _img(hi[0], max(1, hi[1] // 4))}[bg_kind]()
    alpha = np.empty(hi, np.uint8)
    kernels.guided_upsample(alpha, a, b, img)
    ref = np.empty_like(img)
    if bg_kind == "color":
        kernels.blend_color(ref, img, bg, alpha)
    elif bg_kind == "full":
        kernels.blend(ref, img, bg, alpha)
    else:
        kernels.blend_upsample(ref, img, bg, alpha)
    scratch = {}
    for keep in (np.full(hi, 7, np.uint8), None, None):  # the third call reuses the stretched coefficients
        out = np.zeros_like(img)
        kernels.refine_blend(out, img, a, b, bg, keep, scratch, fixed=True)
        assert np.array_equal(out, ref)
        if keep is not None:
            assert np.array_equal(keep, alpha)
    # New coefficients are picked up even with fixed=True: the cache follows the arrays given.
    a2 = a * 0.5
    kernels.refine_blend(out, img, a2, b, bg, alpha, scratch, fixed=True)
    ref2 = np.empty_like(alpha)
    kernels.guided_upsample(ref2, a2, b, img)
    assert np.array_equal(alpha, ref2)


def test_wrappers_reject_bad_input():
    fg = _img(4, 4)
    out = np.empty_like(fg)
    with pytest.raises(TypeError, match="expected uint8, got float32"):
        kernels.blend(out, fg.astype(np.float32), fg, np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="alpha"):
        kernels.blend(out, fg, fg, np.zeros((4, 5), np.uint8))
    with pytest.raises(ValueError, match="gray"):
        kernels.guided_upsample(np.empty((4, 4), np.uint8), np.zeros((2, 2), np.float32),
                                np.zeros((2, 2), np.float32), np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="small_bg"):
        kernels.blend_upsample(out, fg, np.zeros((2, 2), np.uint8), np.zeros((4, 4), np.uint8))


def test_band_system_gives_pymatting_s_closed_form_alpha():
    """The closed-form system built on the unknown pixels alone (vcam.imaging.band_laplacian) solves to
    pymatting's estimate_alpha_cf: on a shipped full-body picture's edge band, with unknown pixels on
    the picture's border, and with nothing unknown."""
    import contextlib
    import io

    from pymatting import estimate_alpha_cf

    from vcam import sample
    from vcam.imaging.band_laplacian import band_system, estimate_alpha

    img, mask = sample.full_body()
    img = cv2.resize(img, (240, 320), interpolation=cv2.INTER_AREA)[:, :, ::-1] / 255.0
    mask = cv2.resize(mask, (240, 320), interpolation=cv2.INTER_NEAREST) > 0
    se = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))
    trimap = np.full(mask.shape, 0.5)
    trimap[cv2.erode(mask.astype(np.uint8), se) > 0] = 1
    trimap[cv2.erode((~mask).astype(np.uint8), se) > 0] = 0
    trimap[:, :3] = 0.5  # unknown along the border: windows there are skipped by both
    with contextlib.redirect_stdout(io.StringIO()):
        ref = np.clip(estimate_alpha_cf(img, trimap), 0, 1)
    got = estimate_alpha(img, trimap)
    assert got.shape == trimap.shape and np.abs(got - ref).max() < 1e-6
    assert 0.05 < got[trimap == 0.5].mean() < 0.95  # a real edge, solved
    known = np.where(trimap == 0.5, 0.0, trimap)  # nothing to solve (pymatting's solver fails on it)
    assert (estimate_alpha(img, known) == known).all()
    L, rhs, unknown = band_system(img, trimap)
    assert L.shape == (unknown.sum(),) * 2 and rhs.shape == (unknown.sum(),) and L.has_sorted_indices
    with pytest.raises(ValueError):
        band_system(img[:10], trimap)
