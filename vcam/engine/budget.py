"""The CPU budget: how many cores vcam may use, and the controller that keeps it there.

:class:`Governor` has no thread and no clock of its own, so the live path (real time, the
process's CPU) and ``vcam process --cpu-budget`` (video time, the CPU its steps measured)
run the same decisions:

* a **token bucket in CPU seconds** gates inference. It fills at the cores left for matting,
  ``budget − (what everything else uses)``, and every inference spends the CPU it took. A
  reused matte (the picture was still) costs nothing, so a still call banks a little for the
  next movement, and the mean stays at the budget whatever the estimate's error: "everything
  else" is measured as the process's CPU minus the inferences' own.
* when the bucket holds inferences back much of the time (the picture asks for more mattes than
  the level gives) and sustains less than ``floor_hz``, the **ladder**
  steps down (a smaller input, then a lighter model), in the order that loses least quality;
  when the mattes actually needed (a still picture needs few) would fit the level above, it
  steps back up. On moving people the rate matters as much as the model. Before the matte
  follower, the moving boundary F of MODNet fell from 0.97 at 10 Hz to 0.84 at 6 Hz and 0.65 at
  4 Hz on generated clips, and the lite model at 10 Hz (0.94) beat MODNet at 6; hence a floor of
  8 Hz. The follower now carries rigid motion at any rate, but not a bending one (the head
  sways, the body stays): there, on 40 development portraits at twice a webcam's sway
  (``scripts/quality.py --bend --speed 2``), MODNet's moving IoU / BF is 0.921 / 0.704 at 4 Hz,
  0.925 / 0.736 at 8 and 0.927 / 0.746 at 13, and lite's 0.915 / 0.642, 0.921 / 0.692 and
  0.924 / 0.712: MODNet at 8 Hz beats lite at any rate, at 4 Hz it only ties lite at 13.

Output fps is never touched: only the model's rate, input and model are.
"""
from __future__ import annotations

import collections
import os
import threading
from dataclasses import dataclass, replace

from ..errors import ConfigError, VcamError


CEILING_HZ = 15.0  # under a budget, mattes beyond this add little at 30 fps (the refiner tracks the frame)
FLOOR_HZ = 8.0  # below this the ladder steps down (see the module's doc)


def floor_for(ceiling_hz: float) -> float:
    """The rate below which the ladder steps down: :data:`FLOOR_HZ`, or 0.9× a lower cap on the matting
    rate (a user who caps mattes at 4 Hz asked for 4 Hz; at 8 no level would ever do)."""
    return min(FLOOR_HZ, 0.9 * ceiling_hz) if ceiling_hz else FLOOR_HZ


def resolve(setting, cores: int | None = None, *, name: str = "--cpu-budget", off: bool = True) -> float | None:
    """``run.cpu_budget`` → cores, or ``None`` for no budget. 'auto': 0.6 on machines with up to
    4 cores, 1.0 above; 'off': none; a number: that many cores (0 < n ≤ the machine's cores).
    ``name``: how the errors call the setting; ``off``: whether 'off' is one of the answers."""
    cores = cores or os.cpu_count() or 1
    text = str(setting).strip().lower()
    if text in ("", "auto"):
        return 0.6 if cores <= 4 else 1.0
    if text in ("off", "none", "no") and off:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name} {setting!r} is not a number of cores: give e.g. 0.6, 'auto'"
                          + (" or 'off'" if off else "")) from None
    if not 0 < value <= cores:
        raise ConfigError(f"{name} {setting} is outside (0, {cores}]: this machine has {cores} cores; "
                          f"give e.g. 0.6" + (", or 'off' for no budget" if off else ""))
    return value


@dataclass(frozen=True)
class Level:
    """One rung of the ladder: a model at an input size, and what it costs relative to the
    configured one (pixels, or a measured factor for another model)."""

    model: str
    input_size: int
    cost: float  # relative CPU per matte (the start level is 1.0)

    @property
    def label(self) -> str:
        return f"{self.model}@{self.input_size}" if self.model in ("modnet", "rvm") else self.model  # (fixed inputs)


def lite_runtime() -> bool:
    import importlib.util

    return importlib.util.find_spec("ai_edge_litert") is not None


def lite_available() -> bool:
    """The lite model can run here: LiteRT is installed and the model is cached (no download mid-call)."""
    from ..models import store

    return lite_runtime() and store.cached_path("lite").exists()


