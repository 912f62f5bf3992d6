//! inherit's trace-level fallback votes as a native table: trace id -> the values of the
//! fallback fields spans of the trace carried, with how many spans carried each. The Python
//! class it mirrors, rule for rule, is `costctx.processors.inherit.context_cache.TraceValues`
//! (the fallback and the oracle; its docstring says why each rule is there). A trace costs
//! its key, a place in the age order and a short list of votes, rather than three dicts and
//! a list per vote. Trace ids come off the network: SipHash (std's RandomState).

use std::collections::{HashMap, VecDeque};

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
use pyo3::{PyTraverseError, PyVisit};

/// A trace id: 16 bytes inline; another length (forged) boxed.
#[derive(Clone, PartialEq, Eq, Hash)]
enum TraceKey {
    Id([u8; 16]),
    Odd(Box<[u8]>),
}

impl TraceKey {
    fn of(bytes: &[u8]) -> Self {
        match bytes.try_into() {
            Ok(id) => TraceKey::Id(id),
            Err(_) => TraceKey::Odd(bytes.into()),
        }
    }
}

/// One value of one field, as first carried, and how many spans carried it.
struct Vote {
    field: Py<PyString>,
    /// None: the value is a str and stands for itself; else its vote key (`_vote_key`).
    key: Option<Py<PyAny>>,
    value: Py<PyAny>,
    count: u64,
}

#[pyclass]
pub struct TraceVotes {
    traces: HashMap<TraceKey, Vec<Vote>>,
    order: VecDeque<TraceKey>,    // the keys of `traces`, oldest first
    chunks: VecDeque<(f64, u64)>, // (expires, keys added then), oldest first
    max_traces: usize,
    ttl: f64,
    timer: Py<PyAny>,
    vote_key: Py<PyAny>, // context_cache._vote_key: a value that is not a str -> its key
    now: Option<f64>,    // the batch's time (new_batch), else the timer's
}

fn same_field(a: &Bound<'_, PyString>, b: &Bound<'_, PyString>) -> PyResult<bool> {
    Ok(a.is(b) || a.to_str()? == b.to_str()?)
}

impl TraceVotes {
    fn clock(&self, py: Python<'_>) -> PyResult<f64> {
        self.timer.bind(py).call0()?.extract()
    }

    fn expire_at(&mut self, now: f64) {
        while let Some(&(expires, count)) = self.chunks.front() {
            if expires > now {
                break;
            }
            self.chunks.pop_front();
            for _ in 0..count {
                if let Some(key) = self.order.pop_front() {
                    self.traces.remove(&key);
                }
            }
        }
    }

    fn expire_due(&mut self, now: f64) {
        if self.chunks.front().is_some_and(|&(expires, _)| expires <= now) {
            self.expire_at(now);
        }
    }

    /// TraceValues._get: outside a batch, what is due is forgotten first.
    fn prepare(&mut self, py: Python<'_>) -> PyResult<()> {
        if self.now.is_none() {
            let now = self.clock(py)?;
            self.expire_due(now);
        }
        Ok(())
    }

    fn add(&mut self, py: Python<'_>, key: TraceKey) -> PyResult<()> {
        if self.traces.len() >= self.max_traces {
            // The trace first voted for is forgotten (the nearest to expiry).
            if let Some(oldest) = self.order.pop_front() {
                self.traces.remove(&oldest);
                if let Some(chunk) = self.chunks.front_mut() {
                    chunk.1 -= 1;
                    if chunk.1 == 0 {
                        self.chunks.pop_front();
                    }
                }
            }
        }
        let now = match self.now {
            Some(now) => now,
            None => self.clock(py)?,
        };
        let expires = now + self.ttl;
        match self.chunks.back_mut() {
            Some(last) if last.0 == expires => last.1 += 1,
            _ => self.chunks.push_back((expires, 1)),
        }
        self.order.push_back(key.clone());
        self.traces.insert(key, Vec::new());
        Ok(())
    }
}

#[pymethods]
impl TraceVotes {
    #[new]
    fn new(max_traces: usize, ttl: f64, timer: Py<PyAny>, vote_key: Py<PyAny>) -> Self {
        TraceVotes {
            traces: HashMap::new(),
            order: VecDeque::new(),
            chunks: VecDeque::new(),
            max_traces,
            ttl,
            timer,
            vote_key,
            now: None,
        }
    }

