//! SPDY/3 header blocks: name/value pairs with 32-bit lengths, zlib-compressed with the
//! protocol's dictionary. Each direction of a connection keeps ONE zlib stream for all
//! its header blocks (each block ends with a sync flush), so a block can only be read
//! by the decompressor that has seen every earlier block of that direction.

use std::sync::OnceLock;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// A header block, in order; names are lower case, repeated values are joined by NUL.
pub type Headers = Vec<(String, String)>;

/// The most a header block may inflate to: the kubelet's streams carry a handful of
/// short headers, so anything near this is an attack or a broken peer.
const MAX_BLOCK: usize = 1024 * 1024;

/// Why a header block could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// zlib refused the compressed bytes (or our own input).
    #[error("header block compression: {0}")]
    Zlib(String),
    /// The compressed block asks for a dictionary other than SPDY/3's.
    #[error("header block needs dictionary {found:#010x}, expected SPDY/3's {expected:#010x}")]
    Dictionary {
        /// The Adler-32 the block names.
        found: u32,
        /// The Adler-32 of SPDY/3's dictionary.
        expected: u32,
    },
    /// The inflated block is not pairs of length-prefixed strings.
    #[error("malformed header block: {0}")]
    Malformed(String),
    /// The inflated block is larger than we accept.
    #[error("header block inflates past {MAX_BLOCK} bytes")]
    TooLarge,
}

/// The names (each with a 4-byte length) that open SPDY/3's dictionary.
const DICTIONARY_WORDS: &[&str] = &[
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

/// The raw text (no lengths) that ends SPDY/3's dictionary: status codes, reason
/// phrases, dates and common values.
const DICTIONARY_TAIL: &str = concat!(
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417",
    "502504505203 Non-Authoritative Information204 No Content301 Moved Permanently",
    "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error",
    "501 Not Implemented503 Service Unavailable",
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,",
    "application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=",
    "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
);

/// The zlib dictionary of SPDY/3 header blocks (draft 3, section 2.6.10.1).
pub fn dictionary() -> &'static [u8] {
    static DICTIONARY: OnceLock<Vec<u8>> = OnceLock::new();
    DICTIONARY.get_or_init(|| {
        let mut bytes = Vec::with_capacity(1423);
        for word in DICTIONARY_WORDS {
            bytes.extend_from_slice(&(word.len() as u32).to_be_bytes());
            bytes.extend_from_slice(word.as_bytes());
        }
        bytes.extend_from_slice(DICTIONARY_TAIL.as_bytes());
        bytes
    })
}

/// Serialize a header block (uncompressed): the pair count, then each name and value
/// with 32-bit big-endian lengths. Names are lower-cased, as SPDY/3 requires.
pub fn encode_block(headers: &[(String, String)]) -> Vec<u8> {
    let mut block = Vec::new();
    block.extend_from_slice(&(headers.len() as u32).to_be_bytes());
    for (name, value) in headers {
        for text in [name.to_ascii_lowercase().as_str(), value.as_str()] {
            block.extend_from_slice(&(text.len() as u32).to_be_bytes());
            block.extend_from_slice(text.as_bytes());
        }
    }
    block
}

/// Parse an uncompressed header block.
pub fn decode_block(mut block: &[u8]) -> Result<Headers, HeaderError> {
    let count = take_u32(&mut block, "the pair count")?;
    let mut headers = Vec::new();
    for i in 0..count {
        let name = take_string(&mut block, || format!("the name of pair {i}"))?;
        let value = take_string(&mut block, || format!("the value of {name:?}"))?;
        if name.is_empty() {
            return Err(HeaderError::Malformed(format!(
                "pair {i} has an empty name"
            )));
        }
        headers.push((name, value));
    }
    if !block.is_empty() {
        return Err(HeaderError::Malformed(format!(
            "{} bytes after the last of {count} pairs",
            block.len()
        )));
    }
    Ok(headers)
}

