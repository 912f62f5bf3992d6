//! SpanView.kinds: a span's watched keys with the kind of each value, spelt as api.py's
//! `value_kinds` spells it (the Python oracle): `key` 0x1f letter, keys sorted by their
//! bytes (= by code point, as Python sorts str), joined by 0x1e. A decision that depends on
//! the keys and value types only is made once per distinct string (normalize's).

use crate::scan::Value;

/// The letter of a value's kind as the view decodes it (a string-table index is an int).
#[inline]
pub fn kind_letter(value: &Value) -> u8 {
    match value {
        Value::Empty => b'e',
        Value::Str(range) if range.len == 0 => b'z',
        Value::Str(_) => b's',
        Value::Bool(_) => b'b',
        Value::Int(_) | Value::StrIndex(_) => b'i',
        Value::Double(_) => b'f',
        Value::Bytes(_) => b'y',
        Value::Array(_) => b'a',
        Value::KvList(_) => b'k',
    }
}

/// The kinds string of distinct keys (`pairs`: key bytes and kind letter, any order).
pub fn canonical(pairs: &mut [(&[u8], u8)]) -> Vec<u8> {
    pairs.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut out = Vec::with_capacity(pairs.iter().map(|(k, _)| k.len() + 3).sum());
    for (i, (key, letter)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(0x1e);
        }
        out.extend_from_slice(key);
        out.push(0x1f);
        out.push(*letter);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sorted_by_bytes_each_with_its_letter() {
        let mut pairs: Vec<(&[u8], u8)> = vec![(b"b.key", b's'), (b"a", b'i'), ("é".as_bytes(), b'z'), (b"z", b'e')];
        assert_eq!(
            canonical(&mut pairs),
            "a\x1fi\x1eb.key\x1fs\x1ez\x1fe\x1eé\x1fz".as_bytes()
        );
        assert_eq!(canonical(&mut []), b"");
    }
}
