"""A generative model of scalp EEG for demos and tests without data: ``synthetic_eeg, mode: realistic``.

What a decoder meets in real recordings, in µV, seeded:

- a 1/f ("pink") background per channel (white noise through Kellet's pinking filter, P. Kellet's
  and J. O. Smith's -10 dB/decade design), partly shared across channels as volume conduction is;
- an occipital alpha rhythm (narrow-band noise around ``alpha_freq``: it waxes and wanes);
- sensorimotor mu rhythms over each hemisphere (around 11 Hz, centred on C3 and C4);
- mains interference at ``line_freq``, identical on every channel;
- optionally, motor-imagery trials as in EEGMMIDB: rest ``T0``, imagined left fist ``T1``,
  imagined right fist ``T2``, each trial lowering the mu rhythm over the *contralateral* hemisphere
  (event-related desynchronisation, ERD) by ``erd_depth``; the trials are returned as markers.

Scalp weights come from the electrodes' positions in MNE's ``standard_1005`` montage (a Gaussian of
the distance to O1/Oz/O2 for alpha, to C3 or C4 for mu); channels without a known position get a
uniform weight. Every filter carries its state across blocks, so the signal is the same however it
is cut.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import mne
import numpy as np
from scipy.signal import butter, lfilter, sosfilt

#: Kellet's "economy" pinking filter: 1/f power within ±0.5 dB over ~3 decades below Nyquist.
PINK_B = np.array([0.049922035, -0.095993537, 0.050612699, -0.004408786])
PINK_A = np.array([1.0, -2.494956002, 2.017265875, -0.522189400])
#: The 64 electrodes of EEGMMIDB, in its order (names standardised as MNE's eegbci does).
EEGMMIDB_64 = (
    "FC5 FC3 FC1 FCz FC2 FC4 FC6 C5 C3 C1 Cz C2 C4 C6 CP5 CP3 CP1 CPz CP2 CP4 CP6 Fp1 Fpz Fp2 AF7 "
    "AF3 AFz AF4 AF8 F7 F5 F3 F1 Fz F2 F4 F6 F8 FT7 FT8 T7 T8 T9 T10 TP7 TP8 P7 P5 P3 P1 Pz P2 P4 "
    "P6 P8 PO7 PO3 POz PO4 PO8 O1 Oz O2 Iz").split()
#: Which of them a smaller headset has first: motor strip, midline, occipital, then the rest.
_PRIORITY = ("C3 C4 Cz Fz Pz O1 O2 Oz FC3 FC4 CP3 CP4 F3 F4 P3 P4 C1 C2 FC1 FC2 CP1 CP2 C5 C6 "
             "FCz CPz POz PO3 PO4 Fp1 Fp2 AF3 AF4 F7 F8 T7 T8 P7 P8").split()
#: Spatial spread (m) of a rhythm around its centre electrodes.
SPREAD_M = 0.04
#: The highest frequency the model draws (the mu band's top), which the rate must exceed twice.
MU_TOP_HZ = 12.5


def default_names(n: int) -> tuple[str, ...]:
    """Electrode names for an ``n``-channel headset (n <= 64): the motor strip and the occipital
    electrodes first, kept in EEGMMIDB's order; generic names beyond 64."""
    if n > len(EEGMMIDB_64):
        return tuple(f"EEG{i + 1:03d}" for i in range(n))
    chosen = set((list(_PRIORITY) + [c for c in EEGMMIDB_64 if c not in _PRIORITY])[:n])
    return tuple(c for c in EEGMMIDB_64 if c in chosen)


@functools.cache
def _positions() -> dict[str, np.ndarray]:
    """10-05 electrode positions (m) by lower-case name, from MNE's template montage."""
    names = mne.channels.get_builtin_montages()
    montage = "colin27_1005" if "colin27_1005" in names else "standard_1005"  # renamed in MNE 1.13
    pos = mne.channels.make_standard_montage(montage).get_positions()["ch_pos"]
    return {k.lower(): v for k, v in pos.items()}


def _weights(names: tuple[str, ...], centres: tuple[str, ...]) -> np.ndarray:
    """Gaussian of each electrode's distance to the nearest of ``centres`` (1 at a centre)."""
    lower = _positions()
    known = [lower.get(n.lower()) for n in names]
    out = np.full(len(names), 0.3)
    for i, p in enumerate(known):
        if p is not None:
            d = min(np.linalg.norm(p - lower[c.lower()]) for c in centres)
            out[i] = np.exp(-(d / SPREAD_M) ** 2 / 2)
    return out


class _Band:
    """Stateful narrow-band noise: white noise through a 2nd-order Butterworth band-pass, scaled
    to unit RMS (by the filter's energy, not its nominal bandwidth)."""

    def __init__(self, centre: float, width: float, srate: float, n: int) -> None:
        lo, hi = max(centre - width / 2, 0.1), min(centre + width / 2, srate / 2 * 0.99)
        self.sos = butter(2, [lo, hi], "bandpass", fs=srate, output="sos")
        self.zi = np.zeros((len(self.sos), n, 2))
        impulse = np.zeros(int(30 * srate))  # the response has died out long before 30 s
        impulse[0] = 1.0
        # unit-variance white noise comes out with variance sum(h²): scale that to 1
        self.gain = 1.0 / np.sqrt(np.sum(sosfilt(self.sos, impulse) ** 2))

    def __call__(self, white: np.ndarray) -> np.ndarray:
        y, self.zi = sosfilt(self.sos, white, axis=-1, zi=self.zi)
        return y * self.gain


