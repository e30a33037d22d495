//! Strike accounting: offences of a peer add strikes, which fade with good behaviour; a peer with too
//! many is banned for a while. Sans-IO (times are microseconds on the caller's clock), so the node's
//! guard and the simulator count offences with this one copy of the rules.

/// Offences and their weight in strikes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offence {
    /// More requests per second than allowed.
    Flood,
    /// More streams open at once than allowed.
    TooManyStreams,
    /// A request that does not decode.
    Malformed,
    /// A frame longer than the protocol allows.
    Oversized,
    /// A head (or a manifest) whose seal or commit hash does not match what the peer announced.
    ForgedHead,
    /// Object bytes that fail their hash: lying, banned at once.
    BadObject,
}

impl Offence {
    /// Strikes this offence adds under `rules`.
    pub fn strikes(self, rules: &Rules) -> f64 {
        match self {
            Self::Flood | Self::TooManyStreams => 1.0,
            Self::Malformed => 4.0,
            Self::Oversized | Self::ForgedHead => 8.0,
            Self::BadObject => rules.ban_at,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::Flood => "too many requests per second",
            Self::TooManyStreams => "too many requests in flight",
            Self::Malformed => "undecodable requests",
            Self::Oversized => "oversized frames",
            Self::ForgedHead => "heads whose seal does not verify",
            Self::BadObject => "objects that fail their hash",
        }
    }
}

/// When strikes ban a peer, and for how long.
#[derive(Clone, Debug, PartialEq)]
pub struct Rules {
    /// Strikes that get a peer banned.
    pub ban_at: f64,
    /// Strikes forgiven per second of good behaviour.
    pub forgive_per_sec: f64,
    /// How long a ban lasts, in microseconds.
    pub ban_for_us: u64,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            ban_at: 20.0,
            forgive_per_sec: 0.5,
            ban_for_us: 600_000_000,
        }
    }
}

/// One peer's strikes and ban.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Record {
    /// Strikes as of `struck_us`.
    pub strikes: f64,
    struck_us: u64,
    /// Until when the peer is banned, and why.
    pub banned: Option<(u64, &'static str)>,
}

impl Record {
    /// A peer first met at `now_us`.
    pub fn new(now_us: u64) -> Self {
        Self {
            strikes: 0.0,
            struck_us: now_us,
            banned: None,
        }
    }

    /// Counts an offence at `now_us`; returns why the peer is banned if this offence banned it.
    /// Offences during a ban count nothing more.
    pub fn offend(&mut self, rules: &Rules, o: Offence, now_us: u64) -> Option<&'static str> {
        if self.is_banned(now_us) {
            return None;
        }
        let forgiven = now_us.saturating_sub(self.struck_us) as f64 / 1e6 * rules.forgive_per_sec;
        self.strikes = (self.strikes - forgiven).max(0.0) + o.strikes(rules);
        self.struck_us = now_us;
        if self.strikes < rules.ban_at {
            return None;
        }
        let reason = o.describe();
        self.banned = Some((now_us + rules.ban_for_us, reason));
        Some(reason)
    }

    pub fn is_banned(&self, now_us: u64) -> bool {
        self.banned.is_some_and(|(until, _)| until > now_us)
    }

    /// Lifts a ban that has run out, with its strikes; returns true if one did.
    pub fn expire(&mut self, now_us: u64) -> bool {
        match self.banned {
            Some((until, _)) if until <= now_us => {
                self.banned = None;
                self.strikes = 0.0;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strikes_fade_then_ban_and_the_ban_ends() {
        let rules = Rules::default();
        let mut r = Record::new(0);
        assert_eq!(r.offend(&rules, Offence::ForgedHead, 0), None);
        // 8 strikes fade at 0.5 per second: 16 s later they are gone.
        assert_eq!(r.offend(&rules, Offence::ForgedHead, 16_000_000), None);
        assert_eq!(r.strikes, 8.0);
        assert_eq!(r.offend(&rules, Offence::ForgedHead, 16_000_000), None);
        assert_eq!(
            r.offend(&rules, Offence::Malformed, 16_000_000),
            Some("undecodable requests")
        );
        assert!(r.is_banned(16_000_001));
        // Nothing more counts during the ban; it ends after ban_for.
        assert_eq!(r.offend(&rules, Offence::BadObject, 17_000_000), None);
        assert!(!r.expire(16_000_000 + rules.ban_for_us - 1));
        assert!(r.expire(16_000_000 + rules.ban_for_us));
        assert_eq!(r.strikes, 0.0);
        let mut liar = Record::new(0);
        assert!(liar.offend(&rules, Offence::BadObject, 5).is_some());
    }
}
