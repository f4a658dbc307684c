//! The checksum database's tamper-evident log, as golang.org/x/mod/sumdb/tlog implements it
//! (RFC 6962 hashing): record and node hashes, the dense "stored hash index" order, tree hashes,
//! record inclusion proofs and tree consistency proofs. Tiles are in [`tile`], the tree-head and
//! record text formats in [`format`].
//!
//! Sizes and indexes are `u64` (Go uses non-negative `int64`); callers bound hostile sizes with
//! [`MAX_TREE_SIZE`] before doing arithmetic on them.

pub mod format;
pub mod tile;

use sha2::{Digest, Sha256};

pub use format::{Tree, format_record, format_tree, parse_record, parse_tree};
pub use tile::{Tile, TileHashReader, TilePlan, TileReader};

use super::note::STD_BASE64;
use base64::Engine as _;

pub const HASH_SIZE: usize = 32;

/// Largest tree accepted from a server (2^48 records): keeps every index computation far from
/// overflow while being millions of times the size of any real database.
pub const MAX_TREE_SIZE: u64 = 1 << 48;

/// A record or tree hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Hash(pub [u8; HASH_SIZE]);

impl std::fmt::Display for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&STD_BASE64.encode(self.0))
    }
}

impl std::fmt::Debug for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hash({self})")
    }
}

impl Hash {
    /// Parses the base64 form (Go's `tlog.ParseHash`).
    pub fn parse(s: &str) -> Result<Hash, TlogError> {
        let data = STD_BASE64
            .decode(s)
            .map_err(|_| TlogError::Malformed("malformed hash"))?;
        Hash::from_slice(&data).ok_or(TlogError::Malformed("malformed hash"))
    }

    pub fn from_slice(data: &[u8]) -> Option<Hash> {
        Some(Hash(data.try_into().ok()?))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlogError {
    #[error("tlog: invalid inputs in {0}")]
    InvalidInput(&'static str),
    #[error("invalid transparency proof")]
    ProofFailed,
    #[error("downloaded inconsistent tile")]
    InconsistentTile,
    #[error("indexes not in tree")]
    IndexNotInTree,
    #[error("{0}")]
    BadTile(String),
    #[error("{0}")]
    Malformed(&'static str),
    #[error("tlog: reading hashes: {0}")]
    Read(String),
}

/// SHA-256(0x00 || data): the hash of a log record.
pub fn record_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    Hash(h.finalize().into())
}

/// SHA-256(0x01 || left || right): the hash of an interior node.
pub fn node_hash(left: Hash, right: Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left.0);
    h.update(right.0);
    Hash(h.finalize().into())
}

/// The hash of the empty tree: SHA-256("").
pub fn empty_hash() -> Hash {
    Hash(Sha256::digest([]).into())
}

/// k, the largest power of 2 smaller than n (1 for n <= 1), and l = log2 k.
fn maxpow2(n: u64) -> (u64, u32) {
    if n <= 2 {
        return (1, 0);
    }
    let l = 63 - (n - 1).leading_zeros();
    (1 << l, l)
}

/// Maps tree coordinates (level, n) to the dense order in which a log stores its hashes
/// (Crosby and Wallach, section 3.3).
pub fn stored_hash_index(level: u32, n: u64) -> u64 {
    // Level L's n'th hash is written right after level L+1's 2n+1'th hash.
    let mut n = n;
    for _ in 0..level {
        n = 2 * n + 1;
    }
    // Level 0's n'th hash is written at n+n/2+n/4+...
    let mut i = 0;
    while n > 0 {
        i += n;
        n >>= 1;
    }
    i + u64::from(level)
}

/// The inverse of [`stored_hash_index`].
pub fn split_stored_hash_index(index: u64) -> (u32, u64) {
    // stored_hash_index(0, n) < 2n, so the n we want is in [index/2, index/2 + log2(index)].
    let mut n = index / 2;
    let mut index_n = stored_hash_index(0, n);
    debug_assert!(index_n <= index, "bad math");
    loop {
        // Each new record n adds 1 + trailing_zeros(n+1) hashes.
        let x = index_n + 1 + u64::from((n + 1).trailing_zeros());
        if x > index {
            break;
        }
        n += 1;
        index_n = x;
    }
    // The hash was committed with record n: it is one of (0, n), (1, n/2), (2, n/4), ...
    let level = (index - index_n) as u32;
    (level, n >> level)
}

/// The number of stored hashes of a tree with n records.
pub fn stored_hash_count(n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    let mut count = stored_hash_index(0, n - 1) + 1;
    let mut i = n - 1;
    while i & 1 != 0 {
        count += 1;
        i >>= 1;
    }
    count
}

/// Reads stored hashes by index.
pub trait HashReader {
    /// The hashes at `indexes`, one per index, or an error.
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError>;
}

impl HashReader for [Hash] {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
        indexes
            .iter()
            .map(|&i| {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| self.get(i).copied())
                    .ok_or(TlogError::IndexNotInTree)
            })
            .collect()
    }
}

