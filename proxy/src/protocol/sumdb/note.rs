//! Signed notes, as golang.org/x/mod/sumdb/note defines them: the checksum database signs each
//! tree head it publishes, and a client trusts only text signed by a key it was configured with.
//!
//! A verifier key is `<name>+<hash>+<base64 key>`: the key is an algorithm byte (1 = Ed25519)
//! and a 32-byte public key, and the hash is the first 4 bytes (big-endian) of
//! SHA-256(`name` "\n" `key`). A signed note is UTF-8 text without control characters other than
//! newline: the text (ending in a newline), a blank line, then one or more lines
//! `— <name> <base64(4-byte key hash || signature)>`.

use std::collections::HashSet;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use sha2::{Digest, Sha256};

/// Go's `base64.StdEncoding`: padding required, trailing bits not checked.
pub(crate) const STD_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical)
        .with_decode_allow_trailing_bits(true),
);

/// More signature lines than this make a note malformed (as in Go: parsing must stay cheap).
pub const MAX_SIGNATURES: usize = 100;

const ALG_ED25519: u8 = 1;
const SIG_PREFIX: &str = "— ";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("malformed verifier key {0:?}: want NAME+HASH+BASE64KEY (as in GOSUMDB)")]
    MalformedKey(String),
    #[error("unknown verifier algorithm in key {0:?}: only Ed25519 (1) is supported")]
    UnknownAlgorithm(String),
    #[error("verifier key {0:?} does not match its hash: the key was copied wrongly")]
    KeyHash(String),
    #[error("malformed note")]
    Malformed,
    #[error(
        "ambiguous key {name}+{hash:08x}: two configured verifiers have the same name and hash"
    )]
    Ambiguous { name: String, hash: u32 },
    #[error("invalid signature for key {name}+{hash:08x}")]
    InvalidSignature { name: String, hash: u32 },
    #[error("note has no verifiable signatures")]
    Unverified {
        /// The signers found in the note (none of them known).
        signers: Vec<String>,
    },
}

/// A verifier key: checks signatures made by one server key.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    hash: u32,
    key: [u8; 32],
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Verifier({}+{:08x})", self.name, self.hash)
    }
}

/// Go's `isValidName`: non-empty, no Unicode space, no `+`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(char::is_whitespace) && !name.contains('+')
}

/// SHA-256(name "\n" key)[:4], big-endian.
pub(crate) fn key_hash(name: &str, key: &[u8]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update(key);
    let sum = h.finalize();
    u32::from_be_bytes([sum[0], sum[1], sum[2], sum[3]])
}

impl Verifier {
    /// Parses `name+hash+base64key` (Go's `note.NewVerifier`).
    pub fn parse(vkey: &str) -> Result<Self, NoteError> {
        let malformed = || NoteError::MalformedKey(vkey.to_string());
        let (name, rest) = vkey.split_once('+').unwrap_or((vkey, ""));
        let (hash16, key64) = rest.split_once('+').unwrap_or((rest, ""));
        if hash16.len() != 8 || !hash16.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(malformed());
        }
        let hash = u32::from_str_radix(hash16, 16).map_err(|_| malformed())?;
        let key = STD_BASE64.decode(key64).map_err(|_| malformed())?;
        if !is_valid_name(name) || key.is_empty() {
            return Err(malformed());
        }
        if hash != key_hash(name, &key) {
            return Err(NoteError::KeyHash(vkey.to_string()));
        }
        if key[0] != ALG_ED25519 {
            return Err(NoteError::UnknownAlgorithm(vkey.to_string()));
        }
        let key: [u8; 32] = key[1..].try_into().map_err(|_| malformed())?;
        Ok(Verifier {
            name: name.to_string(),
            hash,
            key,
        })
    }

    /// The server name, e.g. `sum.golang.org`.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_hash(&self) -> u32 {
        self.hash
    }

    /// Whether `sig` is a valid Ed25519 signature of `msg` by this key.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &self.key)
            .verify(msg, sig)
            .is_ok()
    }
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub name: String,
    pub hash: u32,
    pub base64: String,
}

/// A note whose signatures were checked: at least one by a known key, all by known keys valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The signed text, ending in a newline.
    pub text: String,
    pub sigs: Vec<Signature>,
    /// Signatures by keys the caller does not know; ignored.
    pub unverified_sigs: Vec<Signature>,
}

