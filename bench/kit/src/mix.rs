//! The workload: which command each client sends next, and with what amount.

use std::fmt;
use std::str::FromStr;

/// One wallet command of the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    Credit,
    Debit,
    Transfer,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Credit => "credit",
            Op::Debit => "debit",
            Op::Transfer => "transfer",
        }
    }
}

/// Relative weights of the commands, written `credit=45,debit=45,transfer=10`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    pub credit: u32,
    pub debit: u32,
    pub transfer: u32,
}

impl Mix {
    pub fn total(&self) -> u64 {
        self.credit as u64 + self.debit as u64 + self.transfer as u64
    }

    /// The next command, drawn with the mix's weights.
    pub fn pick(&self, rng: &mut Rng) -> Op {
        let r = rng.below(self.total());
        if r < self.credit as u64 {
            Op::Credit
        } else if r < self.credit as u64 + self.debit as u64 {
            Op::Debit
        } else {
            Op::Transfer
        }
    }

    /// The next command of a client: drawn in a fixed order (command, wallet,
    /// amount, tag, then a transfer's destination), so that every implementation
    /// of the workload given the same seed sends the same commands.
    pub fn draw(&self, rng: &mut Rng, wallets: usize) -> Draw {
        assert!(wallets > 0, "a workload needs a wallet");
        let op = self.pick(rng);
        let wallet = rng.below(wallets as u64) as usize;
        let amount_minor = rng.between(MIN_AMOUNT, MAX_AMOUNT);
        let tag = rng.next_u64();
        let destination = (op == Op::Transfer && wallets > 1).then(|| (wallet + 1 + rng.below(wallets as u64 - 1) as usize) % wallets);
        Draw { op, wallet, amount_minor, tag, destination }
    }

    /// The same mix without transfers (for runs that measure single-aggregate
    /// commands only); `None` if nothing is left.
    pub fn without_transfers(&self) -> Option<Mix> {
        let mix = Mix { transfer: 0, ..*self };
        (mix.total() > 0).then_some(mix)
    }
}

impl Default for Mix {
    fn default() -> Self {
        Mix { credit: 45, debit: 45, transfer: 10 }
    }
}

impl FromStr for Mix {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut mix = Mix { credit: 0, debit: 0, transfer: 0 };
        let mut seen = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part.split_once('=').ok_or_else(|| format!("{part:?}: expected name=weight, e.g. credit=45"))?;
            let weight: u32 = weight.trim().parse().map_err(|_| format!("{part:?}: the weight must be a whole number"))?;
            let name = name.trim();
            if seen.contains(&name) {
                return Err(format!("{name} is given twice"));
            }
            seen.push(name);
            match name {
                "credit" => mix.credit = weight,
                "debit" => mix.debit = weight,
                "transfer" => mix.transfer = weight,
                other => return Err(format!("unknown command {other:?}; the mix knows credit, debit and transfer")),
            }
        }
        if mix.total() == 0 {
            return Err("the mix needs at least one command with a weight above 0".into());
        }
        Ok(mix)
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = [(Op::Credit, self.credit), (Op::Debit, self.debit), (Op::Transfer, self.transfer)]
            .into_iter()
            .filter(|(_, w)| *w > 0)
            .map(|(op, w)| format!("{}={w}", op.name()))
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// The smallest and largest amount of a command, in minor units (1.00 to 100.00).
pub const MIN_AMOUNT: u64 = 100;
pub const MAX_AMOUNT: u64 = 10_000;

/// One command of the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Draw {
    pub op: Op,
    /// Index of the wallet it acts on (a transfer's source).
    pub wallet: usize,
    pub amount_minor: u64,
    /// Random bits for its reference.
    pub tag: u64,
    /// A transfer's destination: another wallet (`None` with a single wallet: the
    /// caller supplies a counterparty).
    pub destination: Option<usize>,
}

