//! The resend keys of budget's commit-once set and the price ledger's dedupe window, computed
//! without making the tuple they are `hash()` of: Python's tuple hash (Objects/tupleobject.c
//! `tuplehash`, the xxHash-based one of CPython 3.8 on) over its items' hashes, and an int's
//! hash (Python/pyhash.c: the value modulo 2^61 - 1, sign kept, -1 as -2). The Python readers
//! (budget/spend_read.py, pricing/ledger.py) hash the tuple itself: the differential tests
//! compare the keys they leave in the table. And a table that is the native `SpanKeyTable`
//! is tested and filled directly, not through Python's mapping protocol.

use pyo3::prelude::*;

use crate::table::SpanKeyTable;

const XXPRIME_1: u64 = 11400714785074694791;
const XXPRIME_2: u64 = 14029467366897019727;
const XXPRIME_5: u64 = 2870177450012600261;
const MODULUS: u64 = (1 << 61) - 1;

/// hash() of a tuple whose items hash to `lanes`.
pub(crate) fn tuple_hash(lanes: &[isize]) -> i64 {
    let mut acc = XXPRIME_5;
    for lane in lanes {
        acc = acc.wrapping_add((*lane as i64 as u64).wrapping_mul(XXPRIME_2));
        acc = acc.rotate_left(31);
        acc = acc.wrapping_mul(XXPRIME_1);
    }
    acc = acc.wrapping_add((lanes.len() as u64) ^ (XXPRIME_5 ^ 3527539));
    if acc == u64::MAX {
        return 1546275796;
    }
    acc as i64
}

/// hash() of an int.
pub(crate) fn int_hash(n: i64) -> isize {
    let magnitude = (n.unsigned_abs() % MODULUS) as i64;
    let hash = if n < 0 { -magnitude } else { magnitude };
    (if hash == -1 { -2 } else { hash }) as isize
}

/// A batch's seen-keys mapping (budget/seen.py `open_batch`'s entries: a dict, or the native
/// table) with the expiry of keys added now.
pub(crate) enum Seen<'a, 'py> {
    Table(&'a Bound<'py, SpanKeyTable>, f64),
    Mapping(&'a Bound<'py, PyAny>, &'a Bound<'py, PyAny>),
}

impl<'a, 'py> Seen<'a, 'py> {
    pub(crate) fn of(seen: &'a Bound<'py, PyAny>, expiry: &'a Bound<'py, PyAny>) -> PyResult<Self> {
        match seen.cast::<SpanKeyTable>() {
            Ok(table) => Ok(Seen::Table(table, expiry.extract()?)),
            Err(_) => Ok(Seen::Mapping(seen, expiry)),
        }
    }

    /// `key in seen`.
    pub(crate) fn contains(&self, key: i64) -> PyResult<bool> {
        match self {
            Seen::Table(table, _) => Ok(table.borrow().__contains__(key)),
            Seen::Mapping(seen, _) => seen.contains(key),
        }
    }

    /// `len(seen)`.
    pub(crate) fn len(&self) -> PyResult<usize> {
        match self {
            Seen::Table(table, _) => Ok(table.borrow().__len__()),
            Seen::Mapping(seen, _) => seen.len(),
        }
    }

    /// `seen[key] = expiry`.
    pub(crate) fn add(&self, key: i64) -> PyResult<()> {
        match self {
            Seen::Table(table, expiry) => {
                table.borrow_mut().__setitem__(key, *expiry);
                Ok(())
            }
            Seen::Mapping(seen, expiry) => seen.set_item(key, expiry),
        }
    }
}
