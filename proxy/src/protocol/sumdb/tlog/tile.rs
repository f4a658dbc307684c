//! Tiles of the log (golang.org/x/mod/sumdb/tlog's tile.go): how a client reads the stored
//! hashes it needs from a database that serves them in blocks, and authenticates every block
//! against a signed tree hash before trusting a single hash in it.
//!
//! A tile of height H at level L, number N, lists W consecutive hashes at tree level H*L,
//! starting at N*2^H; W = 2^H is a full tile, fewer a partial one. Its path is
//! `tile/H/L/NNN[.p/W]`, N written as 3-digit elements all but the last prefixed with `x`;
//! level -1 (`data`) holds record text instead of hashes.

use std::collections::HashMap;

use super::{
    HASH_SIZE, Hash, HashReader, TlogError, Tree, node_hash, split_stored_hash_index,
    stored_hash_index, sub_tree_index,
};

/// A tile's coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tile {
    /// Height, 1..=30.
    pub h: u32,
    /// Level in the tiling, -1 (record data) ..= 63.
    pub l: i32,
    /// Number within the level.
    pub n: u64,
    /// Width, 1..=2^h; 2^h is a full tile.
    pub w: u32,
}

const PATH_BASE: u64 = 1000;

impl Tile {
    /// The tile path, e.g. `tile/8/0/x001/234.p/5`.
    pub fn path(&self) -> String {
        let mut n = self.n;
        let mut s = format!("{:03}", n % PATH_BASE);
        while n >= PATH_BASE {
            n /= PATH_BASE;
            s = format!("x{:03}/{s}", n % PATH_BASE);
        }
        let level = if self.l == -1 {
            "data".to_string()
        } else {
            self.l.to_string()
        };
        let partial = if !self.is_full() {
            format!(".p/{}", self.w)
        } else {
            String::new()
        };
        format!("tile/{}/{level}/{s}{partial}", self.h)
    }

    pub fn is_full(&self) -> bool {
        u64::from(self.w) == 1u64 << self.h
    }

    /// The full tile this one is a prefix of.
    pub fn full(&self) -> Tile {
        Tile {
            w: 1 << self.h,
            ..*self
        }
    }

    /// The size of the tile's data: `w` hashes.
    pub fn data_len(&self) -> usize {
        self.w as usize * HASH_SIZE
    }
}

/// Parses a tile path (Go's `tlog.ParseTilePath`); only the canonical form is accepted.
pub fn parse_tile_path(path: &str) -> Result<Tile, TlogError> {
    let bad = || TlogError::BadTile(format!("malformed tile path {path:?}"));
    let mut f: Vec<&str> = path.split('/').collect();
    if f.len() < 4 || f[0] != "tile" {
        return Err(bad());
    }
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let h: u32 = f[1].parse().ok().filter(|_| digits(f[1])).ok_or_else(bad)?;
    let is_data = f[2] == "data";
    let l: i32 = if is_data {
        -1
    } else {
        f[2].parse().ok().filter(|_| digits(f[2])).ok_or_else(bad)?
    };
    if !(1..=30).contains(&h) || l > 63 {
        return Err(bad());
    }
    let mut w = 1u32 << h;
    let last = f.len() - 1;
    if let Some(stem) = f[last - 1].strip_suffix(".p") {
        let ww: u32 = f[last]
            .parse()
            .ok()
            .filter(|_| digits(f[last]))
            .ok_or_else(bad)?;
        if ww == 0 || ww >= w {
            return Err(bad());
        }
        w = ww;
        f[last - 1] = stem;
        f.truncate(last);
    }
    let mut n: u64 = 0;
    for s in &f[3..] {
        let s = s.strip_prefix('x').unwrap_or(s);
        let nn: u64 = s.parse().ok().filter(|_| digits(s)).ok_or_else(bad)?;
        if nn >= PATH_BASE {
            return Err(bad());
        }
        n = n
            .checked_mul(PATH_BASE)
            .and_then(|n| n.checked_add(nn))
            .ok_or_else(bad)?;
    }
    let t = Tile { h, l, n, w };
    if t.path() != path {
        return Err(bad());
    }
    Ok(t)
}

