//! A zero-loss search in the manner of MLRsearch (RFC 9971): several goals (NDR: no loss;
//! PDR: at most 0.5 % loss) found in one search that shares its trials, with short trials first
//! and the full trial duration only in the last phase.
//!
//! For each goal the search keeps a lower bound (a load whose trial at the current duration met
//! the goal's loss ratio) and an upper bound (a load whose trial did not). Each phase:
//!
//! 1. re-measures both bounds at the phase's trial duration; a lower bound that now fails
//!    becomes the upper bound and the search steps down from it, doubling the step each time,
//!    until a load passes (an "external search"); the same upward for an upper bound that now
//!    passes;
//! 2. bisects between the bounds (in the middle, relative to the load) until the relative
//!    width `(upper - lower) / upper` is at most the phase's width.
//!
//! Widths halve from phase to phase and reach the goal's width in the last phase, whose trials
//! last the final duration. Every trial result is kept; a goal reuses another goal's trial at
//! the same load and duration. The first trial runs at the maximum load; its forwarding rate
//! (the maximum receive rate) seeds the bounds.
//!
//! **Noise (RFC 9971's goal exceed ratio and duration sum).** One trial per load makes a
//! zero-loss search fragile on a shared machine: a single descheduling of a poller loses frames
//! and drives NDR down. As in MLRsearch, a load is judged on several trials: each phase's trials
//! must add up to a duration sum (`duration_sum` in the last phase, scaled by the same factor in
//! earlier ones), and the load meets a goal when at most `exceed_ratio` of that sum was spent in
//! trials whose loss exceeded the goal's loss ratio. Trials run one at a time only until the
//! answer is certain: the load fails as soon as the lossy time alone exceeds the ratio even if
//! every missing trial passed, and passes as soon as it stays within the ratio even if every
//! missing trial failed. With `exceed_ratio` 0 and `duration_sum` equal to the final duration
//! (the defaults), one trial per load decides, and any loss fails it. With 0.5 and three final
//! durations (CSIT uses 0.5 and 21 one-second trials), a load passes on two passing trials out
//! of three.
//!
//! The device under test is anything implementing [`TrialRunner`]: the PVP topology, or a
//! synthetic device with a known loss curve in the tests.

use serde::Serialize;

/// The outcome of one trial.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct TrialOutcome {
    /// Offered load, frames per second.
    pub load: f64,
    /// Trial duration, seconds.
    pub duration: f64,
    /// Frames sent.
    pub sent: u64,
    /// Frames received.
    pub received: u64,
}

impl TrialOutcome {
    /// `(sent - received) / sent`.
    pub fn loss_ratio(&self) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            self.sent.saturating_sub(self.received) as f64 / self.sent as f64
        }
    }

    /// Frames received per second.
    pub fn forwarding_rate(&self) -> f64 {
        self.received as f64 / self.duration
    }
}

/// Runs a trial at a load (frames per second, all streams) for a duration.
pub trait TrialRunner {
    /// One trial.
    fn trial(&mut self, load: f64, duration: f64) -> Result<TrialOutcome, String>;
}

/// A search goal.
#[derive(Clone, Debug, Serialize)]
pub struct Goal {
    /// Its name in reports (`NDR`, `PDR`).
    pub name: String,
    /// The largest loss ratio a passing trial may have (0 for NDR, 0.005 for PDR).
    pub loss_ratio: f64,
}

/// The search's parameters.
#[derive(Clone, Debug, Serialize)]
pub struct SearchConfig {
    /// The lowest load to try (frames per second).
    pub min_load: f64,
    /// The highest load (the line rate, or what the generator can send).
    pub max_load: f64,
    /// The first phase's trial duration, seconds.
    pub initial_duration: f64,
    /// The last phase's trial duration, seconds.
    pub final_duration: f64,
    /// The relative width the last phase reaches (0.005: the bounds within 0.5 %).
    pub width: f64,
    /// Phases (at least 1); durations grow geometrically from initial to final.
    pub phases: u32,
    /// At most this many trials in all (a guard against a device that never settles).
    pub max_trials: u32,
    /// The share of a load's duration sum that may be spent in trials that exceeded the goal's
    /// loss ratio, with the load still meeting the goal (RFC 9971's goal exceed ratio; 0: every
    /// trial must meet it). In `[0, 1)`.
    pub exceed_ratio: f64,
    /// The trial seconds a load is judged on in the last phase (RFC 9971's goal duration sum);
    /// at least `final_duration`. Earlier phases scale it by their trial duration.
    pub duration_sum: f64,
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
            min_load: 10_000.0,
            max_load: 14_880_952.0,
            initial_duration: 1.0,
            final_duration: 10.0,
            width: 0.005,
            phases: 3,
            max_trials: 200,
            exceed_ratio: 0.0,
            duration_sum: 10.0,
        }
    }
}