/// Parses `msg` and checks its signatures against `known` (Go's `note.Open`). Signatures by
/// unknown keys are kept aside; a signature by a known key that does not verify is an error; a
/// note no known key signed is [`NoteError::Unverified`].
pub fn open(msg: &[u8], known: &[Verifier]) -> Result<Note, NoteError> {
    let msg = std::str::from_utf8(msg).map_err(|_| NoteError::Malformed)?;
    if msg.chars().any(|c| c < ' ' && c != '\n') {
        return Err(NoteError::Malformed);
    }
    let split = msg.rfind("\n\n").ok_or(NoteError::Malformed)?;
    let (text, mut sigs) = (&msg[..split + 1], &msg[split + 2..]);
    if !sigs.ends_with('\n') {
        return Err(NoteError::Malformed);
    }
    let mut note = Note {
        text: text.to_string(),
        sigs: Vec::new(),
        unverified_sigs: Vec::new(),
    };
    let mut seen = HashSet::new();
    let mut seen_unverified = HashSet::new();
    let mut count = 0;
    while !sigs.is_empty() {
        let (line, rest) = sigs.split_once('\n').ok_or(NoteError::Malformed)?;
        sigs = rest;
        let line = line.strip_prefix(SIG_PREFIX).ok_or(NoteError::Malformed)?;
        let (name, b64) = line.split_once(' ').unwrap_or((line, ""));
        let sig = STD_BASE64.decode(b64).map_err(|_| NoteError::Malformed)?;
        if !is_valid_name(name) || b64.is_empty() || sig.len() < 5 {
            return Err(NoteError::Malformed);
        }
        let hash = u32::from_be_bytes([sig[0], sig[1], sig[2], sig[3]]);
        count += 1;
        if count > MAX_SIGNATURES {
            return Err(NoteError::Malformed);
        }
        let mut matching = known.iter().filter(|v| v.name == name && v.hash == hash);
        let Some(verifier) = matching.next() else {
            if seen_unverified.insert(line.to_string()) {
                note.unverified_sigs.push(Signature {
                    name: name.to_string(),
                    hash,
                    base64: b64.to_string(),
                });
            }
            continue;
        };
        if matching.next().is_some() {
            return Err(NoteError::Ambiguous {
                name: name.to_string(),
                hash,
            });
        }
        if !seen.insert((name.to_string(), hash)) {
            continue;
        }
        if !verifier.verify(text.as_bytes(), &sig[4..]) {
            return Err(NoteError::InvalidSignature {
                name: name.to_string(),
                hash,
            });
        }
        note.sigs.push(Signature {
            name: name.to_string(),
            hash,
            base64: b64.to_string(),
        });
    }
    if note.sigs.is_empty() {
        return Err(NoteError::Unverified {
            signers: note
                .unverified_sigs
                .iter()
                .map(|s| format!("{}+{:08x}", s.name, s.hash))
                .collect(),
        });
    }
    Ok(note)
}

/// Signing, for tests that build their own databases (the proxy never signs).
#[cfg(test)]
pub(crate) mod signer {
    use super::*;

    /// A signer key `PRIVATE+KEY+name+hash+base64(1 || seed)`, parsed.
    pub struct Signer {
        pub name: String,
        pub hash: u32,
        pair: ring::signature::Ed25519KeyPair,
    }

    impl Signer {
        pub fn parse(skey: &str) -> Signer {
            let rest = skey
                .strip_prefix("PRIVATE+KEY+")
                .expect("signer key prefix");
            let (name, rest) = rest.split_once('+').unwrap();
            let (hash16, key64) = rest.split_once('+').unwrap();
            let key = STD_BASE64.decode(key64).unwrap();
            assert_eq!(key[0], ALG_ED25519);
            let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&key[1..]).unwrap();
            let signer = Signer {
                name: name.to_string(),
                hash: u32::from_str_radix(hash16, 16).unwrap(),
                pair,
            };
            assert_eq!(signer.hash, key_hash(name, &signer.public_key()));
            signer
        }

        /// A fresh key from a seed, under `name`.
        pub fn from_seed(name: &str, seed: [u8; 32]) -> Signer {
            let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
            let mut s = Signer {
                name: name.to_string(),
                hash: 0,
                pair,
            };
            s.hash = key_hash(name, &s.public_key());
            s
        }