    /// A batch starts: what is due is forgotten, and its new traces share one time.
    fn new_batch(&mut self, py: Python<'_>) -> PyResult<()> {
        let now = self.clock(py)?;
        self.now = Some(now);
        self.expire_due(now);
        Ok(())
    }

    #[pyo3(signature = (trace_id, key, value, count=1))]
    pub(crate) fn record(
        &mut self,
        py: Python<'_>,
        trace_id: &Bound<'_, PyBytes>,
        key: &Bound<'_, PyString>,
        value: &Bound<'_, PyAny>,
        count: u64,
    ) -> PyResult<()> {
        self.prepare(py)?;
        let trace = TraceKey::of(trace_id.as_bytes());
        if !self.traces.contains_key(&trace) {
            self.add(py, trace.clone())?;
        }
        let vote_key = if value.is_exact_instance_of::<PyString>() {
            None
        } else {
            Some(self.vote_key.bind(py).call1((value,))?)
        };
        let votes = self.traces.get_mut(&trace).expect("just added");
        for vote in votes.iter_mut() {
            if !same_field(vote.field.bind(py), key)? {
                continue;
            }
            let same = match (&vote.key, &vote_key) {
                (None, None) => {
                    let held = vote.value.bind(py).cast::<PyString>()?;
                    held.is(value) || held.to_str()? == value.cast::<PyString>()?.to_str()?
                }
                (Some(held), Some(new)) => held.bind(py).eq(new)?,
                _ => false,
            };
            if same {
                vote.count += count;
                return Ok(());
            }
        }
        votes.reserve_exact(1); // most traces have one or two votes: no room for four
        votes.push(Vote {
            field: key.clone().unbind(),
            key: vote_key.map(Bound::unbind),
            value: value.clone().unbind(),
            count,
        });
        Ok(())
    }

    /// The value the trace's spans agree on for `key` (carried by more spans than every other
    /// value together), else None.
    fn lookup(
        &mut self,
        py: Python<'_>,
        trace_id: &Bound<'_, PyBytes>,
        key: &Bound<'_, PyString>,
    ) -> PyResult<Option<Py<PyAny>>> {
        self.prepare(py)?;
        let Some(votes) = self.traces.get(&TraceKey::of(trace_id.as_bytes())) else {
            return Ok(None);
        };
        let mut best: Option<&Vote> = None;
        let mut total: u64 = 0;
        for vote in votes {
            if !same_field(vote.field.bind(py), key)? {
                continue;
            }
            total += vote.count;
            if best.is_none_or(|b| vote.count > b.count) {
                best = Some(vote); // the first of equals, as Python's max
            }
        }
        Ok(best.filter(|b| 2 * b.count > total).map(|b| b.value.clone_ref(py)))
    }

    fn expire(&mut self, py: Python<'_>) -> PyResult<()> {
        self.now = None;
        let now = self.clock(py)?;
        self.expire_due(now);
        Ok(())
    }

    /// Bytes held natively (the map's slots, the age order, the votes), for the memory figures.
    fn nbytes(&self) -> usize {
        let slot = std::mem::size_of::<(TraceKey, Vec<Vote>)>() + 1;
        let votes: usize = self
            .traces
            .values()
            .map(|v| v.capacity() * std::mem::size_of::<Vote>())
            .sum();
        let odd: usize = self
            .order
            .iter()
            .map(|k| match k {
                TraceKey::Odd(b) => 2 * b.len(),
                TraceKey::Id(_) => 0,
            })
            .sum();
        self.traces.capacity() * 8 / 7 * slot
            + self.order.capacity() * std::mem::size_of::<TraceKey>()
            + self.chunks.capacity() * 16
            + votes
            + odd
    }

    fn __sizeof__(&self) -> usize {
        std::mem::size_of::<Self>() + self.nbytes()
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        for vote in self.traces.values().flatten() {
            visit.call(&vote.field)?;
            visit.call(&vote.value)?;
            if let Some(key) = &vote.key {
                visit.call(key)?;
            }
        }
        visit.call(&self.timer)?;
        visit.call(&self.vote_key)
    }

    fn __clear__(&mut self) {
        self.traces.clear();
        self.order.clear();
        self.chunks.clear();
    }

    fn __len__(&self) -> usize {
        self.traces.len()
    }
}
