//! The slots of a `__slots__` class (inherit's Known, the codec's SpanEdits) read and written
//! at their offsets in the object, as the member descriptors do, without the attribute
//! lookup: `getattr(known, "fields")` walks the type's MRO through the method cache (a global
//! table that misses once the batch's working set outgrows the caches) and calls the
//! descriptor, ~150 instructions for one pointer load; the kernel does a dozen per span.
//!
//! The offsets are found, not assumed: one instance is made and each slot set to an object of
//! its own, then the instance's words are searched for them (no CPython struct layout is
//! read). An object of any other type (a subclass included) goes through getattr/setattr,
//! as does an unset slot (getattr raises AttributeError, as Python would).

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString, PyType};

pub(crate) struct SlotLayout {
    class: Py<PyType>,
    names: Vec<Py<PyString>>,
    offsets: Vec<isize>,
}

impl SlotLayout {
    /// The layout of `names` in `class`'s instances; None when some name is not a plain slot
    /// of the class (a property, a class attribute, a dict entry) or is not found.
    pub(crate) fn of(py: Python<'_>, class: &Bound<'_, PyType>, names: &[&str]) -> PyResult<Option<SlotLayout>> {
        let member = py.import("types")?.getattr("MemberDescriptorType")?;
        for name in names {
            match class.getattr(*name) {
                Ok(found) if found.get_type().is(&member) => {}
                _ => return Ok(None),
            }
        }
        let object_new = py.import("builtins")?.getattr("object")?.getattr("__new__")?;
        let probe = object_new.call1((class,))?;
        // SAFETY: a type object's basic size is read-only after creation.
        let basic = unsafe { (*class.as_type_ptr()).tp_basicsize } as usize;
        let word = std::mem::size_of::<*mut ffi::PyObject>();
        let words = |object: &Bound<'_, PyAny>| -> Vec<usize> {
            // SAFETY: the object is alive and at least `basic` bytes long (its type's basic
            // size); words are read, not kept.
            (0..basic / word)
                .map(|at| unsafe { *(object.as_ptr() as *const usize).add(at) })
                .collect()
        };
        let mut offsets = Vec::with_capacity(names.len());
        let mut markers = Vec::with_capacity(names.len());
        for name in names {
            let marker = PyList::empty(py); // an object of its own: its address marks the slot
            probe.setattr(*name, &marker)?;
            markers.push(marker);
        }
        let seen = words(&probe);
        for marker in &markers {
            let address = marker.as_ptr() as usize;
            let mut places = seen.iter().enumerate().filter(|(_, w)| **w == address);
            match (places.next(), places.next()) {
                (Some((at, _)), None) => offsets.push((at * word) as isize),
                _ => return Ok(None),
            }
        }
        // A new instance's slots are empty (NULL): `set` relies on it for objects made by
        // object.__new__.
        let fresh = words(&object_new.call1((class,))?);
        if offsets.iter().any(|&off| fresh[off as usize / word] != 0) {
            return Ok(None);
        }
        Ok(Some(SlotLayout {
            class: class.clone().unbind(),
            names: names.iter().map(|name| PyString::new(py, name).unbind()).collect(),
            offsets,
        }))
    }

    fn exact(&self, object: &Bound<'_, PyAny>) -> bool {
        // SAFETY: reading a live object's type pointer.
        unsafe { ffi::Py_TYPE(object.as_ptr()) == self.class.as_ptr() as *mut ffi::PyTypeObject }
    }

    /// `getattr(object, names[at])`.
    #[inline]
    pub(crate) fn get<'py>(&self, object: &Bound<'py, PyAny>, at: usize) -> PyResult<Bound<'py, PyAny>> {
        if self.exact(object) {
            // SAFETY: an instance of exactly the class: the slot's word is at its offset.
            let value =
                unsafe { *((object.as_ptr() as *const u8).offset(self.offsets[at]) as *const *mut ffi::PyObject) };
            if !value.is_null() {
                // SAFETY: a live object the instance holds a reference to.
                return Ok(unsafe { Bound::from_borrowed_ptr(object.py(), value) });
            }
        }
        object.getattr(self.names[at].bind(object.py()))
    }

    /// `setattr(object, names[at], value)`.
    #[inline]
    pub(crate) fn set(&self, object: &Bound<'_, PyAny>, at: usize, value: &Bound<'_, PyAny>) -> PyResult<()> {
        if !self.exact(object) {
            return object.setattr(self.names[at].bind(object.py()), value);
        }
        // SAFETY: an instance of exactly the class: the slot's word is at its offset; it takes
        // a new reference, the one it held (if any) is released after, as the descriptor does.
        unsafe {
            let slot = (object.as_ptr() as *mut u8).offset(self.offsets[at]) as *mut *mut ffi::PyObject;
            let old = *slot;
            *slot = value.clone().into_ptr();
            if !old.is_null() {
                ffi::Py_DECREF(old);
            }
        }
        Ok(())
    }
}