        fn public_key(&self) -> Vec<u8> {
            use ring::signature::KeyPair;
            let mut k = vec![ALG_ED25519];
            k.extend_from_slice(self.pair.public_key().as_ref());
            k
        }

        /// The verifier key `name+hash+base64`.
        pub fn verifier_key(&self) -> String {
            format!(
                "{}+{:08x}+{}",
                self.name,
                self.hash,
                STD_BASE64.encode(self.public_key())
            )
        }

        /// The signature line for `text`.
        pub fn sign_line(&self, text: &str) -> String {
            let mut raw = self.hash.to_be_bytes().to_vec();
            raw.extend_from_slice(self.pair.sign(text.as_bytes()).as_ref());
            format!("{SIG_PREFIX}{} {}\n", self.name, STD_BASE64.encode(raw))
        }

        /// `text`, a blank line and this signer's signature (Go's `note.Sign`).
        pub fn sign(&self, text: &str) -> Vec<u8> {
            assert!(text.ends_with('\n'));
            format!("{text}\n{}", self.sign_line(text)).into_bytes()
        }
    }
}

#[cfg(test)]
mod tests {
    //! Vectors from golang.org/x/mod/sumdb/note's note_test.go.
    use super::signer::Signer;
    use super::*;

    const PETER_KEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const PETER_SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const ENOCH_KEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
    const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                        then you don't know what your problem is.\n";
    const PETER_SIG: &str = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
    const ENOCH_SIG: &str = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

    fn sig(name: &str, hash: u32, b64: &str) -> Signature {
        Signature {
            name: name.into(),
            hash,
            base64: b64.into(),
        }
    }

    fn peter() -> Signature {
        sig(
            "PeterNeumann",
            0xc74f20a3,
            "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",
        )
    }

    fn enoch() -> Signature {
        sig(
            "EnochRoot",
            0xaf0cfe78,
            "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=",
        )
    }

    #[test]
    fn verifier_keys_parse_and_every_mangling_is_rejected() {
        let v = Verifier::parse(PETER_KEY).unwrap();
        assert_eq!((v.name(), v.key_hash()), ("PeterNeumann", 0xc74f20a3));
        let b = PETER_KEY.as_bytes();
        for i in 0..=b.len() {
            for j in i + 1..=b.len() {
                if i != 0 || j != b.len() {
                    let k = String::from_utf8_lossy(&b[i..j]);
                    assert!(Verifier::parse(&k).is_err(), "{k:?} accepted");
                }
            }
        }
        for i in 0..b.len() {
            let mut m = b.to_vec();
            m[i] += 1;
            let k = String::from_utf8_lossy(&m);
            assert!(Verifier::parse(&k).is_err(), "{k:?} accepted");
        }
        // Wrong key length and unknown algorithm, each with an adjusted key hash.
        assert!(
            Verifier::parse(
                "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="
            )
            .is_err()
        );
        assert!(matches!(
            Verifier::parse("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"),
            Err(NoteError::UnknownAlgorithm(_))
        ));
    }

    #[test]
    fn the_go_command_key_for_sum_golang_org_parses() {
        let v =
            Verifier::parse("sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8")
                .unwrap();
        assert_eq!(v.name(), "sum.golang.org");
        assert_eq!(v.key_hash(), 0x033de0ae);
    }

    #[test]
    fn signing_matches_go() {
        let s = Signer::parse(PETER_SKEY);
        assert_eq!(s.verifier_key(), PETER_KEY);
        let want = format!("{TEXT}\n{PETER_SIG}");
        assert_eq!(String::from_utf8(s.sign(TEXT)).unwrap(), want);
    }