/// The tile of height h and least width that stores hash `index`, and the byte range of the
/// tile data from which that hash is computed.
pub(crate) fn tile_for_index(h: u32, index: u64) -> (Tile, usize, usize) {
    let (level, n) = split_stored_hash_index(index);
    let l = level / h;
    let level = level - l * h; // level within the tile
    let tn = (n << level) >> h;
    let n = n - ((tn << h) >> level); // n within the tile, at that level
    let w = ((n + 1) << level) as u32;
    let t = Tile {
        h,
        l: l as i32,
        n: tn,
        w,
    };
    let start = ((n << level) as usize) * HASH_SIZE;
    let end = (((n + 1) << level) as usize) * HASH_SIZE;
    (t, start, end)
}

/// Go's `TileForIndex`.
pub fn tile_for_index_of_height(h: u32, index: u64) -> Tile {
    assert!(h > 0, "tile height must be positive");
    tile_for_index(h, index).0
}

/// The hash at stored index `index`, from the data of tile `t` (the tile of that index, or a
/// wider version of it).
pub fn hash_from_tile(t: Tile, data: &[u8], index: u64) -> Result<Hash, TlogError> {
    if t.h < 1 || t.h > 30 || t.l < 0 || t.l >= 64 || t.w < 1 || u64::from(t.w) > 1 << t.h {
        return Err(TlogError::BadTile(format!("invalid tile {}", t.path())));
    }
    if data.len() < t.data_len() {
        return Err(TlogError::BadTile(format!(
            "data len {} too short for tile {}",
            data.len(),
            t.path()
        )));
    }
    let (t1, start, end) = tile_for_index(t.h, index);
    if t.l != t1.l || t.n != t1.n || t.w < t1.w {
        return Err(TlogError::BadTile(format!(
            "index {index} is in {} not {}",
            t1.path(),
            t.path()
        )));
    }
    Ok(tile_hash(&data[start..end]))
}

/// The hash of the subtree whose 2^k leaves are the hashes in `data`.
fn tile_hash(data: &[u8]) -> Hash {
    if data.len() == HASH_SIZE {
        return Hash::from_slice(data).expect("one hash");
    }
    let half = data.len() / 2;
    node_hash(tile_hash(&data[..half]), tile_hash(&data[half..]))
}

/// The tiles of height h a server publishes when its tree grows from `old` to `new` records.
pub fn new_tiles(h: u32, old: u64, new: u64) -> Vec<Tile> {
    assert!(h > 0, "tile height must be positive");
    let mut tiles = Vec::new();
    let mut level = 0u32;
    while u64::from(h * level) < 64 && new >> (h * level) > 0 {
        let old_n = old >> (h * level);
        let new_n = new >> (h * level);
        if old_n != new_n {
            for n in (old_n >> h)..(new_n >> h) {
                tiles.push(Tile {
                    h,
                    l: level as i32,
                    n,
                    w: 1 << h,
                });
            }
            let n = new_n >> h;
            let w = new_n - (n << h);
            if w > 0 {
                tiles.push(Tile {
                    h,
                    l: level as i32,
                    n,
                    w: w as u32,
                });
            }
        }
        level += 1;
    }
    tiles
}

/// The data of tile `t`, read from stored hashes (what a server serves).
pub fn read_tile_data(t: Tile, r: &(impl HashReader + ?Sized)) -> Result<Vec<u8>, TlogError> {
    if t.l < 0 {
        return Err(TlogError::BadTile(format!(
            "{} is not a hash tile",
            t.path()
        )));
    }
    let start = t.n << t.h;
    let indexes: Vec<u64> = (0..u64::from(t.w))
        .map(|i| stored_hash_index(t.h * t.l as u32, start + i))
        .collect();
    let hashes = r.read_hashes(&indexes)?;
    if hashes.len() != indexes.len() {
        return Err(TlogError::Read("short read of tile hashes".into()));
    }
    Ok(hashes.iter().flat_map(|h| h.0).collect())
}