def should_fetch_lite(run_cfg, model: str) -> bool:
    """Whether a budgeted run of ``model`` should fetch the lite model first (``vcam demo``) or in the
    background (a live run): the ladder down from MODNet ends at ``lite``, LiteRT is installed, the model
    is not cached yet, and ``run.fetch_lite`` is on."""
    from ..models import store

    return (run_cfg.fetch_lite and model == "modnet" and lite_runtime()
            and not store.cached_path("lite").exists())


def ladder(model: str, input_size: int, *, lite: bool) -> tuple[list[Level], int]:
    """The rungs from best to cheapest, and the index of the configured one. MODNet goes one
    step (32 px) above the configured input, down to 192 (below that the lite model is both
    better and far cheaper), then to ``lite`` where it is installed. Other models only have
    their rate governed."""
    if model != "modnet":
        return [Level(model, input_size, 1.0)], 0
    sizes = sorted({input_size + 32, input_size, *range(192, input_size, 32)}, reverse=True)
    levels = [Level("modnet", s, (s / input_size) ** 2) for s in sizes]
    if lite:
        levels.append(Level("lite", input_size, 0.1))  # ~8 ms against ~80: measured once running
    return levels, sizes.index(input_size)


def index_of(levels: list[Level], model: str, input_size: int) -> int | None:
    """The rung that runs ``model`` at ``input_size`` (any size for lite), or None."""
    return next((i for i, lv in enumerate(levels)
                 if lv.model == model and (model == "lite" or lv.input_size == input_size)), None)


@dataclass(frozen=True)
class Opening:
    """Where a budgeted run starts: ``matting`` is the config to load first, ``configured`` the one the
    ladder is built from, ``ms`` the configured model's CPU ms a matte from this machine's runtime check
    (0: not checked yet), ``why`` what the log and the status say when they differ."""

    matting: object  # MattingConfig
    configured: object
    ms: float = 0.0
    why: str = ""


def recorded_ms(m) -> float:
    """CPU ms a matte of ``m.model`` on one thread, as this machine's one-time runtime check measured it on
    shipped 720p frames at the configured input (``vcam bench --auto``); 0 when it has not run, or the
    user picked the runtime, the providers or the file."""
    if m.runtime != "auto" or m.model_path or str(m.providers).strip().lower() not in ("", "auto"):
        return 0.0
    from ..models import store
    from ..models.matting import precision

    try:
        rec = precision.recorded(m.model, store.resolve(m.model, fetch=False))
    except (VcamError, OSError):
        return 0.0
    return rec.ms if rec is not None else 0.0


OTHER_CORES = 0.25  # capture and compositing at 720p30, the least measured (AMD EPYC Zen 5; 0.3 on Zen 3, more
# on a slow Xeon): what :func:`opening` leaves them before it has measured anything


def opening(m, budget: float | None, *, lite: bool, pixel_rate: float = 1280 * 720 * 30) -> Opening:
    """The rung to load first under ``budget``. The configured one, unless its measured cost says it
    could not sustain :data:`FLOOR_HZ` within what the budget leaves after capture and compositing
    (:data:`OTHER_CORES`, scaled to ``pixel_rate``, pixels a second): the ladder would step down after
    its settle anyway, and meanwhile the heavier model's first seconds would cost the mean (4 s of
    MODNet at 0.2 s a matte, on a slow AVX2 machine; `vcam demo` measured 0.69 cores under 0.6 when an
    int8 MODNet at 192 looked affordable with nothing else counted). Then the first rung below that
    could (``build_parts`` still loads the configured model first, so its errors come at start). The
    ladder still starts from the configured model, so it can step back up."""
    if budget is None:
        return Opening(m, m)
    levels, i = ladder(m.model, m.input_size, lite=lite)
    ms = recorded_ms(m) if len(levels) > 1 else 0.0
    if not ms:
        return Opening(m, m)
    floor = floor_for(m.max_hz or CEILING_HZ)
    other = OTHER_CORES * pixel_rate / (1280 * 720 * 30)
    cores = lambda j: floor * ms / 1e3 * levels[j].cost / levels[i].cost  # noqa: E731
    j = next((j for j in range(i, len(levels)) if cores(j) + other <= Governor.headroom * budget), len(levels) - 1)
    if j == i:
        return Opening(m, m, ms)
    lv = levels[j]
    why = (f"started at {lv.label}: {levels[i].label} takes {ms:.0f} ms of CPU a matte here, so "
           f"{floor:g} mattes/s would need {cores(i):.2f} cores, and capture and compositing about "
           f"{other:.2f}, of the {budget:g}")
    return Opening(replace(m, model=lv.model, input_size=lv.input_size), m, ms, why)


