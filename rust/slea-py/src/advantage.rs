//! Bindings for slea_core::advantage: columns in, validated batch out; advantages as float32.

use std::borrow::Cow;

use numpy::{Element, IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::prelude::*;
use slea_core::advantage::{self as core, Columns, Estimator, Mode, Params};

use crate::error::CoreResult;

/// Validated step rows laid out by episode and step (wrapped by `slea.StepBatch`).
#[pyclass(name = "StepBatch", module = "slea._core", frozen)]
pub struct StepBatch {
    inner: core::StepBatch,
}

/// Borrow a contiguous column, or copy a strided one.
fn column<'a, T: Element + Copy>(a: &'a PyReadonlyArray1<'_, T>) -> Cow<'a, [T]> {
    match a.as_slice() {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(a.as_array().to_vec()),
    }
}

#[pymethods]
impl StepBatch {
    #[new]
    #[pyo3(signature = (group, episode, step, reward, key, invalid, action_key=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        group: PyReadonlyArray1<'_, i64>,
        episode: PyReadonlyArray1<'_, i64>,
        step: PyReadonlyArray1<'_, i64>,
        reward: PyReadonlyArray1<'_, f64>,
        key: PyReadonlyArray1<'_, u64>,
        invalid: PyReadonlyArray1<'_, bool>,
        action_key: Option<PyReadonlyArray1<'_, u64>>,
    ) -> CoreResult<Self> {
        let (group, episode, step) = (column(&group), column(&episode), column(&step));
        let (reward, key, invalid) = (column(&reward), column(&key), column(&invalid));
        let action_key = action_key.as_ref().map(column);
        let inner = py.detach(|| {
            core::StepBatch::new(Columns {
                group: group.into_owned(),
                episode: episode.into_owned(),
                step: step.into_owned(),
                reward: reward.into_owned(),
                key: key.into_owned(),
                invalid: invalid.into_owned(),
                action_key: action_key.map(Cow::into_owned),
            })
        })?;
        Ok(StepBatch { inner })
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    #[getter]
    fn n_episodes(&self) -> usize {
        self.inner.n_episodes()
    }

    #[getter]
    fn n_groups(&self) -> usize {
        self.inner.n_groups()
    }

    #[getter]
    fn has_action_key(&self) -> bool {
        self.inner.columns().action_key.is_some()
    }

    /// Copies of the validated columns, as numpy arrays (caller's row order).
    #[getter]
    fn group<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        PyArray1::from_slice(py, &self.inner.columns().group)
    }

    #[getter]
    fn episode<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        PyArray1::from_slice(py, &self.inner.columns().episode)
    }

    #[getter]
    fn step<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        PyArray1::from_slice(py, &self.inner.columns().step)
    }

    #[getter]
    fn reward<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        PyArray1::from_slice(py, &self.inner.columns().reward)
    }

    #[getter]
    fn key<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u64>> {
        PyArray1::from_slice(py, &self.inner.columns().key)
    }

    #[getter]
    fn invalid<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<bool>> {
        PyArray1::from_slice(py, &self.inner.columns().invalid)
    }

    #[getter]
    fn action_key<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyArray1<u64>>> {
        let actions = self.inner.columns().action_key.as_deref();
        actions.map(|a| PyArray1::from_slice(py, a))
    }
}

type F32Array<'py> = Bound<'py, PyArray1<f32>>;

/// Per-row (advantage, episode_advantage, step_advantage, step_return), float32.
#[pyfunction]
#[pyo3(signature = (batch, estimator, gamma, mode, step_weight, invalid_penalty, eps))]
#[allow(clippy::too_many_arguments)]
fn compute_advantages<'py>(
    py: Python<'py>,
    batch: &StepBatch,
    estimator: &str,
    gamma: f64,
    mode: &str,
    step_weight: f64,
    invalid_penalty: f64,
    eps: f64,
) -> CoreResult<(F32Array<'py>, F32Array<'py>, F32Array<'py>, F32Array<'py>)> {
    let params = Params {
        estimator: Estimator::parse(estimator)?,
        gamma,
        mode: Mode::parse(mode)?,
        step_weight,
        invalid_penalty,
        eps,
    };
    let out = py.detach(|| core::compute_advantages(&batch.inner, &params))?;
    Ok((
        out.advantage.into_pyarray(py),
        out.episode_advantage.into_pyarray(py),
        out.step_advantage.into_pyarray(py),
        out.step_return.into_pyarray(py),
    ))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<StepBatch>()?;
    m.add_function(wrap_pyfunction!(compute_advantages, m)?)?;
    Ok(())
}