fn take_u32(block: &mut &[u8], what: &str) -> Result<u32, HeaderError> {
    let Some((length, rest)) = block.split_first_chunk::<4>() else {
        return Err(HeaderError::Malformed(format!("truncated at {what}")));
    };
    *block = rest;
    Ok(u32::from_be_bytes(*length))
}

fn take_string(block: &mut &[u8], what: impl Fn() -> String) -> Result<String, HeaderError> {
    let length = take_u32(block, &format!("the length of {}", what()))? as usize;
    if block.len() < length {
        return Err(HeaderError::Malformed(format!(
            "{} says {length} bytes, {} left",
            what(),
            block.len()
        )));
    }
    let (text, rest) = block.split_at(length);
    *block = rest;
    String::from_utf8(text.to_vec())
        .map_err(|_| HeaderError::Malformed(format!("{} is not UTF-8", what())))
}

/// The value of header `name` (case-insensitive), if present.
pub fn get<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The compressing side of one direction of a connection.
pub struct Compressor {
    zlib: Compress,
}

impl Compressor {
    /// A compressor primed with SPDY/3's dictionary.
    pub fn new() -> Result<Compressor, HeaderError> {
        let mut zlib = Compress::new(Compression::default(), true);
        zlib.set_dictionary(dictionary())
            .map_err(|e| HeaderError::Zlib(e.to_string()))?;
        Ok(Compressor { zlib })
    }

    /// Compress one header block, ending with a sync flush so the peer can inflate it
    /// whole.
    pub fn compress(&mut self, headers: &[(String, String)]) -> Result<Vec<u8>, HeaderError> {
        let input = encode_block(headers);
        let start = self.zlib.total_in();
        let mut out = Vec::with_capacity(input.len() / 2 + 64);
        loop {
            let consumed = (self.zlib.total_in() - start) as usize;
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(64));
            }
            let produced = out.len();
            self.zlib
                .compress_vec(&input[consumed..], &mut out, FlushCompress::Sync)
                .map_err(|e| HeaderError::Zlib(e.to_string()))?;
            let before = consumed;
            let consumed = (self.zlib.total_in() - start) as usize;
            if consumed == before && out.len() == produced && consumed < input.len() {
                return Err(HeaderError::Zlib("deflate made no progress".into()));
            }
            // Done when all input is in and zlib stopped short of filling the buffer
            // (a full buffer may hide more flushed output).
            if consumed == input.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// The inflating side of one direction of a connection.
pub struct Decompressor {
    zlib: Decompress,
}

impl Default for Decompressor {
    fn default() -> Self {
        Decompressor {
            zlib: Decompress::new(true),
        }
    }
}

impl Decompressor {
    /// Inflate and parse one header block (the whole compressed block of one frame).
    pub fn decompress(&mut self, compressed: &[u8]) -> Result<Headers, HeaderError> {
        let start = self.zlib.total_in();
        let mut out = Vec::with_capacity(compressed.len() * 4 + 64);
        loop {
            let consumed = (self.zlib.total_in() - start) as usize;
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(64));
            }
            let produced = out.len();
            match self
                .zlib
                .decompress_vec(&compressed[consumed..], &mut out, FlushDecompress::Sync)
            {
                Ok(Status::StreamEnd) => break,
                Ok(_) => {}
                Err(e) => match e.needs_dictionary() {
                    Some(wanted) => {
                        self.prime(wanted)?;
                        continue;
                    }
                    None => return Err(HeaderError::Zlib(e.to_string())),
                },
            }
            if out.len() > MAX_BLOCK {
                return Err(HeaderError::TooLarge);
            }
            let before = consumed;
            let consumed = (self.zlib.total_in() - start) as usize;
            if consumed == compressed.len() && out.len() < out.capacity() {
                break;
            }
            if consumed == before && out.len() == produced && out.len() < out.capacity() {
                // Input left that zlib will not take: a block cut short, or garbage.
                return Err(HeaderError::Zlib("the header block ends mid-stream".into()));
            }
        }
        decode_block(&out)
    }

    /// zlib asks for the dictionary once, at the start of the stream.
    fn prime(&mut self, wanted: u32) -> Result<(), HeaderError> {
        let expected = adler32(dictionary());
        if wanted != expected {
            return Err(HeaderError::Dictionary {
                found: wanted,
                expected,
            });
        }
        self.zlib
            .set_dictionary(dictionary())
            .map(drop)
            .map_err(|e| HeaderError::Zlib(e.to_string()))
    }
}

