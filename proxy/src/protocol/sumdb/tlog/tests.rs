//! Ports of golang.org/x/mod/sumdb/tlog's tlog_test.go, tile_test.go and ct_test.go.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use super::tile::{new_tiles, parse_tile_path, read_tile_data, tile_for_index_of_height};
use super::*;

/// Tree sizes at which the quadratic checks run (Go runs them at every size up to 100; in a
/// debug build that takes a minute): the small trees and both sides of the height-2 tile
/// boundaries at 64 and 100.
fn exhaustive(n: u64) -> bool {
    n <= 24 || matches!(n, 63..=65 | 99 | 100)
}

/// Tiles served from memory; counts tiles read and not yet saved (all must be saved).
struct TileStore {
    h: u32,
    tiles: HashMap<Tile, Vec<u8>>,
    unsaved: Cell<i64>,
}

impl TileReader for TileStore {
    fn height(&self) -> u32 {
        self.h
    }
    fn read_tiles(&self, tiles: &[Tile]) -> Result<Vec<Vec<u8>>, TlogError> {
        self.unsaved.set(self.unsaved.get() + tiles.len() as i64);
        Ok(tiles
            .iter()
            .map(|t| self.tiles.get(t).cloned().unwrap_or_default())
            .collect())
    }
    fn save_tiles(&self, tiles: &[Tile], _data: &[Vec<u8>]) {
        self.unsaved.set(self.unsaved.get() - tiles.len() as i64);
    }
}

#[test]
fn tree_hashes_tiles_and_proofs_agree() {
    const H: u32 = 2;
    let mut trees = Vec::new();
    let mut leaf_hashes = Vec::new();
    let mut storage: Vec<Hash> = Vec::new();
    let mut tiles: HashMap<Tile, Vec<u8>> = HashMap::new();
    for i in 0..100u64 {
        let data = format!("leaf {i}");
        let hashes = stored_hashes(i, data.as_bytes(), &storage).unwrap();
        leaf_hashes.push(record_hash(data.as_bytes()));
        let old_storage = storage.len();
        storage.extend(hashes);
        assert_eq!(stored_hash_count(i + 1), storage.len() as u64);
        let th = tree_hash(i + 1, &storage).unwrap();

        for tile in new_tiles(H, i, i + 1) {
            let data = read_tile_data(tile, &storage).unwrap();
            let old = Tile {
                w: tile.w - 1,
                ..tile
            };
            let old_data = tiles.get(&old).cloned().unwrap_or_default();
            assert_eq!(old_data.len(), data.len() - HASH_SIZE, "{}", tile.path());
            assert_eq!(old_data, data[..old_data.len()], "{} extends", tile.path());
            tiles.insert(tile, data);
        }
        for tile in new_tiles(H, 0, i + 1)
            .into_iter()
            .chain(new_tiles(H, i / 2, i + 1))
        {
            assert_eq!(tiles[&tile], read_tile_data(tile, &storage).unwrap());
        }
        // Every new hash is readable from its tile.
        for j in old_storage as u64..storage.len() as u64 {
            let tile = tile_for_index_of_height(H, j);
            let data = &tiles[&tile];
            assert_eq!(
                tile::hash_from_tile(tile, data, j).unwrap(),
                storage[j as usize]
            );
        }
        trees.push(th);
        if !exhaustive(i + 1) {
            continue;
        }

        // Record proofs, for all leaves so far; a flipped bit breaks them.
        for j in 0..=i {
            let mut p = prove_record(i + 1, j, &storage).unwrap();
            check_record(&p, i + 1, th, j, leaf_hashes[j as usize]).unwrap();
            for k in 0..p.len() {
                p[k].0[0] ^= 1;
                assert!(check_record(&p, i + 1, th, j, leaf_hashes[j as usize]).is_err());
                p[k].0[0] ^= 1;
            }
        }

        // The same through tiles: reading the hash proves it.
        let store = TileStore {
            h: H,
            tiles: tiles.clone(),
            unsaved: Cell::new(0),
        };
        let thr = TileHashReader {
            tree: Tree { n: i + 1, hash: th },
            reader: &store,
        };
        for j in 0..=i {
            let h = thr.read_hashes(&[stored_hash_index(0, j)]).unwrap();
            assert_eq!(h[0], leaf_hashes[j as usize]);
            let p = prove_record(i + 1, j, &thr).unwrap();
            check_record(&p, i + 1, th, j, leaf_hashes[j as usize]).unwrap();
        }
        assert_eq!(store.unsaved.get(), 0);
        assert_eq!(
            thr.read_hashes(&[(i + 1) * 2]).unwrap_err(),
            TlogError::IndexNotInTree
        );

        // Tree proofs, for all trees so far, through tiles.
        for j in 0..=i {
            assert_eq!(tree_hash(j + 1, &thr).unwrap(), trees[j as usize]);
            let mut p = prove_tree(i + 1, j + 1, &thr).unwrap();
            check_tree(&p, i + 1, th, j + 1, trees[j as usize]).unwrap();
            for k in 0..p.len() {
                p[k].0[0] ^= 1;
                assert!(check_tree(&p, i + 1, th, j + 1, trees[j as usize]).is_err());
                p[k].0[0] ^= 1;
            }
        }
        assert_eq!(store.unsaved.get(), 0);
    }
}

