//! The open connections of one listener, and who gets a slot at the caps.
//!
//! Refusing every new connection at the cap would let whoever holds the slots lock real
//! clients out, and an idle connection costs an attacker nothing to hold. So at a cap a new
//! connection closes one that is *idle* — no request in progress; one still dribbling its
//! headers counts as idle — choosing the one idle the longest, of the address holding the most
//! connections: a flood makes room out of itself. Only when nothing is idle is the newcomer
//! refused. A connection answering a request is never closed to make room (its client is
//! waiting for bytes; one that stopped reading is `--send-timeout`'s); one whose request starts
//! in the very instant it is chosen is cut, and its client retries as after any idle close.
//!
//! Per address (an IPv4 address, or an IPv6 /64: one host is usually given a whole /64), a
//! share is enforced the same way against that address's own connections, so one attacker
//! cannot take every slot.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use super::activity::ConnState;

/// The address connections are counted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerKey {
    V4(u32),
    /// The /64 prefix.
    V6(u64),
}

impl PeerKey {
    pub fn of(ip: IpAddr) -> PeerKey {
        match ip {
            IpAddr::V4(v4) => PeerKey::V4(v4.into()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => PeerKey::V4(v4.into()),
                None => PeerKey::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// Why a connection was refused (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The listener is full and no connection is idle.
    Limit,
    /// The address holds its share and none of its connections is idle.
    PerIp,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Limit => "limit",
            Refusal::PerIp => "per_ip",
        }
    }
}

#[derive(Default)]
struct Table {
    open: usize,
    next_id: u64,
    peers: HashMap<PeerKey, Vec<Arc<ConnState>>>,
}

impl Table {
    /// The connection of `peer` idle the longest.
    fn oldest_idle(&self, peer: PeerKey) -> Option<Arc<ConnState>> {
        self.peers
            .get(&peer)?
            .iter()
            .filter(|c| c.is_idle())
            .min_by_key(|c| c.idle_since())
            .cloned()
    }

    /// The connection idle the longest of the address holding the most connections that has
    /// an idle one.
    fn victim(&self) -> Option<(PeerKey, Arc<ConnState>)> {
        let mut peers: Vec<(PeerKey, usize)> =
            self.peers.iter().map(|(k, v)| (*k, v.len())).collect();
        peers.sort_unstable_by_key(|p| std::cmp::Reverse(p.1));
        peers
            .into_iter()
            .find_map(|(k, _)| Some((k, self.oldest_idle(k)?)))
    }

    fn remove(&mut self, peer: PeerKey, id: u64) -> bool {
        let Some(conns) = self.peers.get_mut(&peer) else {
            return false;
        };
        let Some(i) = conns.iter().position(|c| c.id == id) else {
            return false;
        };
        conns.swap_remove(i);
        if conns.is_empty() {
            self.peers.remove(&peer);
        }
        self.open -= 1;
        true
    }
}

/// The connection table of one listener.
pub struct Slots {
    table: Mutex<Table>,
    max: usize,
    per_peer: usize,
}

/// A connection's place in the table; dropping it (when the connection ends) frees it.
pub struct Slot {
    slots: Arc<Slots>,
    peer: PeerKey,
    pub state: Arc<ConnState>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        // Already gone if it was evicted.
        self.slots.lock().remove(self.peer, self.state.id);
    }
}