impl HashReader for Vec<Hash> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
        self.as_slice().read_hashes(indexes)
    }
}

fn read_exact(r: &(impl HashReader + ?Sized), indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
    let hashes = r.read_hashes(indexes)?;
    if hashes.len() != indexes.len() {
        return Err(TlogError::Read(format!(
            "ReadHashes({} indexes) = {} hashes",
            indexes.len(),
            hashes.len()
        )));
    }
    Ok(hashes)
}

/// The hashes to store when appending record n with hash `h` (Go's `StoredHashesForRecordHash`);
/// reads up to log2 n earlier hashes from `r`.
pub fn stored_hashes_for_record_hash(
    n: u64,
    h: Hash,
    r: &(impl HashReader + ?Sized),
) -> Result<Vec<Hash>, TlogError> {
    let mut hashes = vec![h];
    // Each trailing 1 bit of n completes a subtree and consumes a hash from its left neighbour.
    let m = (n + 1).trailing_zeros();
    let indexes: Vec<u64> = (0..m)
        .rev()
        .map(|i| stored_hash_index(i, (n >> i) - 1))
        .collect();
    let old = read_exact(r, &indexes)?;
    let mut h = h;
    for i in 0..m as usize {
        h = node_hash(old[m as usize - 1 - i], h);
        hashes.push(h);
    }
    Ok(hashes)
}

/// [`stored_hashes_for_record_hash`] of `record_hash(data)`.
pub fn stored_hashes(
    n: u64,
    data: &[u8],
    r: &(impl HashReader + ?Sized),
) -> Result<Vec<Hash>, TlogError> {
    stored_hashes_for_record_hash(n, record_hash(data), r)
}

/// The stored indexes [`tree_hash_from`] needs for a tree of n records (at most 1 + log2 n).
pub fn tree_hash_indexes(n: u64) -> Vec<u64> {
    sub_tree_index(0, n, Vec::new())
}

/// The tree hash of n records from the hashes at [`tree_hash_indexes`]`(n)`.
pub fn tree_hash_from(n: u64, hashes: &[Hash]) -> Result<Hash, TlogError> {
    if n == 0 {
        return Ok(empty_hash());
    }
    let (h, rest) = sub_tree_hash(0, n, hashes)?;
    if !rest.is_empty() {
        return Err(TlogError::Read("too many hashes for the tree hash".into()));
    }
    Ok(h)
}

/// The hash of the tree of n records (Go's `TreeHash`).
pub fn tree_hash(n: u64, r: &(impl HashReader + ?Sized)) -> Result<Hash, TlogError> {
    if n == 0 {
        return Ok(empty_hash());
    }
    let hashes = read_exact(r, &tree_hash_indexes(n))?;
    tree_hash_from(n, &hashes)
}

/// The storage indexes of the complete subtrees covering records [lo, hi), appended to `need`.
fn sub_tree_index(mut lo: u64, hi: u64, mut need: Vec<u64>) -> Vec<u64> {
    while lo < hi {
        let (k, level) = maxpow2(hi - lo + 1);
        debug_assert!(lo & (k - 1) == 0, "bad math in sub_tree_index");
        need.push(stored_hash_index(level, lo >> level));
        lo += k;
    }
    need
}

