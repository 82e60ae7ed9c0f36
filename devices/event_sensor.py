"""The pixel of an event camera, simulated: log-intensity frames in, DVS events out.

Why a model of our own: the two open simulators are a C++/ROS stack (ESIM) and a PyTorch/GPU
program that reads videos (v2e); a demo or a training set needs neither, only their pixel. This
module is that pixel, written once as a Numba kernel over whole frames, fast enough (several
Mev/s on one core) to feed a live graph, and deterministic: the same frames and the same noise
draws give the same events, whatever the caller does with them afterwards.

The model, per pixel ``i``, over one simulation step from ``t0`` to ``t1 = t0 + dt`` (µs):

- Log intensity ``L_i(t)`` is linear between the two frames' values (ESIM's assumption:
  Rebecq, Gehrig & Scaramuzza, "ESIM: an Open Event Camera Simulator", CoRL 2018; code
  github.com/uzh-rpg/rpg_esim, ``event_simulator.cpp``).
- The pixel remembers a reference ``ref_i``, the log intensity at its last event. An ON event
  fires when ``L_i - ref_i`` reaches ``+theta_on_i``, an OFF event when it reaches
  ``-theta_off_i``, at the time the linear interpolation crosses that level (ESIM's sub-step
  time stamps; v2e spreads them evenly over the frame interval instead). The reference then
  moves to the level crossed, so a change ``dL`` gives ``floor(|dL| / theta)`` events.
- Thresholds differ from pixel to pixel: drawn once from ``N(theta, sigma)`` and clipped at
  0.01 (v2e, github.com/SensorsINI/v2e, ``v2ecore/emulator.py``, ``_init``).
- Refractory period: a crossing less than ``refractory_us`` after the pixel's previous event
  is dropped, and the reference still moves to the crossed level (ESIM; v2e instead keeps the
  crossing pending until the period ends). Dropped crossings are counted.
- Leak (optional): the reference decays by ``leak_rate_hz * theta_on_i`` per second, so a
  static pixel fires ON events at ``leak_rate_hz`` (v2e's ``subtract_leak_current``, without
  its per-pixel jitter); here the decay is part of the linear sweep, so leak events get exact
  times too.
- Background activity (shot noise): Poisson events at a given rate per pixel, polarity ON or
  OFF with equal odds, each resetting the reference to the current log intensity (v2e's shot
  noise, ``base_log_frame[shot_xy] = lp_log_frame[shot_xy]``); the refractory period applies
  to them as to any event. They are drawn outside the kernel (`draw_noise`) from a seeded
  generator, so the kernel itself holds no random state.

An event's ``t`` is its crossing time floored to the µs, so it lies in ``[t0, t1]``; a step's
events come out sorted by ``t``, ties in pixel order (row-major), each pixel's own events in
time order. Steps follow each other, so a run of steps gives one monotonic stream.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np

from pipeline.frame import EVENT_DTYPE

#: Smallest threshold a pixel may draw (v2e's clamp), log units.
MIN_THRESHOLD = 0.01


class SensorParams(NamedTuple):
    """Fixed per-pixel properties (row-major, ``height * width`` each)."""

    theta_on: np.ndarray   # ON thresholds, log units, float64
    theta_off: np.ndarray  # OFF thresholds (positive), log units, float64
    theta_min: float       # smallest of all thresholds, log units
    leak: np.ndarray       # reference decay, log units per µs, float64
    refractory_us: float   # µs


class SensorState(NamedTuple):
    """What each pixel remembers between steps; the arrays are updated in place by `sensor_step`."""

    ref: np.ndarray     # reference log intensity as of the last step's end, float64
    last_t: np.ndarray  # time of the pixel's last event, µs (-inf before any), float64


class Noise(NamedTuple):
    """Background events offered to one step, sorted by pixel then time."""

    pixel: np.ndarray  # row-major pixel index, int64
    t: np.ndarray      # µs, float64, in [t0, t0 + dt)
    p: np.ndarray      # polarity 0/1, int8


def sensor_params(n_pixels: int, pos_threshold: float, neg_threshold: float,
                  threshold_sigma: float, leak_rate_hz: float, refractory_us: float,
                  rng: np.random.Generator) -> SensorParams:
    """Draw the per-pixel thresholds (mismatch ``threshold_sigma``, log units) from ``rng``.

    Parameters
    ----------
    n_pixels : int
        ``width * height``.
    pos_threshold, neg_threshold : float
        Nominal ON / OFF contrast thresholds, log units (> 0).
    threshold_sigma : float
        Standard deviation of both thresholds across pixels, log units (0: all nominal).
    leak_rate_hz : float
        ON events per second a static pixel fires from reference leak (0: none).
    refractory_us : float
        Shortest interval between two events of one pixel, µs.
    rng : numpy.random.Generator
        Source of the mismatch (not drawn from when ``threshold_sigma`` is 0).
    """
    def draw(nominal: float) -> np.ndarray:
        if threshold_sigma == 0:
            return np.full(n_pixels, nominal)
        return np.maximum(rng.normal(nominal, threshold_sigma, n_pixels), MIN_THRESHOLD)

    theta_on = draw(pos_threshold)
    theta_off = draw(neg_threshold)
    return SensorParams(theta_on, theta_off, float(min(theta_on.min(), theta_off.min())),
                        leak_rate_hz * theta_on * 1e-6, float(refractory_us))


def sensor_state(log0: np.ndarray, offset: np.ndarray | None = None) -> SensorState:
    """State of a sensor that has looked at log frame ``log0`` for ever: reference = ``log0``
    (minus ``offset``, log units: a random fraction of a threshold spreads leak events out)."""
    ref = np.array(log0, np.float64, copy=True).ravel()
    if offset is not None:
        ref -= offset
    return SensorState(ref, np.full(ref.shape, -np.inf))


def draw_noise(rng: np.random.Generator, n_pixels: int, rate_hz: float, t0_us: int,
               dt_us: int) -> Noise:
    """Background events at ``rate_hz`` per pixel over ``[t0_us, t0_us + dt_us)``: a Poisson
    count over all pixels, spread uniformly over pixels and time, polarity a fair coin."""
    if rate_hz == 0:
        return Noise(np.empty(0, np.int64), np.empty(0), np.empty(0, np.int8))
    k = rng.poisson(rate_hz * n_pixels * dt_us * 1e-6)
    pixel = rng.integers(0, n_pixels, k)
    t = t0_us + rng.random(k) * dt_us
    p = rng.integers(0, 2, k).astype(np.int8)
    order = np.lexsort((t, pixel))
    return Noise(pixel[order], t[order], p[order])


def sensor_step(log0: np.ndarray, log1: np.ndarray, t0_us: int, dt_us: int, state: SensorState,
                params: SensorParams, noise: Noise, width: int) -> tuple[np.ndarray, int, int]:
    """Events of one simulation step (see the module docstring for the model).

    Parameters
    ----------
    log0, log1 : numpy.ndarray
        Log intensity of every pixel (row-major, float64) at ``t0_us`` and ``t0_us + dt_us``.
    t0_us, dt_us : int
        Start and length of the step, µs (``dt_us >= 1``).
    state : SensorState
        Per-pixel memory after the previous step; updated in place.
    params : SensorParams
        Per-pixel thresholds, leak and the refractory period.
    noise : Noise
        Background events offered in this step (`draw_noise`).
    width : int
        Sensor width (pixel ``i`` is at ``x = i % width``, ``y = i // width``).

    Returns
    -------
    events : numpy.ndarray
        EVENT_DTYPE records sorted by ``t`` (µs).
    dropped : int
        Crossings and background events lost to the refractory period.
    noise_events : int
        Background events emitted.
    """
    return _step(log0, log1, state.ref, state.last_t, params.theta_on, params.theta_off,
                 params.theta_min, params.leak, params.refractory_us, t0_us, dt_us, width,
                 noise.pixel, noise.t, noise.p)


@numba.njit(cache=True, nogil=True)
def _capacity(log0: np.ndarray, log1: np.ndarray, leak: np.ndarray, dt: int, theta_min: float,
              n_noise: int) -> int:
    """Most events a step can make: a pixel whose ``L - ref`` sweeps by ``a`` between resets
    crosses at most ``a / theta + 1`` levels per stretch (one more allowed for rounding), and
    each background event both fires and starts a new stretch."""
    sweep = 0.0
    moving = 0
    for i in range(log0.shape[0]):
        if log0[i] != log1[i] or leak[i] != 0.0:  # as `_step` decides which pixels to visit
            sweep += abs(log1[i] - log0[i] + leak[i] * dt)
            moving += 1
    return int(sweep / theta_min) + 2 * moving + 2 * n_noise + 1


@numba.njit(cache=True, nogil=True)
def _step(log0: np.ndarray, log1: np.ndarray, ref: np.ndarray, last_t: np.ndarray,
          theta_on: np.ndarray, theta_off: np.ndarray, theta_min: float, leak: np.ndarray,
          refractory: float, t0: int, dt: int, width: int, noise_pixel: np.ndarray,
          noise_t: np.ndarray, noise_p: np.ndarray) -> tuple[np.ndarray, int, int]:
    t0f = float(t0)
    t1f = float(t0 + dt)
    cap = _capacity(log0, log1, leak, dt, theta_min, noise_pixel.shape[0])
    et = np.empty(cap)  # event times (float µs), pixels and polarities, in pixel order
    ei = np.empty(cap, np.int64)
    ep = np.empty(cap, np.int8)
    n = 0
    dropped = 0
    noise_out = 0
    j = 0
    k = noise_pixel.shape[0]
    for i in range(log0.shape[0]):
        la = log0[i]
        lb = log1[i]
        noisy = j < k and noise_pixel[j] == i
        if la == lb and leak[i] == 0.0 and not noisy:
            continue  # nothing moves: reference and memory stay as they are
        s = (lb - la) / dt + leak[i]  # slope of d = L - ref, log units per µs
        d = la - ref[i]
        tcur = t0f
        last = last_t[i]
        on = theta_on[i]
        off = theta_off[i]
        while True:
            limit = noise_t[j] if noisy else t1f
            while s != 0.0:  # threshold crossings up to the next background event
                if s > 0.0:
                    tc = tcur + (on - d) / s
                    pol = 1
                else:
                    tc = tcur + (-off - d) / s
                    pol = 0
                if tc > limit:
                    break
                if tc < tcur:  # rounding: a level met at the step's start
                    tc = tcur
                if tc - last >= refractory:
                    if n == cap:
                        raise RuntimeError("event_sensor: more events than the step's bound")
                    et[n] = tc
                    ei[n] = i
                    ep[n] = pol
                    n += 1
                    last = tc
                else:
                    dropped += 1
                d = 0.0  # the reference moves to the level crossed
                tcur = tc
            if not noisy:
                break
            tn = noise_t[j]
            d += s * (tn - tcur)
            tcur = tn
            if tn - last >= refractory:
                if n == cap:
                    raise RuntimeError("event_sensor: more events than the step's bound")
                et[n] = tn
                ei[n] = i
                ep[n] = noise_p[j]
                n += 1
                last = tn
                d = 0.0  # a background event resets the reference to the input
                noise_out += 1
            else:
                dropped += 1
            j += 1
            noisy = j < k and noise_pixel[j] == i
        d += s * (t1f - tcur)
        ref[i] = lb - d
        last_t[i] = last
    # counting sort on the integer µs (stable: pixel order within one µs)
    start = np.zeros(dt + 2, np.int64)
    for e in range(n):
        start[int(math.floor(et[e])) - t0 + 1] += 1
    for b in range(1, dt + 2):
        start[b] += start[b - 1]
    out = np.zeros(n, dtype=EVENT_DTYPE)  # padding zero too
    for e in range(n):
        b = int(math.floor(et[e])) - t0
        pos = start[b]
        start[b] += 1
        out[pos]["t"] = t0 + b
        out[pos]["x"] = ei[e] % width
        out[pos]["y"] = ei[e] // width
        out[pos]["p"] = ep[e]
    return out, dropped, noise_out