#[test]
fn split_stored_hash_index_inverts_stored_hash_index() {
    for l in 0..10 {
        for n in 0..100 {
            let x = stored_hash_index(l, n);
            assert_eq!(split_stored_hash_index(x), (l, n), "{x}");
        }
    }
}

#[test]
fn tile_paths() {
    let t = |h, l, n, w| Tile { h, l, n, w };
    for (path, tile) in [
        ("tile/4/0/001", Some(t(4, 0, 1, 16))),
        ("tile/4/0/001.p/5", Some(t(4, 0, 1, 5))),
        ("tile/3/5/x123/x456/078", Some(t(3, 5, 123456078, 8))),
        ("tile/3/5/x123/x456/078.p/2", Some(t(3, 5, 123456078, 2))),
        ("tile/1/0/x003/x057/500", Some(t(1, 0, 3057500, 2))),
        ("tile/3/5/123/456/078", None),
        ("tile/3/-1/123/456/078", None),
        ("tile/1/data/x003/x057/500", Some(t(1, -1, 3057500, 2))),
        ("tile/8/0/x001/234.p/0", None),
        ("tile/8/0/x001/234.p/256", None),
        ("tile/8/0/x1/234", None),
        ("tile/31/0/001", None),
        ("tile/8/64/001", None),
        ("tile/8/0/x999/x999/x999/x999/x999/x999/x999/999", None),
    ] {
        if let Some(tile) = tile {
            assert_eq!(tile.path(), path);
        }
        assert_eq!(parse_tile_path(path).ok(), tile, "{path}");
    }
}

#[test]
fn the_empty_tree_hashes_to_sha256_of_nothing() {
    let none: Vec<Hash> = Vec::new();
    assert_eq!(
        tree_hash(0, &none).unwrap().to_string(),
        "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
    );
}

/// A tree in memory serving its own tiles, optionally with one stored hash zeroed.
struct TestTree {
    h: u32,
    hashes: Vec<Hash>,
    n: u64,
    zero: Option<u64>,
    saved: RefCell<Vec<Tile>>,
}

impl TestTree {
    fn tree(&self) -> Tree {
        Tree {
            n: self.n,
            hash: tree_hash(self.n, &self.hashes).unwrap(),
        }
    }
}

impl TileReader for TestTree {
    fn height(&self) -> u32 {
        self.h
    }
    fn read_tiles(&self, tiles: &[Tile]) -> Result<Vec<Vec<u8>>, TlogError> {
        let mut out = Vec::new();
        for &tile in tiles {
            let mut data = read_tile_data(tile, &self.hashes)?;
            if let Some(index) = self.zero {
                // The hash at `index`, or the bottom-row hashes it is computed from.
                let (t, start, end) = tile::tile_for_index(self.h, index);
                if (t.h, t.l, t.n) == (tile.h, tile.l, tile.n) && end <= data.len() {
                    data[start..end].fill(0);
                }
            }
            out.push(data);
        }
        Ok(out)
    }
    fn save_tiles(&self, tiles: &[Tile], data: &[Vec<u8>]) {
        for (tile, d) in tiles.iter().zip(data) {
            assert_eq!(*d, read_tile_data(*tile, &self.hashes).unwrap());
        }
        self.saved.borrow_mut().extend_from_slice(tiles);
    }
}