/// A goal's result.
#[derive(Clone, Debug, Serialize)]
pub struct GoalResult {
    /// The goal.
    pub goal: Goal,
    /// The highest load that met the goal at the final duration (the throughput), or the
    /// minimum load if even that failed.
    pub lower_bound: f64,
    /// The lowest load that failed, or the maximum load if nothing failed.
    pub upper_bound: f64,
    /// The forwarding rate at the lower bound: of its final-duration trials sorted by loss,
    /// the worst one the exceed ratio does not discount (RFC 9971's conditional throughput).
    pub conditional_throughput: f64,
    /// Whether the minimum load itself failed (the result is then not a throughput).
    pub below_min: bool,
}

/// The whole search's results.
#[derive(Clone, Debug, Serialize)]
pub struct SearchResult {
    /// One per goal.
    pub goals: Vec<GoalResult>,
    /// Every trial, in order.
    pub trials: Vec<TrialOutcome>,
}

struct Searcher<'a, R: TrialRunner> {
    cfg: &'a SearchConfig,
    runner: &'a mut R,
    trials: Vec<TrialOutcome>,
    /// The (load, requested duration) each trial of `trials` ran at: the outcome holds the
    /// duration the runner measured, which differs from the request by a little.
    keys: Vec<(f64, f64)>,
}

impl<R: TrialRunner> Searcher<'_, R> {
    fn clamp(&self, load: f64) -> f64 {
        load.clamp(self.cfg.min_load, self.cfg.max_load)
    }

    /// The trials run so far at (load, duration).
    fn at(&self, load: f64, duration: f64) -> impl Iterator<Item = &TrialOutcome> + '_ {
        self.keys
            .iter()
            .zip(&self.trials)
            .filter(move |((l, d), _)| (l - load).abs() <= load * 1e-9 && *d == duration)
            .map(|(_, t)| t)
    }

    /// Runs one more trial at (load, duration).
    fn run(&mut self, load: f64, duration: f64) -> Result<TrialOutcome, String> {
        if self.trials.len() as u32 >= self.cfg.max_trials {
            return Err(format!(
                "the search used its {} trials without converging (the device's loss is not monotone in the load? raise max_trials or the width)",
                self.cfg.max_trials
            ));
        }
        let t = self.runner.trial(load, duration)?;
        self.trials.push(t);
        self.keys.push((load, duration));
        Ok(t)
    }

    /// A trial at (load, duration), reusing an earlier one at the same point.
    fn measure(&mut self, load: f64, duration: f64) -> Result<TrialOutcome, String> {
        let load = self.clamp(load);
        let earlier = self.at(load, duration).next().copied();
        match earlier {
            Some(t) => Ok(t),
            None => self.run(load, duration),
        }
    }

    /// Whether `load` meets `goal` at trials of `duration`: trials are added until the exceed
    /// ratio decides (see the module's documentation).
    fn passes(&mut self, goal: &Goal, load: f64, duration: f64) -> Result<bool, String> {
        let load = self.clamp(load);
        let sum = duration * (self.cfg.duration_sum / self.cfg.final_duration).max(1.0);
        loop {
            let (mut low, mut high) = (0.0, 0.0);
            for t in self.at(load, duration) {
                if t.loss_ratio() > goal.loss_ratio {
                    high += duration;
                } else {
                    low += duration;
                }
            }
            match classify(low, high, sum, self.cfg.exceed_ratio) {
                Some(verdict) => return Ok(verdict),
                None => {
                    self.run(load, duration)?;
                }
            }
        }
    }

    /// RFC 9971's conditional throughput at a lower bound (see [`GoalResult`]).
    fn conditional_throughput(&self, goal: &Goal, load: f64) -> f64 {
        let load = self.clamp(load);
        let mut ts: Vec<&TrialOutcome> = self.at(load, self.cfg.final_duration).collect();
        if ts.is_empty() {
            return 0.0;
        }
        ts.sort_by(|a, b| a.loss_ratio().total_cmp(&b.loss_ratio()));
        // The worst trial still inside the share the goal must meet.
        let keep = ((1.0 - self.cfg.exceed_ratio) * ts.len() as f64).ceil() as usize;
        let i = keep.clamp(1, ts.len()) - 1;
        let t = ts[i];
        if t.loss_ratio() > goal.loss_ratio {
            // Only when the bound fell to the minimum load: report what the best trial did.
            ts[0].forwarding_rate()
        } else {
            t.forwarding_rate()
        }
    }
}

