//! Content digests (`algorithm:encoded`), as the image-spec defines them. Only registered
//! algorithms wharf can verify are accepted: sha256 and sha512.

use super::hashstate;
use sha2::Digest as _;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    /// The algorithm a client names (`digest-algorithm=`, a digest's prefix); only those wharf
    /// can verify are known.
    pub fn from_name(name: &str) -> Result<Algorithm, DigestError> {
        match name {
            "sha256" => Ok(Algorithm::Sha256),
            "sha512" => Ok(Algorithm::Sha512),
            _ => Err(DigestError::Unsupported(name.to_string())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    pub fn hasher(self) -> Hasher {
        match self {
            Algorithm::Sha256 => Hasher::Sha256(hashstate::Sha256::default()),
            Algorithm::Sha512 => Hasher::Sha512(hashstate::Sha512::default()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("digest {0:?} is not of the form algorithm:hex")]
    Malformed(String),
    #[error("digest algorithm {0:?} is not supported (use sha256 or sha512)")]
    Unsupported(String),
}

impl Digest {
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The encoded part: lowercase hex.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    pub fn sha256_of(data: &[u8]) -> Digest {
        Digest {
            algorithm: Algorithm::Sha256,
            hex: hex::encode(sha2::Sha256::digest(data)),
        }
    }

    pub fn of(algorithm: Algorithm, data: &[u8]) -> Digest {
        let mut h = algorithm.hasher();
        h.update(data);
        h.finish()
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (alg, enc) = s.split_once(':').ok_or_else(|| DigestError::Malformed(s.to_string()))?;
        // The image-spec grammar: algorithm components of [a-z0-9], separators [+._-].
        let alg_ok = !alg.is_empty()
            && alg
                .split(['+', '.', '_', '-'])
                .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        let enc_ok = !enc.is_empty() && enc.bytes().all(|b| b.is_ascii_alphanumeric() || b"=_-".contains(&b));
        if !alg_ok || !enc_ok {
            return Err(DigestError::Malformed(s.to_string()));
        }
        let algorithm = Algorithm::from_name(alg)?;
        let lower_hex = enc.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if enc.len() != algorithm.hex_len() || !lower_hex {
            return Err(DigestError::Malformed(s.to_string()));
        }
        Ok(Digest {
            algorithm,
            hex: enc.to_string(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.hex)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An incremental hash for either algorithm, so upload code need not care which one the
/// client chose. Its state can be saved (in registry:2's format) and restored elsewhere.
#[derive(Clone)]
pub enum Hasher {
    Sha256(hashstate::Sha256),
    Sha512(hashstate::Sha512),
}

impl Hasher {
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            Hasher::Sha256(_) => Algorithm::Sha256,
            Hasher::Sha512(_) => Algorithm::Sha512,
        }
    }

    /// Bytes hashed so far.
    pub fn hashed(&self) -> u64 {
        match self {
            Hasher::Sha256(h) => h.len(),
            Hasher::Sha512(h) => h.len(),
        }
    }

    /// The running state, as Go's `MarshalBinary` writes it.
    pub fn save(&self) -> Vec<u8> {
        match self {
            Hasher::Sha256(h) => h.save(),
            Hasher::Sha512(h) => h.save(),
        }
    }

    /// A hasher resumed from a saved state of `algorithm`; None if `saved` is not one.
    pub fn restore(algorithm: Algorithm, saved: &[u8]) -> Option<Hasher> {
        match algorithm {
            Algorithm::Sha256 => hashstate::Sha256::restore(saved).map(Hasher::Sha256),
            Algorithm::Sha512 => hashstate::Sha512::restore(saved).map(Hasher::Sha512),
        }
    }

    pub fn finish(self) -> Digest {
        let algorithm = self.algorithm();
        let bytes = match self {
            Hasher::Sha256(h) => h.finalize(),
            Hasher::Sha512(h) => h.finalize(),
        };
        Digest {
            algorithm,
            hex: hex::encode(bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_sha256_and_sha512() {
        let d = Digest::sha256_of(b"");
        assert_eq!(
            d.to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
        let d512 = Digest::of(Algorithm::Sha512, b"abc");
        assert!(d512.hex().starts_with("ddaf35a193617aba"));
        assert_eq!(d512.to_string().parse::<Digest>().unwrap(), d512);
    }

    #[test]
    fn rejects_malformed_and_unsupported() {
        for bad in [
            "",
            "sha256",
            "sha256:",
            ":abc",
            "sha256:XYZ",
            "sha256:abc",
            "SHA256:e3b0",
            "sha256:../../etc",
        ] {
            assert!(matches!(bad.parse::<Digest>(), Err(DigestError::Malformed(_))), "{bad}");
        }
        let upper = format!("sha256:{}", "A".repeat(64));
        assert!(upper.parse::<Digest>().is_err());
        assert!(matches!(
            "md5:d41d8cd98f00b204e9800998ecf8427e".parse::<Digest>(),
            Err(DigestError::Unsupported(_))
        ));
        for name in ["md5", "SHA256", "sha256+x", ""] {
            assert!(matches!(Algorithm::from_name(name), Err(DigestError::Unsupported(_))), "{name}");
        }
        assert_eq!(Algorithm::from_name("sha512"), Ok(Algorithm::Sha512));
    }
}