@dataclass(frozen=True)
class Trial:
    """A cue: its first sample, its code (T0 rest, T1 left, T2 right) and its length (s)."""

    sample: int
    code: str
    duration: float


class RealisticEEG:
    """Blocks of realistic EEG (channels x n, float64 µV) and the trials that start in them.

    Parameters
    ----------
    names : tuple of str
        Electrode names (positions from ``standard_1005`` where known).
    srate : float
        Sampling rate (Hz).
    rng : numpy.random.Generator
        The only source of randomness (seeded by the caller).
    background, alpha, mu, line : float
        RMS (µV) of the 1/f background, the alpha and mu rhythms at their centre electrodes, and
        the amplitude of the mains sine.
    alpha_freq, line_freq : float
        Hz.
    trials : bool
        Motor-imagery trials with ERD, reported as markers.
    trial_s, rest_s : float
        Length of an imagery trial and of the rest between two.
    erd_depth : float
        Fraction of the contralateral mu amplitude lost during imagery (0..1).
    """

    def __init__(self, names: tuple[str, ...], srate: float, rng: np.random.Generator, *,
                 background: float = 8.0, alpha: float = 6.0, mu: float = 5.0,
                 line: float = 4.0, alpha_freq: float = 10.0, line_freq: float = 50.0,
                 trials: bool = True, trial_s: float = 4.0, rest_s: float = 4.0,
                 erd_depth: float = 0.7) -> None:
        self.n, self.srate, self.rng = len(names), srate, rng
        self.background, self.line, self.line_freq = background, line, line_freq
        self.trials_on, self.erd_depth = trials, erd_depth
        self.trial_len, self.rest_len = round(trial_s * srate), round(rest_s * srate)
        self.w_alpha = alpha * _weights(names, ("O1", "Oz", "O2"))[:, None]
        self.w_mu = mu * np.stack([_weights(names, ("C3",)), _weights(names, ("C4",))])
        self.pink_zi = np.zeros((self.n + 1, len(PINK_A) - 1))  # n channels + one shared source
        self.pink_gain = 1.0 / self._pink_rms()
        self.alpha_band = _Band(alpha_freq, 3.0, srate, 1)
        self.mu_band = _Band(MU_TOP_HZ - 1.5, 3.0, srate, 2)  # one per hemisphere
        self.t = 0  # next sample
        self.next_trial = self.rest_len
        self.schedule: list[Trial] = [Trial(0, "T0", rest_s)] if trials else []
        self.trial_s, self.rest_s = trial_s, rest_s

    def _pink_rms(self) -> float:
        """RMS of the pinking filter's output for unit white noise, after its transient."""
        y = lfilter(PINK_B, PINK_A, np.random.default_rng(0).standard_normal(1 << 16))
        return float(np.sqrt(np.mean(y[1 << 12:] ** 2)))

    def _erd_gain(self, n: int) -> np.ndarray:
        """(2 x n) mu amplitude over the left / right hemisphere for the next ``n`` samples."""
        gain = np.ones((2, n))
        for trial in self.schedule:
            if trial.code == "T0":
                continue
            a, b = trial.sample - self.t, trial.sample + self.trial_len - self.t
            if b <= 0 or a >= n:
                continue
            side = 1 if trial.code == "T1" else 0  # left fist -> right hemisphere (C4)
            gain[side, max(a, 0):min(b, n)] = 1.0 - self.erd_depth
        return gain

    def _plan_trials(self, until: int) -> None:
        """Extend the cue schedule past sample ``until``: imagery (T1/T2 at random), then rest."""
        while self.trials_on and self.next_trial < until + self.trial_len:
            code = "T1" if self.rng.random() < 0.5 else "T2"
            self.schedule.append(Trial(self.next_trial, code, self.trial_s))
            self.schedule.append(Trial(self.next_trial + self.trial_len, "T0", self.rest_s))
            self.next_trial += self.trial_len + self.rest_len

    def block(self, n: int) -> tuple[np.ndarray, list[Trial]]:
        """The next ``n`` samples and the trials whose first sample is among them."""
        rng = self.rng
        white = rng.standard_normal((self.n + 1, n))
        pink, self.pink_zi = lfilter(PINK_B, PINK_A, white, axis=-1, zi=self.pink_zi)
        pink *= self.pink_gain
        x = self.background * (0.8 * pink[:-1] + 0.6 * pink[-1:])  # 36 % shared variance
        x += self.w_alpha * self.alpha_band(rng.standard_normal((1, n)))
        self._plan_trials(self.t + n)
        mu = self.mu_band(rng.standard_normal((2, n))) * self._erd_gain(n)
        x += self.w_mu[0][:, None] * mu[0] + self.w_mu[1][:, None] * mu[1]
        t = (self.t + np.arange(n)) / self.srate
        x += self.line * np.sin(2 * np.pi * self.line_freq * t)
        started = [tr for tr in self.schedule if self.t <= tr.sample < self.t + n]
        self.t += n
        self.schedule = [tr for tr in self.schedule if tr.sample + self.trial_len > self.t]
        return x, started