class Governor:
    """See the module's doc. Call :meth:`observe` a few times a second with the process's CPU
    seconds, :meth:`may_start` before an inference, :meth:`spent` after it, and apply what
    :meth:`decide` returns."""

    window = 2.0  # s: how fast the measured cores follow
    hold_down = 1.0  # s below floor_hz before stepping down
    starve_window = 2.0  # s over which the bucket's hold-backs are measured (see decide)
    starve_share = 0.5  # held back this share of it: the level cannot serve what the picture asks
    hold_up = 6.0  # s with room to spare before stepping up
    headroom = 0.97  # aim a little under the budget (the mean must not exceed it)
    max_gap_cap = 0.5  # s: an inference may always start this long after the last one, or sooner (max_gap)
    settle = 3.0  # s after the start before the ladder moves (loading and first-frame compiles cost CPU)
    backoff_cap = 64  # the wait before returning to a level the ladder fell from doubles, up to hold_up × this
    stable = 60.0  # s at a level without falling before its fall count is forgotten

    def __init__(self, budget: float, levels: list[Level], start: int = 0, *, ceiling_hz: float = 15.0,
                 floor_hz: float = FLOOR_HZ, max_age: float = 1.0):
        self.budget = budget
        self.max_age = max_age  # s: matting.max_age, after which a matte fails closed
        self._wall = 0.0  # s per matte from its start to its result, smoothed
        self.levels, self.index = levels, start
        self.home = start  # the configured rung: the still upgrade's (see may_upgrade)
        self.still_upgrade = False  # matting.still_upgrade, with reuse_still: set by whoever runs the matting
        self.upgrades = 0  # mattes the still upgrade made
        self.ceiling_hz, self.floor_hz = ceiling_hz, floor_hz
        self.tokens = 0.0  # CPU s the next inferences may spend
        self._cost: dict[int, float] = {}  # level → EMA of CPU s per matte
        self._t = None  # last observe()
        self._cpu = 0.0
        self._matting_cpu = 0.0  # CPU s of inferences since the last observe()
        self.matting_cpu_total = 0.0  # CPU s of all inferences (scripts/soak.py: what else the process spends)
        self._t_first = None
        self._cpu_first = 0.0
        self.cores = 0.0  # measured, smoothed over `window`
        self.other = 0.0  # cores used by everything but inference, smoothed
        self._last_start = -1e9
        self._t_denied = -1e9  # when the bucket last held an inference back
        self._held: collections.deque = collections.deque()  # (from, to) of hold-backs, merged, newest last
        self._made: collections.deque = collections.deque()  # when each of the latest inferences ended (about)
        self._low_since = None
        self._demand: collections.deque = collections.deque()  # (time, inferences so far), for stepping up
        self._inferences = 0
        self._falls: dict[int, int] = {}  # level → times the ladder fell from it lately
        self._not_before: dict[int, float] = {}  # level → the earliest time the ladder may step up to it
        self._t_moved = None
        self.changes = 0
        self.reason = "starting at the configured model"
        self.over_floor = False  # everything but inference alone takes more than the budget (said once)
        self.over_model = False  # the cheapest rung's model, kept fresh, takes more than the budget (said once)
        self.lock = threading.RLock()  # the matting workers and the ticker call in from their threads

    def open_at(self, op: Opening, configured: int) -> None:
        """Start at the rung ``op`` loaded (see :func:`opening`), knowing the configured rung's cost."""
        i = index_of(self.levels, op.matting.model, op.matting.input_size)
        if op.ms:
            self._cost[configured] = op.ms / 1e3
        if i is not None and i != self.index:
            self.index, self.reason = i, op.why

    def extend(self, levels: list[Level]) -> bool:
        """Rungs below the cheapest arrived (the lite model was fetched while running): ``levels`` is the
        ladder rebuilt with them. What was measured and the backoff stay, as the existing rungs keep
        their places. A ladder that changed meanwhile (a switch, a drop) is left alone."""
        with self.lock:
            n = len(self.levels)
            if len(levels) <= n or list(levels[:n]) != self.levels:
                return False
            self.levels = list(levels)
            return True

    def set_levels(self, levels: list[Level], start: int) -> None:
        """A new ladder (the user switched model): costs are measured afresh."""
        with self.lock:
            self.levels, self.index, self.home = levels, start, start
            self._cost.clear()
            self._forget_falls()
            self.reason = "the model was switched"

    def set_budget(self, budget: float) -> None:
        """A new budget while running (``vcam ctl budget``): the ladder judges its levels against it
        from now on. The backoff and the once-said warnings were about the old budget, so they go;
        what each level costs was measured, and stays."""
        with self.lock:
            self.budget = budget
            self._forget_falls()
            self._low_since = None
            self._demand.clear()
            self.over_floor = self.over_model = False
            self.tokens = min(self.tokens, self._cap())
            self.reason = f"the budget was set to {budget:g} cores"

    # --- measurements -------------------------------------------------------------------
    @property
    def level(self) -> Level:
        return self.levels[self.index]

    def cost(self, index: int | None = None) -> float:
        """CPU s per matte at a level: measured there, else scaled from the one measured."""
        i = self.index if index is None else index
        if i in self._cost:
            return self._cost[i]
        if self._cost:
            j, c = next(iter(self._cost.items()))
            return c * self.levels[i].cost / self.levels[j].cost
        return 0.08 * self.levels[i].cost

    def observe(self, now: float, process_cpu: float) -> None:
        if self._t is None:
            self._t, self._cpu, self._t_first, self._cpu_first = now, process_cpu, now, process_cpu
            self.tokens = self.cost()  # one matte to start with
            return
        dt = now - self._t
        if dt <= 0:
            return
        used = (process_cpu - self._cpu) / dt
        other = max(0.0, used - self._matting_cpu / dt)
        # While settling (model load, first-frame compiles) only the latest sample counts, so the
        # start-up burst is not remembered once the averages begin.
        k = 1.0 if now - self._t_first < self.settle else min(1.0, dt / self.window)
        self.cores += k * (used - self.cores)
        self.other += k * (other - self.other)
        self._t, self._cpu, self._matting_cpu = now, process_cpu, 0.0
        self.tokens = min(self._cap(), self.tokens + self.matting_cores * dt)

    def _cap(self) -> float:
        """The most CPU s the bucket banks: two mattes or a quarter of a second of the budget, and
        on a lighter model enough for one still upgrade plus two of its own mattes."""
        cap = max(2 * self.cost(), 0.25 * self.budget)
        return max(cap, self._upgrade_need()) if self.upgrade_level is not None else cap

    def _upgrade_need(self) -> float:
        return self.cost(self.home) + 2 * self.cost()

    @property
    def upgrade_level(self) -> Level | None:
        """The configured rung, while the ladder is on another model (the still upgrade runs it)."""
        if not self.still_upgrade or self.home >= len(self.levels):
            return None
        home = self.levels[self.home]
        return home if home.model != self.level.model else None

    def may_upgrade(self) -> bool:
        """May a still picture's refresh run the configured model now (``matting.still_upgrade``)? When
        the ladder is on a lighter model and the bucket holds the configured model's cost plus two of the
        lighter model's mattes, so that motion right after it is not held back."""
        return self.upgrade_level is not None and self.tokens >= self._upgrade_need()

    @property
    def matting_cores(self) -> float:
        return max(0.0, self.headroom * self.budget - self.other)

    @property
    def mean_cores(self) -> float:
        """Mean cores since the first observation."""
        dt = (self._t or 0) - (self._t_first or 0)
        return (self._cpu - self._cpu_first) / dt if dt > 0 else 0.0

    def sustained_hz(self, index: int | None = None) -> float:
        return self.matting_cores / max(self.cost(index), 1e-4)

    @property
    def floor(self) -> float:
        """The rate below which the ladder steps down (:func:`floor_for`; ``floor_hz`` lowers it)."""
        return min(self.floor_hz, floor_for(self.ceiling_hz))

    # --- gating -------------------------------------------------------------------------
    @property
    def max_gap(self) -> float:
        """s after the last start at which an inference may start whatever the bucket holds. A matte
        arrives a latency after its start, and the compositor fails closed (a fully blurred frame)
        once the one in use is ``max_age`` old: so the next start comes early enough for its matte
        to land by 80 % of that age, latency included (on a slow or busy machine MODNet's 0.3 s
        latency plus a fixed 0.5 s gap came within a frame of failing closed). The ladder steps
        down when this forced rate is beyond the budget."""
        return max(0.1, min(self.max_gap_cap, 0.8 * self.max_age - self._wall))

    def fresh_cores(self) -> float:
        """The least this rung can use: everything else plus its mattes at the rate :attr:`max_gap` forces
        (one at least every ``max(max_gap, latency)`` s) so the matte in use never fails closed."""
        return self.other + self.cost() / max(self.max_gap, self._wall, 1e-3)

    def restart(self) -> None:
        """A new model was swapped in: the old one's result in flight is dropped, so the new one
        may start at once instead of waiting out the old one's gap."""
        with self.lock:
            self._last_start = -1e9
            self.tokens = max(self.tokens, 0.0)

    def may_start(self, now: float) -> float:
        """0 if an inference may start now, else the seconds to wait before asking again."""
        wait_rate = self._last_start + 1.0 / self.ceiling_hz - now if self.ceiling_hz else 0.0
        if self.tokens < 0 and now - self._last_start < self.max_gap:
            rate = self.matting_cores
            wait_tokens = -self.tokens / rate if rate > 0 else 0.25
            self._t_denied = now
            self._hold_back(now, now + min(wait_tokens, 0.25))
        else:
            wait_tokens = 0.0
        wait = max(wait_rate, wait_tokens)
        if wait <= 0:
            self._last_start = now
            return 0.0
        return min(wait, 0.25)

    def _hold_back(self, now: float, until: float) -> None:
        if self._held and now <= self._held[-1][1]:
            self._held[-1] = (self._held[-1][0], max(self._held[-1][1], until))
        else:
            self._held.append((now, until))
        while self._held and self._held[0][1] < now - self.starve_window:
            self._held.popleft()

    def held_back_share(self, now: float) -> float:
        """The share of the last :attr:`starve_window` seconds in which the bucket held inferences back."""
        lo = now - self.starve_window
        return sum(max(0.0, min(b, now) - max(a, lo)) for a, b in self._held) / self.starve_window

    def wanted_hz(self, now: float) -> float:
        """The mattes a second the picture asked for over the last :attr:`starve_window` s: those made, over
        the share of the time the bucket did not hold them back (at most four times those made), up to the
        ceiling. A fall goes to the best level below that gives this or the floor, whichever is less: a
        still call held back now and then on MODNet at 256 needs 192, not the lite model a moving one needs."""
        made = sum(t >= now - self.starve_window for t in self._made) / self.starve_window  # spent() trims it
        wanted = made / max(0.25, 1.0 - self.held_back_share(now))
        return min(wanted, self.ceiling_hz) if self.ceiling_hz else wanted

    def spent(self, cpu_s: float, inferred: bool = True, wall_s: float | None = None, *, upgrade: bool = False) -> None:
        """An inference (``inferred``) or a reuse check finished, having taken ``cpu_s`` of CPU and
        ``wall_s`` from start to result. ``upgrade``: it ran the configured model for a still picture
        (:meth:`may_upgrade`): its cost is the configured rung's, and it is not one of the rate's mattes."""
        if not inferred:
            return  # the still check's CPU shows up in `other`
        self.tokens -= cpu_s
        self._matting_cpu += cpu_s
        self.matting_cpu_total += cpu_s
        level = self.home if upgrade else self.index
        c = self._cost.get(level)
        self._cost[level] = cpu_s if c is None else c + 0.2 * (cpu_s - c)
        if upgrade:
            self.upgrades += 1
            return
        if wall_s is not None:
            self._wall = wall_s if not self._inferences else self._wall + 0.2 * (wall_s - self._wall)
        self._inferences += 1
        t = self._t if self._t is not None else 0.0
        self._made.append(t)
        while self._made[0] < t - self.starve_window:
            self._made.popleft()

    # --- the ladder ---------------------------------------------------------------------
    def decide(self, now: float) -> Level | None:
        """The level to switch to, or ``None`` to stay.

        Down, while the budget holds inferences back for at least :attr:`starve_share` of the last
        :attr:`starve_window` s and sustains less than :attr:`floor` here:
        to the best level below that sustains it, or what the picture asked for if that is less
        (:meth:`wanted_hz`; the last one if none). Up, one level, when the
        inferences actually needed over the last ``hold_up`` s (a still picture needs few) would
        fit the budget there with a fifth to spare, and not sooner after a fall from that level
        than its backoff (see :meth:`_move`)."""
        if self._t is None or now - self._t_first < self.settle:
            return None
        if self.other >= self.headroom * self.budget and now - self._t_first > 2 * self.settle:
            self.over_floor = True
        elif (self.index == len(self.levels) - 1 and now - self._t_first > 2 * self.settle and not self.over_floor
              and self.other < 0.8 * self.budget and self.fresh_cores() > self.budget):
            # A slow model with no rung below (u2netp on a slow CPU): max_gap's rate alone is over the budget,
            # while the rest leaves it a fair share (else the rest is what to blame: below_floor's case).
            self.over_model = True
        hz, floor = self.sustained_hz(), self.floor
        starved = now - self._t_denied < 1.0  # held back at all lately: no step up
        # Down only while the picture asks for more than this level gives: held back for half the window.
        # A single hold-back is not that: a call that needs 4 mattes/s of a level that sustains 6 is held
        # back now and then (a burst, the bank reset by a move), and falling for it swung a still call
        # between MODNet and lite every few seconds (10 moves a minute at 1.0 core on an AVX2 EPYC).
        wanting = self.held_back_share(now) >= self.starve_share
        if self._t_moved is not None and now - self._t_moved > self.stable:
            self._falls.pop(self.index, None)  # this level has held: a later fall starts the backoff afresh
        if hz < floor and wanting and self.index < len(self.levels) - 1:
            self._low_since = self._low_since or now
            if now - self._low_since >= self.hold_down:
                below = range(self.index + 1, len(self.levels))
                need = min(floor, self.wanted_hz(now))
                target = next((i for i in below if self.sustained_hz(i) >= need), below[-1])
                if self.matting_cores > 0:
                    why = (f"{hz:.1f} Hz fit the budget at {self.level.label}, below {floor:g} Hz" if need >= floor else
                           f"{hz:.1f} Hz fit the budget at {self.level.label}, below the {need:.1f} mattes/s "
                           f"the picture asked for")
                else:  # "0.0 Hz fit" would read as if nothing had been measured
                    why = (f"capture and compositing take {self.other:.2f} of the {self.budget:g} cores, which "
                           f"leaves nothing to fit the budget at {self.level.label}")
                return self._move(target, now, why)
            return None
        self._low_since = None
        if self.index == 0 or starved:
            self._demand.clear()
            return None
        self._demand.append((now, self._inferences))
        while self._demand and now - self._demand[0][0] > self.hold_up:
            self._demand.popleft()
        t0, n0 = self._demand[0]
        if now - t0 < 0.9 * self.hold_up:
            return None
        demand_hz = (self._inferences - n0) / (now - t0)
        need = max(demand_hz, 1.0) * self.cost(self.index - 1)
        if need <= 0.8 * self.matting_cores and now >= self._not_before.get(self.index - 1, 0.0):
            return self._move(self.index - 1, now, f"{demand_hz:.1f} mattes/s were needed, which fit the budget at "
                                                   f"{self.levels[self.index - 1].label}")
        return None

    def drop(self, level: Level, why: str) -> None:
        """A level that cannot be used here (its model failed to load): off the ladder."""
        with self.lock:
            if level in self.levels and len(self.levels) > 1:
                i = self.levels.index(level)
                del self.levels[i]
                if self.index >= i and self.index > 0:
                    self.index -= 1
                if self.home >= i and self.home > 0:
                    self.home -= 1
                self._cost = {}
                self._forget_falls()
                self.reason = why

    def _forget_falls(self) -> None:
        """The backoff is kept by level index: a ladder that changed starts it afresh."""
        self._falls.clear()
        self._not_before.clear()

    def _move(self, index: int, now: float, why: str) -> Level:
        if index > self.index:
            # A fall: a still moment would soon make the level above look affordable again, and the
            # next movement would drop it again, each time loading a model. Each fall from a level
            # doubles the wait before the ladder returns to it (hold_up × 2, 4, … backoff_cap).
            k = self._falls[self.index] = self._falls.get(self.index, 0) + 1
            self._not_before[self.index] = now + self.hold_up * min(2 ** k, self.backoff_cap)
        self._t_moved = now
        self.index = index
        self._demand.clear()
        self._low_since = None
        self.changes += 1
        self.reason = why
        self.tokens = min(self.tokens, self.cost())
        return self.level

    def status(self) -> dict:
        return {"budget_cores": round(self.budget, 2), "cores": round(self.cores, 2),
                "mean_cores": round(self.mean_cores, 3), "matting_cores": round(self.matting_cores, 2),
                "chosen": self.level.label, "sustained_hz": round(min(self.sustained_hz(), self.ceiling_hz or 1e9), 1),
                "ms_per_matte": round(self.cost() * 1e3, 1), "changes": self.changes, "why": self.reason,
                "still_upgrade": self.upgrade_level.label if self.upgrade_level is not None else None,
                "upgrades": self.upgrades,
                "other_cores": round(self.other, 2), "below_floor": self.over_floor,
                "model_over_budget": self.over_model}