impl Slots {
    pub fn new(max: usize, per_peer: usize) -> Arc<Slots> {
        Arc::new(Slots {
            table: Mutex::default(),
            max: max.max(1),
            per_peer: per_peer.clamp(1, max.max(1)),
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connections holding a slot.
    #[cfg(test)]
    pub fn open(&self) -> usize {
        self.lock().open
    }

    /// A slot for a connection from `ip`, closing an idle connection to make room at a cap.
    /// The evicted connection is removed from the table at once and closes itself.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        let peer = PeerKey::of(ip);
        let mut t = self.lock();
        let held = t.peers.get(&peer).map_or(0, Vec::len);
        let victim = if held >= self.per_peer {
            Some((peer, t.oldest_idle(peer).ok_or(Refusal::PerIp)?))
        } else if t.open >= self.max {
            Some(t.victim().ok_or(Refusal::Limit)?)
        } else {
            None
        };
        if let Some((victim_peer, victim)) = victim {
            t.remove(victim_peer, victim.id);
            victim.evict();
        }
        t.next_id += 1;
        let state = ConnState::accepted(t.next_id);
        t.peers.entry(peer).or_default().push(state.clone());
        t.open += 1;
        Ok(Slot {
            slots: self.clone(),
            peer,
            state,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn peers_are_ipv4_addresses_or_ipv6_slash_64s() {
        assert_eq!(
            PeerKey::of(ip("10.0.0.1")),
            PeerKey::of(ip("::ffff:10.0.0.1"))
        );
        assert_ne!(PeerKey::of(ip("10.0.0.1")), PeerKey::of(ip("10.0.0.2")));
        assert_eq!(
            PeerKey::of(ip("2001:db8:1:2::1")),
            PeerKey::of(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            PeerKey::of(ip("2001:db8:1:2::1")),
            PeerKey::of(ip("2001:db8:1:3::1"))
        );
    }

    #[test]
    fn at_the_limit_the_biggest_holders_longest_idle_connection_makes_room() {
        let slots = Slots::new(4, 4);
        let a1 = slots.admit(ip("10.0.0.1")).unwrap();
        let a2 = slots.admit(ip("10.0.0.1")).unwrap();
        let b1 = slots.admit(ip("10.0.0.2")).unwrap();
        let _a3 = slots.admit(ip("10.0.0.1")).unwrap();
        // a1 answers a request: it is not idle, so a2 (the next oldest of the biggest) goes.
        let busy = a1.state.request_started();
        let c1 = slots.admit(ip("10.0.0.3")).unwrap();
        assert!(a2.state.snapshot().evicted);
        assert!(!a1.state.snapshot().evicted && !b1.state.snapshot().evicted);
        assert_eq!(slots.open(), 4);
        drop(a2); // the evicted connection ends: nothing is freed twice
        assert_eq!(slots.open(), 4);
        drop(busy);
        drop(c1);
        assert_eq!(slots.open(), 3);
    }

    #[test]
    fn nothing_idle_at_the_limit_refuses() {
        let slots = Slots::new(2, 2);
        let a = slots.admit(ip("10.0.0.1")).unwrap();
        let b = slots.admit(ip("10.0.0.2")).unwrap();
        let _ga = a.state.request_started();
        let _gb = b.state.request_started();
        assert_eq!(
            slots.admit(ip("10.0.0.3")).err(),
            Some(Refusal::Limit),
            "busy connections are never closed to make room"
        );
        assert_eq!(slots.open(), 2);
    }

    #[test]
    fn one_address_makes_room_only_out_of_its_own_connections() {
        let slots = Slots::new(10, 2);
        let victim = slots.admit(ip("10.0.0.9")).unwrap();
        let a1 = slots.admit(ip("10.0.0.1")).unwrap();
        let a2 = slots.admit(ip("10.0.0.1")).unwrap();
        let _a3 = slots.admit(ip("10.0.0.1")).unwrap();
        assert!(
            a1.state.snapshot().evicted,
            "its own oldest idle connection"
        );
        assert!(!victim.state.snapshot().evicted);
        let _g2 = a2.state.request_started();
        let _g3 = _a3.state.request_started();
        assert_eq!(slots.admit(ip("10.0.0.1")).err(), Some(Refusal::PerIp));
        assert!(slots.admit(ip("10.0.0.2")).is_ok(), "others still get in");
    }

    #[test]
    fn a_real_client_gets_in_through_a_flood_of_idle_connections() {
        let slots = Slots::new(100, 100);
        let mut flood: Vec<Slot> = (0..1100)
            .filter_map(|i| {
                slots
                    .admit(ip(&format!("10.1.{}.{}", i / 200, i % 200 + 1)))
                    .ok()
            })
            .collect();
        assert_eq!(flood.len(), 1100, "each newcomer evicts an idle one");
        flood.retain(|s| !s.state.snapshot().evicted);
        assert_eq!(flood.len(), 100);
        let real = slots.admit(ip("192.168.0.7")).unwrap();
        let _busy = real.state.request_started();
        for i in 0..500 {
            flood.push(slots.admit(ip(&format!("10.2.0.{}", i % 250 + 1))).unwrap());
        }
        assert!(
            !real.state.snapshot().evicted,
            "a connection with a request stays"
        );
    }
}
