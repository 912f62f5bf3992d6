//! The slots of a `__slots__` class (inherit's Known, the codec's SpanEdits) read and written
//! at their offsets in the object, as the member descriptors do, without the attribute
//! lookup: `getattr(known, "fields")` walks the type's MRO through the method cache (a global
//! table that misses once the batch's working set outgrows the caches) and calls the
//! descriptor, ~150 instructions for one pointer load; the kernel does a dozen per span.
//!
//! The offsets are the member descriptors' own: the attribute `name` of the class (found
//! through its MRO, as an instance's lookup finds it) must be a member descriptor
//! (`types.MemberDescriptorType`, a PyMemberDescrObject) of an object slot (Py_T_OBJECT_EX,
//! what `__slots__` makes), writable, at an absolute offset, made for the class or one of its
//! bases (the check CPython's descriptor makes before it reads an instance): its PyMemberDef's
//! offset is where every instance of the class keeps that slot. Anything else (a property, a
//! class attribute, a dict entry) and there is no layout: getattr/setattr, as Python does. An
//! object of any other type (a subclass included) goes through getattr/setattr, as does an
//! unset slot (getattr raises AttributeError, as Python would).

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyString, PyType};

pub(crate) struct SlotLayout {
    class: Py<PyType>,
    names: Vec<Py<PyString>>,
    offsets: Vec<isize>,
}

impl SlotLayout {
    /// The layout of `names` in `class`'s instances; None when some name is not a plain object
    /// slot of the class or of a base (see the module's doc).
    pub(crate) fn of(py: Python<'_>, class: &Bound<'_, PyType>, names: &[&str]) -> PyResult<Option<SlotLayout>> {
        let mut offsets = Vec::with_capacity(names.len());
        for name in names {
            match slot_offset(py, class, name)? {
                Some(offset) => offsets.push(offset),
                None => return Ok(None),
            }
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

/// Where `class`'s instances keep the object slot `name`, from its member descriptor; None
/// when `name` is anything else (see the module's doc).
fn slot_offset(py: Python<'_>, class: &Bound<'_, PyType>, name: &str) -> PyResult<Option<isize>> {
    // What an instance's lookup finds first: the first class in the MRO whose dict has it.
    let mut found = None;
    for base in class.mro().iter() {
        if let Ok(entry) = base.getattr(pyo3::intern!(py, "__dict__"))?.get_item(name) {
            found = Some(entry);
            break;
        }
    }
    let member = py.import("types")?.getattr("MemberDescriptorType")?;
    let Some(descr) = found.filter(|found| found.get_type().is(&member)) else {
        return Ok(None);
    };
    // SAFETY: a member descriptor is a PyMemberDescrObject (Include/descrobject.h) whose
    // d_member points at its type's PyMemberDef (the same layout before 3.11, where pyo3-ffi
    // names its pointee otherwise); both live as long as the type, which `class` holds through
    // its MRO. Type objects are read, not written.
    unsafe {
        let descr = descr.as_ptr() as *const ffi::PyMemberDescrObject;
        let owner = (*descr).d_common.d_type;
        let def = (*descr).d_member as *const ffi::PyMemberDef;
        if owner.is_null() || def.is_null() || ffi::PyType_IsSubtype(class.as_type_ptr(), owner) == 0 {
            return Ok(None);
        }
        let (kind, flags, offset) = ((*def).type_code, (*def).flags, (*def).offset);
        let word = std::mem::size_of::<*mut ffi::PyObject>() as isize;
        let header = std::mem::size_of::<ffi::PyObject>() as isize;
        let basic = (*class.as_type_ptr()).tp_basicsize;
        let plain = kind == ffi::Py_T_OBJECT_EX && flags & (ffi::Py_READONLY | ffi::Py_RELATIVE_OFFSET) == 0;
        if !plain || offset < header || offset % word != 0 || offset + word > basic {
            return Ok(None);
        }
        Ok(Some(offset))
    }
}