/// t's k'th parent among the tiles of a tree of n records; None when there is none.
fn tile_parent(t: Tile, k: u32, n: u64) -> Option<Tile> {
    let mut t = t;
    t.l += k as i32;
    t.n = t.n.checked_shr(k * t.h).unwrap_or(0);
    t.w = 1 << t.h;
    let shift = t.l as u32 * t.h;
    let max = if shift >= 64 { 0 } else { n >> shift };
    if (t.n << t.h) + u64::from(t.w) >= max {
        if t.n << t.h >= max {
            return None;
        }
        t.w = (max - (t.n << t.h)) as u32;
    }
    Some(t)
}

/// Reads tiles, e.g. from a database (Go's `TileReader`).
pub trait TileReader {
    fn height(&self) -> u32;
    /// The data of each tile, each exactly `tile.data_len()` bytes.
    fn read_tiles(&self, tiles: &[Tile]) -> Result<Vec<Vec<u8>>, TlogError>;
    /// Called with tiles once they are authenticated, so they may be kept.
    fn save_tiles(&self, _tiles: &[Tile], _data: &[Vec<u8>]) {}
}

/// Which tiles to read to return the hashes at `indexes` of a tree, and how to authenticate
/// them: the tiles that compute the tree hash, then for each index its tile and the chain of
/// parents up to an authenticated one. The I/O (reading the tiles) is the caller's, between
/// [`TilePlan::new`] and [`TilePlan::hashes`].
#[derive(Debug, Clone)]
pub struct TilePlan {
    tree: Tree,
    tiles: Vec<Tile>,
    order: HashMap<Tile, usize>,
    stx: Vec<u64>,
    stx_tile: Vec<usize>,
    indexes: Vec<u64>,
    index_tile: Vec<usize>,
}

impl TilePlan {
    /// Plans the reading of `indexes` from `tree` in tiles of height `h`.
    pub fn new(tree: Tree, h: u32, indexes: &[u64]) -> Result<TilePlan, TlogError> {
        if !(1..=30).contains(&h) {
            return Err(TlogError::InvalidInput("TileHashReader (tile height)"));
        }
        let mut plan = TilePlan {
            tree,
            tiles: Vec::new(),
            order: HashMap::new(),
            stx: sub_tree_index(0, tree.n, Vec::new()),
            stx_tile: Vec::new(),
            indexes: indexes.to_vec(),
            index_tile: Vec::new(),
        };
        if tree.n == 0 && !indexes.is_empty() {
            return Err(TlogError::IndexNotInTree);
        }
        // The tiles needed to recompute the tree hash: if it matches, they are authentic.
        for &x in &plan.stx.clone() {
            let tile = tile_parent(tile_for_index(h, x).0, 0, tree.n)
                .ok_or_else(|| TlogError::Read(format!("bad math: no tile for {x}")))?;
            let j = plan.add(tile);
            plan.stx_tile.push(j);
        }
        // The tiles holding the indexes, each after its parents up to an authenticated one.
        let limit = stored_hash_index(0, tree.n);
        for &x in indexes {
            if x >= limit {
                return Err(TlogError::IndexNotInTree);
            }
            let tile = tile_for_index(h, x).0;
            let mut k = 0;
            let found = loop {
                let Some(p) = tile_parent(tile, k, tree.n) else {
                    return Err(TlogError::Read(format!("bad math: lost parent of {x}")));
                };
                if let Some(&j) = plan.order.get(&p) {
                    break j;
                }
                k += 1;
            };
            if k == 0 {
                plan.index_tile.push(found);
                continue;
            }
            for kk in (0..k).rev() {
                let p = tile_parent(tile, kk, tree.n)
                    .ok_or_else(|| TlogError::Read(format!("bad math: lost tile of {x}")))?;
                if !p.is_full() {
                    // Only full tiles have parents.
                    return Err(TlogError::Read(format!(
                        "bad math in tile reading: {} {x} {}",
                        tree.n,
                        p.path()
                    )));
                }
                let j = plan.add(p);
                if kk == 0 {
                    plan.index_tile.push(j);
                }
            }
        }
        Ok(plan)
    }