    #[test]
    fn open_verifies_known_keys_and_sets_unknown_ones_aside() {
        let peter_v = Verifier::parse(PETER_KEY).unwrap();
        let enoch_v = Verifier::parse(ENOCH_KEY).unwrap();
        let msg = format!("{TEXT}\n{PETER_SIG}{ENOCH_SIG}");

        let n = open(msg.as_bytes(), std::slice::from_ref(&peter_v)).unwrap();
        assert_eq!(n.text, TEXT);
        assert_eq!(n.sigs, [peter()]);
        assert_eq!(n.unverified_sigs, [enoch()]);

        let n = open(msg.as_bytes(), &[peter_v.clone(), enoch_v.clone()]).unwrap();
        assert_eq!(n.sigs, [peter(), enoch()]);
        assert!(n.unverified_sigs.is_empty());

        let err = open(msg.as_bytes(), &[]).unwrap_err();
        assert_eq!(err.to_string(), "note has no verifiable signatures");
        assert_eq!(
            err,
            NoteError::Unverified {
                signers: vec!["PeterNeumann+c74f20a3".into(), "EnochRoot+af0cfe78".into()]
            }
        );

        // A duplicated verifier is ambiguous only when its key signed the note.
        let three = [enoch_v.clone(), peter_v.clone(), enoch_v.clone()];
        let err = open(format!("{TEXT}\n{ENOCH_SIG}").as_bytes(), &three).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("ambiguous key EnochRoot+af0cfe78"),
            "{err}"
        );
        open(format!("{TEXT}\n{PETER_SIG}").as_bytes(), &three).unwrap();
    }

    #[test]
    fn open_limits_signatures_and_rejects_bad_ones() {
        let peter_v = Verifier::parse(PETER_KEY).unwrap();
        let many = format!("{TEXT}\n{}", PETER_SIG.repeat(101));
        for known in [vec![peter_v.clone()], vec![]] {
            assert_eq!(
                open(many.as_bytes(), &known).unwrap_err(),
                NoteError::Malformed
            );
        }
        let bad = format!("{TEXT}\n{}ABCD{}", &PETER_SIG[..60], &PETER_SIG[60..]);
        assert_eq!(
            open(bad.as_bytes(), std::slice::from_ref(&peter_v))
                .unwrap_err()
                .to_string(),
            "invalid signature for key PeterNeumann+c74f20a3"
        );

        // Repeated signatures are dropped; a bad one by an unknown key is only set aside.
        let enoch_abcd = format!("{}ABCD{}", &ENOCH_SIG[..60], &ENOCH_SIG[60..]);
        let msg = format!("{TEXT}\n{PETER_SIG}{PETER_SIG}{ENOCH_SIG}{ENOCH_SIG}{enoch_abcd}");
        let n = open(msg.as_bytes(), std::slice::from_ref(&peter_v)).unwrap();
        assert_eq!(n.sigs, [peter()]);
        let mut abcd = enoch();
        abcd.base64 = format!("{}ABCD{}", &abcd.base64[..46], &abcd.base64[46..]);
        assert_eq!(n.unverified_sigs, [enoch(), abcd]);
    }

    #[test]
    fn open_rejects_malformed_notes() {
        let peter_v = Verifier::parse(PETER_KEY).unwrap();
        let bad = [
            TEXT.to_string(),
            format!("{TEXT}\n"),
            format!("{TEXT}\n{}", &PETER_SIG[..PETER_SIG.len() - 1]),
            format!("\x01{TEXT}\n{PETER_SIG}"),
            format!("{TEXT}\r\n{PETER_SIG}"),
            format!(
                "{TEXT}\n— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
            ),
            format!("{TEXT}\n{PETER_SIG}Unexpected line.\n"),
        ];
        for msg in bad {
            assert_eq!(
                open(msg.as_bytes(), std::slice::from_ref(&peter_v)).unwrap_err(),
                NoteError::Malformed,
                "{msg:?}"
            );
        }
        let mut invalid_utf8 = vec![0xff];
        invalid_utf8.extend_from_slice(format!("{TEXT}\n{PETER_SIG}").as_bytes());
        assert_eq!(
            open(&invalid_utf8, &[peter_v]).unwrap_err(),
            NoteError::Malformed
        );
    }

    #[test]
    fn generated_keys_sign_and_verify() {
        let s = Signer::from_seed("EnochRoot", [7; 32]);
        let v = Verifier::parse(&s.verifier_key()).unwrap();
        let n = open(&s.sign("hi\n"), std::slice::from_ref(&v)).unwrap();
        assert_eq!(n.text, "hi\n");
        let mut msg = s.sign("hi\n");
        msg[0] = b'H';
        assert!(matches!(
            open(&msg, &[v]),
            Err(NoteError::InvalidSignature { .. })
        ));
    }
}