/// zlib's checksum, which names a dictionary in a stream's header.
fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for byte in data {
        a = (a + u32::from(*byte)) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Headers {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_dictionary_is_spdy3s() {
        // The length and checksum every SPDY/3 peer's zlib stream names.
        assert_eq!(dictionary().len(), 1423);
        assert_eq!(adler32(dictionary()), 0xe3c6a7c2);
        assert!(dictionary().starts_with(b"\0\0\0\x07options\0\0\0\x04head"));
        assert!(dictionary().ends_with(b",*,enq=0."));
    }

    #[test]
    fn blocks_round_trip_and_names_are_lower_cased() {
        let headers = pairs(&[("streamType", "stdout"), ("Port", "8080"), ("x", "")]);
        let block = encode_block(&headers);
        assert_eq!(&block[..8], &[0, 0, 0, 3, 0, 0, 0, 10]);
        let back = decode_block(&block).unwrap();
        assert_eq!(
            back,
            pairs(&[("streamtype", "stdout"), ("port", "8080"), ("x", "")])
        );
        assert_eq!(get(&back, "StreamType"), Some("stdout"));
        assert_eq!(get(&back, "requestID"), None);
    }

    #[test]
    fn malformed_blocks_say_where() {
        let mut block = encode_block(&pairs(&[("port", "80")]));
        block.truncate(block.len() - 1);
        let err = decode_block(&block).unwrap_err().to_string();
        assert!(
            err.contains("the value of \"port\" says 2 bytes, 1 left"),
            "{err}"
        );
        assert!(decode_block(&[0, 0]).is_err());
        let mut extra = encode_block(&[]);
        extra.push(7);
        assert!(decode_block(&extra).is_err());
    }

    #[test]
    fn one_zlib_stream_carries_many_blocks() {
        let mut compressor = Compressor::new().unwrap();
        let mut decompressor = Decompressor::default();
        let first = pairs(&[("streamtype", "error"), ("requestid", "0"), ("port", "80")]);
        let second = pairs(&[("streamtype", "data"), ("requestid", "0"), ("port", "80")]);
        let a = compressor.compress(&first).unwrap();
        let b = compressor.compress(&second).unwrap();
        // zlib header naming the dictionary: FDICT set, then its Adler-32.
        assert_eq!(a[0], 0x78);
        assert_ne!(a[1] & 0x20, 0);
        assert_eq!(&a[2..6], &0xe3c6a7c2u32.to_be_bytes());
        // The second block leans on the first: it is smaller and needs its context.
        assert!(b.len() < a.len(), "{} vs {}", b.len(), a.len());
        assert_eq!(decompressor.decompress(&a).unwrap(), first);
        assert_eq!(decompressor.decompress(&b).unwrap(), second);
        assert!(Decompressor::default().decompress(&b).is_err());
    }

    #[test]
    fn large_blocks_and_foreign_dictionaries() {
        let big = pairs(&[("x-big", &"v".repeat(200_000))]);
        let mut compressor = Compressor::new().unwrap();
        let compressed = compressor.compress(&big).unwrap();
        assert_eq!(
            Decompressor::default().decompress(&compressed).unwrap(),
            big
        );

        let mut foreign = Compress::new(Compression::default(), true);
        foreign.set_dictionary(b"not spdy").unwrap();
        let mut out = Vec::with_capacity(256);
        foreign
            .compress_vec(&encode_block(&[]), &mut out, FlushCompress::Sync)
            .unwrap();
        let err = Decompressor::default().decompress(&out).unwrap_err();
        assert!(matches!(err, HeaderError::Dictionary { .. }), "{err}");
    }
}