    fn add(&mut self, tile: Tile) -> usize {
        if let Some(&j) = self.order.get(&tile) {
            return j;
        }
        self.order.insert(tile, self.tiles.len());
        self.tiles.push(tile);
        self.tiles.len() - 1
    }

    /// The tiles to read, in order.
    pub fn tiles(&self) -> &[Tile] {
        &self.tiles
    }

    /// Authenticates the tiles' data (one per [`TilePlan::tiles`], same order) against the
    /// tree hash, then returns the hashes at the planned indexes.
    pub fn hashes(&self, data: &[impl AsRef<[u8]>]) -> Result<Vec<Hash>, TlogError> {
        if self.indexes.is_empty() {
            return Ok(Vec::new());
        }
        if data.len() != self.tiles.len() {
            return Err(TlogError::BadTile(format!(
                "tile reader returned {} tiles, want {}",
                data.len(),
                self.tiles.len()
            )));
        }
        for (tile, d) in self.tiles.iter().zip(data) {
            if d.as_ref().len() != tile.data_len() {
                return Err(TlogError::BadTile(format!(
                    "tile {} has {} bytes, want {}",
                    tile.path(),
                    d.as_ref().len(),
                    tile.data_len()
                )));
            }
        }
        // Parents come before children: first the tiles of the tree hash.
        let mut th = Hash::default();
        for i in (0..self.stx.len()).rev() {
            let j = self.stx_tile[i];
            let h = hash_from_tile(self.tiles[j], data[j].as_ref(), self.stx[i])?;
            th = if i == self.stx.len() - 1 {
                h
            } else {
                node_hash(h, th)
            };
        }
        if th != self.tree.hash {
            // At least one tile is wrong; we cannot tell which.
            return Err(TlogError::InconsistentTile);
        }
        // Then every other tile against its (already authenticated) parent.
        let first = self.stx_tile.last().map_or(0, |&j| j + 1);
        for i in first..self.tiles.len() {
            let tile = self.tiles[i];
            let p = tile_parent(tile, 1, self.tree.n).ok_or_else(|| {
                TlogError::Read(format!("bad math: lost parent of {}", tile.path()))
            })?;
            let j = *self.order.get(&p).ok_or_else(|| {
                TlogError::Read(format!("bad math: lost parent of {}", tile.path()))
            })?;
            let h = hash_from_tile(
                p,
                data[j].as_ref(),
                stored_hash_index(p.l as u32 * p.h, tile.n),
            )?;
            if h != tile_hash(data[i].as_ref()) {
                return Err(TlogError::InconsistentTile);
            }
        }
        self.indexes
            .iter()
            .zip(&self.index_tile)
            .map(|(&x, &j)| hash_from_tile(self.tiles[j], data[j].as_ref(), x))
            .collect()
    }
}

/// A [`HashReader`] over the tiles of a tree: every hash it returns is proven to be in the tree
/// (Go's `TileHashReader`).
pub struct TileHashReader<'a, R: TileReader + ?Sized> {
    pub tree: Tree,
    pub reader: &'a R,
}

impl<R: TileReader + ?Sized> HashReader for TileHashReader<'_, R> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
        let plan = TilePlan::new(self.tree, self.reader.height(), indexes)?;
        if indexes.is_empty() {
            return Ok(Vec::new());
        }
        let data = self.reader.read_tiles(plan.tiles())?;
        let hashes = plan.hashes(&data)?;
        self.reader.save_tiles(plan.tiles(), &data);
        Ok(hashes)
    }
}