/// Judges a load from the seconds of trials that met a goal (`low`) and exceeded it (`high`)
/// against a duration sum and an exceed ratio: `Some(true)` passes whatever the missing trials
/// give, `Some(false)` fails whatever they give, `None` needs another trial.
pub fn classify(low: f64, high: f64, sum: f64, exceed_ratio: f64) -> Option<bool> {
    let total = (low + high).max(sum);
    let missing = (sum - low - high).max(0.0);
    // Tolerate rounding in the sums (durations are added one trial at a time).
    let eps = 1e-9 * total.max(1.0);
    if high / total > exceed_ratio + eps {
        Some(false)
    } else if (high + missing) / total <= exceed_ratio + eps {
        Some(true)
    } else {
        None
    }
}

/// Runs the search.
pub fn search<R: TrialRunner>(
    cfg: &SearchConfig,
    goals: &[Goal],
    runner: &mut R,
) -> Result<SearchResult, String> {
    if !(cfg.min_load > 0.0 && cfg.min_load < cfg.max_load) {
        return Err(format!(
            "the search needs 0 < min_load < max_load (got {} and {})",
            cfg.min_load, cfg.max_load
        ));
    }
    if !(cfg.width > 0.0 && cfg.width < 1.0) {
        return Err(format!("width {} must be in (0, 1)", cfg.width));
    }
    if cfg.initial_duration <= 0.0 || cfg.final_duration < cfg.initial_duration {
        return Err("trial durations must satisfy 0 < initial <= final".into());
    }
    if !(0.0..1.0).contains(&cfg.exceed_ratio) {
        return Err(format!(
            "exceed ratio {} must be in [0, 1) (0: every trial must meet the goal)",
            cfg.exceed_ratio
        ));
    }
    if cfg.duration_sum.is_nan() || cfg.duration_sum < cfg.final_duration {
        return Err(format!(
            "duration sum {} s is below the final trial duration {} s (it is the trial time a load is judged on)",
            cfg.duration_sum, cfg.final_duration
        ));
    }
    let phases = cfg.phases.max(1);
    let mut s = Searcher {
        cfg,
        runner,
        trials: Vec::new(),
        keys: Vec::new(),
    };
    // The first trial at the maximum load: its forwarding rate seeds every goal's bounds.
    let first = s.measure(cfg.max_load, cfg.initial_duration)?;
    let mrr = first.forwarding_rate().clamp(cfg.min_load, cfg.max_load);
    let mut results = Vec::new();
    for goal in goals {
        // (lower, upper): a load believed to pass and one believed to fail.
        let mut lower = mrr;
        let mut upper = cfg.max_load;
        for phase in 0..phases {
            let last = phase + 1 == phases;
            let duration = if phases == 1 {
                cfg.final_duration
            } else {
                cfg.initial_duration
                    * (cfg.final_duration / cfg.initial_duration)
                        .powf(f64::from(phase) / f64::from(phases - 1))
            };
            let width = cfg.width * f64::from(1u32 << (phases - 1 - phase));
            // Upper bound: re-measure; if it passes, it becomes the lower bound and the
            // search steps up.
            if upper < cfg.max_load || s.passes(goal, upper, duration)? {
                let mut step = upper * width;
                while s.passes(goal, upper, duration)? {
                    lower = upper;
                    if upper >= cfg.max_load {
                        break;
                    }
                    upper = (upper + step).min(cfg.max_load);
                    step *= 2.0;
                }
            }
            // Lower bound: re-measure; if it fails, it becomes the upper bound and the search
            // steps down.
            let mut step = lower * width;
            while lower < upper && !s.passes(goal, lower, duration)? {
                upper = lower;
                if lower <= cfg.min_load {
                    break;
                }
                lower = (lower - step).max(cfg.min_load);
                step *= 2.0;
            }
            // Bisect.
            while lower < upper && (upper - lower) / upper > width {
                let mid = (lower + upper) / 2.0;
                if s.passes(goal, mid, duration)? {
                    lower = mid;
                } else {
                    upper = mid;
                }
            }
            if last {
                break;
            }
        }
        let below_min =
            lower <= cfg.min_load && !s.passes(goal, cfg.min_load, cfg.final_duration)?;
        if s.at(s.clamp(lower), cfg.final_duration).next().is_none() {
            s.measure(lower, cfg.final_duration)?;
        }
        results.push(GoalResult {
            goal: goal.clone(),
            lower_bound: lower,
            upper_bound: upper,
            conditional_throughput: s.conditional_throughput(goal, lower),
            below_min,
        });
    }
    Ok(SearchResult {
        goals: results,
        trials: s.trials,
    })
}