/// The hash of records [lo, hi) from the hashes [`sub_tree_index`] named; returns the rest.
fn sub_tree_hash(mut lo: u64, hi: u64, hashes: &[Hash]) -> Result<(Hash, &[Hash]), TlogError> {
    let mut num_tree = 0;
    while lo < hi {
        let (k, _) = maxpow2(hi - lo + 1);
        num_tree += 1;
        lo += k;
    }
    if num_tree == 0 || hashes.len() < num_tree {
        return Err(TlogError::Read("too few hashes for the subtree".into()));
    }
    let mut h = hashes[num_tree - 1];
    for i in (0..num_tree - 1).rev() {
        h = node_hash(hashes[i], h);
    }
    Ok((h, &hashes[num_tree..]))
}

/// A proof that a tree contains a record ("Merkle audit path").
pub type RecordProof = Vec<Hash>;

/// A proof that a tree contains an earlier tree as a prefix ("Merkle consistency proof").
pub type TreeProof = Vec<Hash>;

/// The proof that the tree of size t contains record n (Go's `ProveRecord`).
pub fn prove_record(
    t: u64,
    n: u64,
    r: &(impl HashReader + ?Sized),
) -> Result<RecordProof, TlogError> {
    if n >= t {
        return Err(TlogError::InvalidInput("ProveRecord"));
    }
    let indexes = leaf_proof_index(0, t, n, Vec::new());
    if indexes.is_empty() {
        return Ok(Vec::new());
    }
    let hashes = read_exact(r, &indexes)?;
    let (p, rest) = leaf_proof(0, t, n, &hashes)?;
    debug_assert!(rest.is_empty(), "bad index math in prove_record");
    Ok(p)
}

fn leaf_proof_index(lo: u64, hi: u64, n: u64, mut need: Vec<u64>) -> Vec<u64> {
    if lo + 1 == hi {
        return need;
    }
    let (k, _) = maxpow2(hi - lo);
    if n < lo + k {
        need = leaf_proof_index(lo, lo + k, n, need);
        sub_tree_index(lo + k, hi, need)
    } else {
        need = sub_tree_index(lo, lo + k, need);
        leaf_proof_index(lo + k, hi, n, need)
    }
}

fn leaf_proof(
    lo: u64,
    hi: u64,
    n: u64,
    hashes: &[Hash],
) -> Result<(RecordProof, &[Hash]), TlogError> {
    if lo + 1 == hi {
        return Ok((Vec::new(), hashes));
    }
    let (k, _) = maxpow2(hi - lo);
    let (mut p, th, rest) = if n < lo + k {
        let (p, rest) = leaf_proof(lo, lo + k, n, hashes)?;
        let (th, rest) = sub_tree_hash(lo + k, hi, rest)?;
        (p, th, rest)
    } else {
        let (th, rest) = sub_tree_hash(lo, lo + k, hashes)?;
        let (p, rest) = leaf_proof(lo + k, hi, n, rest)?;
        (p, th, rest)
    };
    p.push(th);
    Ok((p, rest))
}

/// Checks that `p` proves the tree of size t with hash `th` has record n with hash `h`.
pub fn check_record(p: &[Hash], t: u64, th: Hash, n: u64, h: Hash) -> Result<(), TlogError> {
    if n >= t {
        return Err(TlogError::InvalidInput("CheckRecord"));
    }
    if run_record_proof(p, 0, t, n, h)? == th {
        Ok(())
    } else {
        Err(TlogError::ProofFailed)
    }
}

fn run_record_proof(p: &[Hash], lo: u64, hi: u64, n: u64, leaf: Hash) -> Result<Hash, TlogError> {
    if lo + 1 == hi {
        // The proof must not have unnecessary hashes.
        return if p.is_empty() {
            Ok(leaf)
        } else {
            Err(TlogError::ProofFailed)
        };
    }
    let Some((&last, p)) = p.split_last() else {
        return Err(TlogError::ProofFailed);
    };
    let (k, _) = maxpow2(hi - lo);
    if n < lo + k {
        Ok(node_hash(run_record_proof(p, lo, lo + k, n, leaf)?, last))
    } else {
        Ok(node_hash(last, run_record_proof(p, lo + k, hi, n, leaf)?))
    }
}