#[test]
fn tile_hash_reader_authenticates_every_tile() {
    let mut tt = TestTree {
        h: 2,
        hashes: Vec::new(),
        n: 0,
        zero: None,
        saved: RefCell::new(Vec::new()),
    };
    for _ in 0..100 {
        let hashes = stored_hashes(tt.n, format!("leaf {}", tt.n).as_bytes(), &tt.hashes).unwrap();
        tt.hashes.extend(hashes);
        tt.n += 1;
        if !exhaustive(tt.n) {
            continue;
        }
        let tree = tt.tree();
        let all: Vec<u64> = (0..stored_hash_index(0, tt.n)).collect();
        {
            let thr = TileHashReader { tree, reader: &tt };
            for &i in &all {
                assert_eq!(thr.read_hashes(&[i]).unwrap(), [tt.hashes[i as usize]]);
            }
            assert_eq!(thr.read_hashes(&all).unwrap(), tt.hashes[..all.len()]);
        }
        for &i in &all {
            let tampered = TestTree {
                zero: Some(i),
                hashes: tt.hashes.clone(),
                saved: RefCell::new(Vec::new()),
                ..tt
            };
            let thz = TileHashReader {
                tree,
                reader: &tampered,
            };
            assert!(thz.read_hashes(&[i]).is_err(), "N={} tampered={i}", tt.n);
            assert!(thz.read_hashes(&all).is_err(), "N={} tampered={i}", tt.n);
            assert!(
                tampered.saved.borrow().is_empty(),
                "tampered tiles were saved"
            );
        }
    }
}

#[test]
fn new_tiles_for_size() {
    for (old, new, want) in [
        (1, 1, 0),
        (100, 101, 1),
        (1023, 1025, 3),
        (1024, 1030, 1),
        (1030, 2000, 1),
        (1030, 10000, 10),
        (49516517, 49516586, 3),
    ] {
        assert_eq!(new_tiles(10, old, new).len(), want, "{old}-{new}");
    }
}

#[test]
fn certificate_transparency_proofs_verify() {
    // Answers of a real RFC 6962 log (testdata/README.md): our proofs are RFC 6962's.
    let json = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
    let hashes = |v: &serde_json::Value| -> Vec<Hash> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|h| Hash::parse(h.as_str().unwrap()).unwrap())
            .collect()
    };
    let sth = json(include_str!("testdata/argon2020/sth.json"));
    let size = sth["tree_size"].as_u64().unwrap();
    let root = Hash::parse(sth["sha256_root_hash"].as_str().unwrap()).unwrap();
    let entries = json(include_str!("testdata/argon2020/entries.json"));
    let leaf = STD_BASE64
        .decode(entries["entries"][0]["leaf_input"].as_str().unwrap())
        .unwrap();
    let proof = json(include_str!("testdata/argon2020/proof.json"));
    let mut p = hashes(&proof["audit_path"]);
    check_record(&p, size, root, 10000, record_hash(&leaf)).unwrap();
    p[3].0[7] ^= 4;
    assert_eq!(
        check_record(&p, size, root, 10000, record_hash(&leaf)),
        Err(TlogError::ProofFailed)
    );

    let consistency = json(include_str!("testdata/argon2020/consistency.json"));
    let p = hashes(&consistency["consistency"]);
    let old = Hash::parse("AuIZ5V6sDUj1vn3Y1K85oOaQ7y+FJJKtyRTl1edIKBQ=").unwrap();
    check_tree(&p, size, root, 3654490, old).unwrap();
    assert_eq!(
        check_tree(&p, size, root, 3654491, old),
        Err(TlogError::ProofFailed)
    );
}