/// SplitMix64: small, fast, and the same sequence on every platform and version,
/// so a seed names a workload exactly.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The generator of client `client` in a run seeded with `seed`.
    pub fn for_client(seed: u64, client: usize) -> Self {
        let mut rng = Rng(seed ^ (client as u64).wrapping_mul(0xA24B_AED4_963E_E407));
        rng.next_u64();
        rng
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`), without modulo bias (Lemire's method).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0)");
        loop {
            let m = (self.next_u64() as u128) * (n as u128);
            let low = m as u64;
            if low >= n.wrapping_neg() % n {
                return (m >> 64) as u64;
            }
        }
    }

    /// Uniform in `min..=max`.
    pub fn between(&mut self, min: u64, max: u64) -> u64 {
        assert!(min <= max, "between({min}, {max})");
        min + self.below(max - min + 1)
    }
}

/// Minor units as the API's JSON amount in major units: `1234` → `12.34`, `500` → `5`.
pub fn major_units(minor: u64) -> String {
    match (minor / 100, minor % 100) {
        (major, 0) => major.to_string(),
        (major, cents) if cents % 10 == 0 => format!("{major}.{}", cents / 10),
        (major, cents) => format!("{major}.{cents:02}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mix_parses_prints_and_refuses_nonsense() {
        let mix: Mix = "credit=45, debit=45,transfer=10".parse().unwrap();
        assert_eq!(mix, Mix { credit: 45, debit: 45, transfer: 10 });
        assert_eq!(mix.to_string(), "credit=45,debit=45,transfer=10");
        assert_eq!("debit=1".parse::<Mix>().unwrap().to_string(), "debit=1");
        for bad in ["", "credit=0", "credit", "credit=x", "refund=1", "credit=1,credit=2", "credit=-1"] {
            assert!(bad.parse::<Mix>().is_err(), "{bad:?} should be refused");
        }
        assert_eq!(mix.without_transfers(), Some(Mix { credit: 45, debit: 45, transfer: 0 }));
        assert_eq!("transfer=3".parse::<Mix>().unwrap().without_transfers(), None);
    }

    #[test]
    fn picks_follow_the_weights() {
        let mix: Mix = "credit=45,debit=45,transfer=10".parse().unwrap();
        let mut rng = Rng::new(7);
        let mut counts = [0u32; 3];
        let draws = 200_000;
        for _ in 0..draws {
            counts[mix.pick(&mut rng) as usize] += 1;
        }
        let share = |c: u32| c as f64 / draws as f64;
        assert!((share(counts[0]) - 0.45).abs() < 0.01, "{counts:?}");
        assert!((share(counts[1]) - 0.45).abs() < 0.01, "{counts:?}");
        assert!((share(counts[2]) - 0.10).abs() < 0.01, "{counts:?}");
        let only_debits: Mix = "debit=1".parse().unwrap();
        assert!((0..1000).all(|_| only_debits.pick(&mut rng) == Op::Debit));
    }

    #[test]
    fn a_seed_names_one_sequence_and_clients_differ() {
        let run = |seed, client| {
            let mut rng = Rng::for_client(seed, client);
            (0..8).map(|_| rng.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(run(1, 0), run(1, 0));
        assert_ne!(run(1, 0), run(1, 1));
        assert_ne!(run(1, 0), run(2, 0));
        // SplitMix64's published first output for seed 0.
        assert_eq!(Rng::new(0).next_u64(), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn bounded_draws_stay_in_range_and_cover_it() {
        let mut rng = Rng::new(3);
        let mut seen = [false; 5];
        for _ in 0..1000 {
            let v = rng.between(10, 14);
            assert!((10..=14).contains(&v));
            seen[(v - 10) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
        assert_eq!(rng.below(1), 0);
    }

    #[test]
    fn draws_stay_in_bounds_and_transfers_go_elsewhere() {
        let mix: Mix = "credit=1,debit=1,transfer=2".parse().unwrap();
        let mut rng = Rng::for_client(9, 3);
        let (mut transfers, mut hits) = (0, [0u32; 4]);
        for _ in 0..10_000 {
            let d = mix.draw(&mut rng, 4);
            assert!(d.wallet < 4 && (MIN_AMOUNT..=MAX_AMOUNT).contains(&d.amount_minor));
            hits[d.wallet] += 1;
            match d.op {
                Op::Transfer => {
                    transfers += 1;
                    let to = d.destination.expect("a destination");
                    assert!(to < 4 && to != d.wallet);
                }
                _ => assert_eq!(d.destination, None),
            }
        }
        assert!((4_500..5_500).contains(&transfers), "{transfers}");
        assert!(hits.iter().all(|h| (2_200..2_800).contains(h)), "{hits:?}");
        assert_eq!(mix.draw(&mut rng.clone(), 1).destination, None);
        // Same seed, same commands.
        let (mut a, mut b) = (Rng::for_client(5, 0), Rng::for_client(5, 0));
        assert!((0..100).all(|_| mix.draw(&mut a, 64) == mix.draw(&mut b, 64)));
    }

    #[test]
    fn amounts_are_written_in_major_units() {
        assert_eq!(major_units(1234), "12.34");
        assert_eq!(major_units(500), "5");
        assert_eq!(major_units(1250), "12.5");
        assert_eq!(major_units(7), "0.07");
        assert_eq!(major_units(0), "0");
    }
}