/// The proof that the tree of size t contains the tree of size n as a prefix (Go's `ProveTree`).
pub fn prove_tree(t: u64, n: u64, r: &(impl HashReader + ?Sized)) -> Result<TreeProof, TlogError> {
    if t < 1 || n < 1 || n > t {
        return Err(TlogError::InvalidInput("ProveTree"));
    }
    let indexes = tree_proof_index(0, t, n, Vec::new());
    if indexes.is_empty() {
        return Ok(Vec::new());
    }
    let hashes = read_exact(r, &indexes)?;
    let (p, rest) = tree_proof(0, t, n, &hashes)?;
    debug_assert!(rest.is_empty(), "bad index math in prove_tree");
    Ok(p)
}

fn tree_proof_index(lo: u64, hi: u64, n: u64, mut need: Vec<u64>) -> Vec<u64> {
    if n == hi {
        return if lo == 0 {
            need
        } else {
            sub_tree_index(lo, hi, need)
        };
    }
    let (k, _) = maxpow2(hi - lo);
    if n <= lo + k {
        need = tree_proof_index(lo, lo + k, n, need);
        sub_tree_index(lo + k, hi, need)
    } else {
        need = sub_tree_index(lo, lo + k, need);
        tree_proof_index(lo + k, hi, n, need)
    }
}

fn tree_proof(
    lo: u64,
    hi: u64,
    n: u64,
    hashes: &[Hash],
) -> Result<(TreeProof, &[Hash]), TlogError> {
    if n == hi {
        if lo == 0 {
            return Ok((Vec::new(), hashes));
        }
        let (th, rest) = sub_tree_hash(lo, hi, hashes)?;
        return Ok((vec![th], rest));
    }
    let (k, _) = maxpow2(hi - lo);
    let (mut p, th, rest) = if n <= lo + k {
        let (p, rest) = tree_proof(lo, lo + k, n, hashes)?;
        let (th, rest) = sub_tree_hash(lo + k, hi, rest)?;
        (p, th, rest)
    } else {
        let (th, rest) = sub_tree_hash(lo, lo + k, hashes)?;
        let (p, rest) = tree_proof(lo + k, hi, n, rest)?;
        (p, th, rest)
    };
    p.push(th);
    Ok((p, rest))
}

/// Checks that `p` proves the tree of size t with hash `th` contains the tree of size n with
/// hash `h` as a prefix.
pub fn check_tree(p: &[Hash], t: u64, th: Hash, n: u64, h: Hash) -> Result<(), TlogError> {
    if t < 1 || n < 1 || n > t {
        return Err(TlogError::InvalidInput("CheckTree"));
    }
    let (h2, th2) = run_tree_proof(p, 0, t, n, h)?;
    if th2 == th && h2 == h {
        Ok(())
    } else {
        Err(TlogError::ProofFailed)
    }
}

/// The implied hashes of [lo, hi) in the old tree (of n records, hash `old`) and the new tree.
fn run_tree_proof(
    p: &[Hash],
    lo: u64,
    hi: u64,
    n: u64,
    old: Hash,
) -> Result<(Hash, Hash), TlogError> {
    if n == hi {
        if lo == 0 {
            return if p.is_empty() {
                Ok((old, old))
            } else {
                Err(TlogError::ProofFailed)
            };
        }
        return match p {
            [h] => Ok((*h, *h)),
            _ => Err(TlogError::ProofFailed),
        };
    }
    let Some((&last, p)) = p.split_last() else {
        return Err(TlogError::ProofFailed);
    };
    let (k, _) = maxpow2(hi - lo);
    if n <= lo + k {
        let (oh, th) = run_tree_proof(p, lo, lo + k, n, old)?;
        Ok((oh, node_hash(th, last)))
    } else {
        let (oh, th) = run_tree_proof(p, lo + k, hi, n, old)?;
        Ok((node_hash(last, oh), node_hash(last, th)))
    }
}

#[cfg(test)]
mod tests;
