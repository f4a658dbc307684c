//! Which member owns an artifact: rendezvous (highest random weight) hashing. Every member
//! scores each artifact by SHA-256 of (member, key) and the highest score owns it, so members
//! that see the same membership agree without talking, and a member that comes or goes moves
//! only the artifacts it owned (about 1/N of them), never the others'.

use sha2::{Digest, Sha256};

/// The owner of `key` among `members` (None when there are none). Ties (never seen in
/// practice: 64-bit scores) go to the lower member, so the answer does not depend on order.
pub fn owner<'a>(members: &'a [String], key: &str) -> Option<&'a str> {
    members
        .iter()
        .map(|m| (score(m, key), m.as_str()))
        .max_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.cmp(a.1)))
        .map(|(_, m)| m)
}

fn score(member: &str, key: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(member.as_bytes());
    // A separator no member address contains: ("a", "bc") and ("ab", "c") differ.
    h.update(b"\n");
    h.update(key.as_bytes());
    let digest = h.finalize();
    u64::from_be_bytes(digest[..8].try_into().expect("SHA-256 has 32 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("10.0.0.{i}:7070")).collect()
    }

    fn keys() -> Vec<String> {
        (0..3000)
            .map(|i| format!("example.com/m{i}/@v/v1.0.0.zip"))
            .collect()
    }

    #[test]
    fn no_members_no_owner() {
        assert_eq!(owner(&[], "k"), None);
    }

    #[test]
    fn the_owner_does_not_depend_on_the_order_of_members() {
        let m = members(5);
        let mut reversed = m.clone();
        reversed.reverse();
        for k in keys() {
            assert_eq!(owner(&m, &k), owner(&reversed, &k));
        }
    }

    #[test]
    fn artifacts_spread_over_members() {
        let m = members(3);
        let mut counts = [0usize; 3];
        for k in keys() {
            let o = owner(&m, &k).unwrap();
            counts[m.iter().position(|x| x == o).unwrap()] += 1;
        }
        // 1000 expected each; a hash that favoured one member would fail this.
        for c in counts {
            assert!((800..1200).contains(&c), "uneven spread: {counts:?}");
        }
    }

    #[test]
    fn a_member_leaving_moves_only_its_own_artifacts() {
        let before = members(4);
        let after: Vec<String> = before
            .iter()
            .filter(|m| !m.ends_with(".3:7070"))
            .cloned()
            .collect();
        let mut moved = 0;
        for k in keys() {
            let (b, a) = (owner(&before, &k).unwrap(), owner(&after, &k).unwrap());
            if b != a {
                assert_eq!(b, "10.0.0.3:7070", "{k} moved from a member that stayed");
                moved += 1;
            }
        }
        assert!((500..1000).contains(&moved), "moved {moved}");
    }
}