/// NDR (no loss) and PDR (0.5 % loss), the how-to's goals.
pub fn ndr_pdr() -> Vec<Goal> {
    vec![
        Goal {
            name: "NDR".into(),
            loss_ratio: 0.0,
        },
        Goal {
            name: "PDR".into(),
            loss_ratio: 0.005,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A device that forwards at most `cap` frames per second and loses the rest, plus a small
    /// random loss above `noisy_from` (like a real device near its limit).
    struct Synthetic {
        cap: f64,
        noisy_from: f64,
        seed: u64,
        trials: u32,
    }

    impl TrialRunner for Synthetic {
        fn trial(&mut self, load: f64, duration: f64) -> Result<TrialOutcome, String> {
            self.trials += 1;
            let sent = (load * duration) as u64;
            let mut received = (self.cap.min(load) * duration) as u64;
            if load > self.noisy_from && load <= self.cap {
                // xorshift: a loss of 0..3 frames now and then.
                self.seed ^= self.seed << 13;
                self.seed ^= self.seed >> 7;
                self.seed ^= self.seed << 17;
                received = received.saturating_sub(self.seed % 4);
            }
            Ok(TrialOutcome {
                load,
                duration,
                sent,
                received: received.min(sent),
            })
        }
    }

    fn cfg() -> SearchConfig {
        SearchConfig {
            min_load: 10_000.0,
            max_load: 14_880_952.0,
            initial_duration: 1.0,
            final_duration: 10.0,
            width: 0.005,
            phases: 3,
            max_trials: 200,
            exceed_ratio: 0.0,
            duration_sum: 10.0,
        }
    }

    #[test]
    fn converges_on_a_known_capacity() {
        for cap in [50_000.0, 3_700_000.0, 9_000_000.0, 14_880_952.0] {
            let mut dev = Synthetic {
                cap,
                noisy_from: f64::INFINITY,
                seed: 1,
                trials: 0,
            };
            let r = search(&cfg(), &ndr_pdr(), &mut dev).unwrap();
            let ndr = &r.goals[0];
            let pdr = &r.goals[1];
            // NDR: the capacity, within the width, from below.
            assert!(ndr.lower_bound <= cap * (1.0 + 1e-9), "{cap}: {ndr:?}");
            assert!(
                ndr.lower_bound >= cap * (1.0 - 0.005) - 1.0,
                "{cap}: {ndr:?}"
            );
            assert!(
                (ndr.upper_bound - ndr.lower_bound) / ndr.upper_bound <= 0.005 + 1e-12
                    || ndr.upper_bound >= cfg().max_load
            );
            // PDR: 0.5 % loss is reached at cap / 0.995.
            let pdr_true = (cap / 0.995).min(cfg().max_load);
            assert!(pdr.lower_bound <= pdr_true * (1.0 + 1e-6), "{cap}: {pdr:?}");
            assert!(
                pdr.lower_bound >= pdr_true * (1.0 - 0.005) - 1.0,
                "{cap}: {pdr:?}"
            );
            assert!(pdr.lower_bound >= ndr.lower_bound);
            assert!(!ndr.below_min);
            assert!(dev.trials < 60, "{cap}: {} trials", dev.trials);
        }
    }

    #[test]
    fn noise_near_the_limit_lowers_ndr_not_pdr() {
        let mut dev = Synthetic {
            cap: 5_000_000.0,
            noisy_from: 4_000_000.0,
            seed: 7,
            trials: 0,
        };
        let r = search(&cfg(), &ndr_pdr(), &mut dev).unwrap();
        let (ndr, pdr) = (&r.goals[0], &r.goals[1]);
        assert!(ndr.lower_bound <= 5_000_000.0, "{ndr:?}");
        assert!(pdr.lower_bound >= 5_000_000.0 * 0.995, "{pdr:?}");
        // Every trial the NDR result rests on at the final duration had no loss.
        let at = r
            .trials
            .iter()
            .find(|t| t.load == ndr.lower_bound && t.duration == 10.0)
            .unwrap();
        assert_eq!(at.loss_ratio(), 0.0);
    }

    #[test]
    fn a_device_that_always_loses_is_reported_below_min() {
        let mut dev = Synthetic {
            cap: 0.0,
            noisy_from: f64::INFINITY,
            seed: 1,
            trials: 0,
        };
        let r = search(&cfg(), &ndr_pdr(), &mut dev).unwrap();
        assert!(r.goals[0].below_min);
        assert_eq!(r.goals[0].lower_bound, 10_000.0);
    }

    #[test]
    fn classify_follows_the_exceed_ratio() {
        // One trial decides with ratio 0 and a sum of one trial.
        assert_eq!(classify(0.0, 0.0, 1.0, 0.0), None);
        assert_eq!(classify(1.0, 0.0, 1.0, 0.0), Some(true));
        assert_eq!(classify(0.0, 1.0, 1.0, 0.0), Some(false));
        // Ratio 0.5 over three trials: two of three decide.
        assert_eq!(classify(1.0, 0.0, 3.0, 0.5), None);
        assert_eq!(classify(2.0, 0.0, 3.0, 0.5), Some(true));
        assert_eq!(classify(0.0, 1.0, 3.0, 0.5), None);
        assert_eq!(classify(1.0, 1.0, 3.0, 0.5), None);
        assert_eq!(classify(0.0, 2.0, 3.0, 0.5), Some(false));
        assert_eq!(classify(2.0, 1.0, 3.0, 0.5), Some(true));
        assert_eq!(classify(1.0, 2.0, 3.0, 0.5), Some(false));
    }

    /// A device with a capacity whose every `period`-th trial also loses a few frames whatever
    /// the load: a poller descheduled now and then on a shared machine.
    struct Hiccups {
        cap: f64,
        period: u32,
        trials: u32,
    }

    impl TrialRunner for Hiccups {
        fn trial(&mut self, load: f64, duration: f64) -> Result<TrialOutcome, String> {
            self.trials += 1;
            let sent = (load * duration) as u64;
            let mut received = (self.cap.min(load) * duration) as u64;
            if self.trials.is_multiple_of(self.period) {
                received = received.saturating_sub(50);
            }
            Ok(TrialOutcome {
                load,
                duration,
                sent,
                received: received.min(sent),
            })
        }
    }

    #[test]
    fn the_exceed_ratio_rides_out_hiccups() {
        let cap = 2_000_000.0;
        // Two of three: a lone hiccup among a load's trials is outvoted, and NDR is the
        // capacity within the width.
        let mut c = cfg();
        c.exceed_ratio = 0.5;
        c.duration_sum = 3.0 * c.final_duration;
        let mut dev = Hiccups {
            cap,
            period: 3,
            trials: 0,
        };
        let r = search(&c, &ndr_pdr(), &mut dev).unwrap();
        let ndr = &r.goals[0];
        assert!(ndr.lower_bound <= cap * (1.0 + 1e-9), "{ndr:?}");
        assert!(ndr.lower_bound >= cap * (1.0 - 0.005) - 1.0, "{ndr:?}");
        // The conditional throughput comes from a trial that met the goal.
        assert!(
            ndr.conditional_throughput >= ndr.lower_bound * (1.0 - 1e-9),
            "{ndr:?}"
        );
        // The lower bound was judged on at least two final-duration trials.
        let at = r
            .trials
            .iter()
            .filter(|t| t.load == ndr.lower_bound && t.duration == c.final_duration)
            .count();
        assert!(at >= 2, "{at} trials at the NDR");
    }

    #[test]
    fn bad_parameters() {
        let mut dev = Synthetic {
            cap: 1.0,
            noisy_from: f64::INFINITY,
            seed: 1,
            trials: 0,
        };
        let mut c = cfg();
        c.min_load = c.max_load;
        assert!(search(&c, &ndr_pdr(), &mut dev).is_err());
        let mut c = cfg();
        c.width = 0.0;
        assert!(search(&c, &ndr_pdr(), &mut dev).is_err());
        let mut c = cfg();
        c.final_duration = 0.5;
        assert!(search(&c, &ndr_pdr(), &mut dev).is_err());
        let mut c = cfg();
        c.exceed_ratio = 1.0;
        assert!(search(&c, &ndr_pdr(), &mut dev).is_err());
        let mut c = cfg();
        c.duration_sum = 5.0;
        assert!(search(&c, &ndr_pdr(), &mut dev).is_err());
    }
}
