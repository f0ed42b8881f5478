//! Bindings for slea_core::canon and slea_core::hash: the `CanonSpec` class, and the text-argument
//! conversions shared with cluster.rs (str and list-of-str arguments with errors naming them).

use numpy::PyArray1;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString, PyTuple};
use slea_core::canon::{CanonSpec, Scratch, PRESETS};

use crate::error::CoreResult;

/// Texts longer than this are processed with the GIL released even in single-text calls.
const DETACH_LEN: usize = 1 << 16;

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .qualname()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "object".into())
}

/// `obj` as a `&str`, or a `TypeError`/`ValueError` naming `arg`.
pub(crate) fn str_arg<'a>(obj: &'a Bound<'_, PyAny>, arg: &str) -> PyResult<&'a str> {
    str_arg_lazy(obj, || arg.to_string())
}

/// As [`str_arg`], with the argument's name made only on error (batches name `texts[i]`).
fn str_arg_lazy<'a>(obj: &'a Bound<'_, PyAny>, arg: impl Fn() -> String) -> PyResult<&'a str> {
    let s = obj.cast::<PyString>().map_err(|_| {
        PyTypeError::new_err(format!("{}: expected str, got {}", arg(), type_name(obj)))
    })?;
    s.to_str().map_err(|_| {
        PyValueError::new_err(format!(
            "{}: is not valid Unicode (it holds a lone surrogate); clean it first, \
             e.g. text.encode('utf-8', 'replace').decode()",
            arg()
        ))
    })
}

/// The items of a list or tuple of str (owned references, so borrowed `&str`s stay valid).
pub(crate) fn str_items<'py>(
    texts: &Bound<'py, PyAny>,
    arg: &str,
) -> PyResult<Vec<Bound<'py, PyAny>>> {
    if let Ok(list) = texts.cast::<PyList>() {
        Ok(list.iter().collect())
    } else if let Ok(tuple) = texts.cast::<PyTuple>() {
        Ok(tuple.iter().collect())
    } else {
        Err(PyTypeError::new_err(format!(
            "{arg}: expected a list of str, got {}",
            type_name(texts)
        )))
    }
}

/// Borrow every item of `items` as `&str`; errors name the item (`texts[3]`).
pub(crate) fn str_slices<'a>(items: &'a [Bound<'_, PyAny>], arg: &str) -> PyResult<Vec<&'a str>> {
    items
        .iter()
        .enumerate()
        .map(|(i, obj)| str_arg_lazy(obj, || format!("{arg}[{i}]")))
        .collect()
}

/// An immutable canonicalisation spec (Rust side of `slea.CanonSpec`).
#[pyclass(module = "slea._core", name = "CanonSpec", frozen)]
pub struct PyCanonSpec {
    pub(crate) inner: CanonSpec,
}

#[pymethods]
impl PyCanonSpec {
    /// The preset called `name` (generic, textworld, alfworld, scienceworld).
    #[staticmethod]
    fn preset(name: &str) -> CoreResult<Self> {
        Ok(PyCanonSpec {
            inner: CanonSpec::preset(name)?,
        })
    }

    /// Names of the presets.
    #[staticmethod]
    fn presets() -> Vec<&'static str> {
        PRESETS.to_vec()
    }

    /// Parse the JSON written by `to_json`.
    #[staticmethod]
    fn from_json(json: &str) -> CoreResult<Self> {
        Ok(PyCanonSpec {
            inner: CanonSpec::from_json(json)?,
        })
    }

    /// Build from a JSON list of rule objects.
    #[staticmethod]
    fn from_rules_json(json: &str) -> CoreResult<Self> {
        Ok(PyCanonSpec {
            inner: CanonSpec::from_rules_json(json)?,
        })
    }

    fn to_json(&self) -> &str {
        self.inner.to_json()
    }

    #[getter]
    fn fingerprint(&self) -> u64 {
        self.inner.fingerprint()
    }

    fn canonicalize(&self, py: Python<'_>, text: &Bound<'_, PyAny>) -> PyResult<String> {
        let text = str_arg(text, "text")?;
        let spec = &self.inner;
        if text.len() > DETACH_LEN {
            return Ok(py.detach(|| spec.canonicalize(text)));
        }
        Ok(spec.canonicalize(text))
    }

    fn structural_hash(&self, py: Python<'_>, text: &Bound<'_, PyAny>) -> PyResult<u64> {
        let text = str_arg(text, "text")?;
        let spec = &self.inner;
        let run = || spec.structural_hash(text, &mut Scratch::default());
        Ok(if text.len() > DETACH_LEN {
            py.detach(run)
        } else {
            run()
        })
    }

    fn simhash(&self, py: Python<'_>, text: &Bound<'_, PyAny>) -> PyResult<u64> {
        let text = str_arg(text, "text")?;
        let spec = &self.inner;
        let run = || spec.simhash(text, &mut Scratch::default());
        Ok(if text.len() > DETACH_LEN {
            py.detach(run)
        } else {
            run()
        })
    }

    fn canonicalize_batch(
        &self,
        py: Python<'_>,
        texts: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<String>> {
        let items = str_items(texts, "texts")?;
        let slices = str_slices(&items, "texts")?;
        let spec = &self.inner;
        Ok(py.detach(|| spec.canonicalize_batch(&slices)))
    }

    fn structural_hash_batch<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<u64>>> {
        let items = str_items(texts, "texts")?;
        let slices = str_slices(&items, "texts")?;
        let spec = &self.inner;
        let out = py.detach(|| spec.structural_hash_batch(&slices));
        Ok(PyArray1::from_vec(py, out))
    }

    fn simhash_batch<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<u64>>> {
        let items = str_items(texts, "texts")?;
        let slices = str_slices(&items, "texts")?;
        let spec = &self.inner;
        let out = py.detach(|| spec.simhash_batch(&slices));
        Ok(PyArray1::from_vec(py, out))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyCanonSpec>()?;
    Ok(())
}
