//! One rendered object of any kind the controller manages.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::ResourceExt;

use crate::addons::http_addon::HTTPScaledObject;
use crate::addons::keda::{ScaledObject, TriggerAuthentication};
use crate::addons::traefik::Middleware;

/// A rendered object, typed.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // a handful per Function; boxing buys nothing here
pub enum Object {
    /// `<fn>-code`.
    ConfigMap(ConfigMap),
    /// `<fn>-deps`: the dependency cache of inline code with dependencies.
    PersistentVolumeClaim(PersistentVolumeClaim),
    /// `<fn>`.
    Deployment(Deployment),
    /// `<fn>` and `<fn>-proxy`.
    Service(Service),
    /// `<fn>`.
    Ingress(Ingress),
    /// `<fn>-cron`.
    CronJob(CronJob),
    /// `<fn>-test-<hex>` (only from `test_job`, never from `render`).
    Job(Job),
    /// `<fn>` (event triggers).
    ScaledObject(ScaledObject),
    /// `<fn>-trigger-auth`.
    TriggerAuthentication(TriggerAuthentication),
    /// `<fn>` (http).
    HTTPScaledObject(HTTPScaledObject),
    /// `fn-<fn>-security`.
    Middleware(Middleware),
}

impl Object {
    /// The object's kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Object::ConfigMap(_) => "ConfigMap",
            Object::PersistentVolumeClaim(_) => "PersistentVolumeClaim",
            Object::Deployment(_) => "Deployment",
            Object::Service(_) => "Service",
            Object::Ingress(_) => "Ingress",
            Object::CronJob(_) => "CronJob",
            Object::Job(_) => "Job",
            Object::ScaledObject(_) => "ScaledObject",
            Object::TriggerAuthentication(_) => "TriggerAuthentication",
            Object::HTTPScaledObject(_) => "HTTPScaledObject",
            Object::Middleware(_) => "Middleware",
        }
    }

    /// The object's name.
    pub fn name(&self) -> String {
        match self {
            Object::ConfigMap(o) => o.name_any(),
            Object::PersistentVolumeClaim(o) => o.name_any(),
            Object::Deployment(o) => o.name_any(),
            Object::Service(o) => o.name_any(),
            Object::Ingress(o) => o.name_any(),
            Object::CronJob(o) => o.name_any(),
            Object::Job(o) => o.name_any(),
            Object::ScaledObject(o) => o.name_any(),
            Object::TriggerAuthentication(o) => o.name_any(),
            Object::HTTPScaledObject(o) => o.name_any(),
            Object::Middleware(o) => o.name_any(),
        }
    }

    /// The object as JSON, with `apiVersion` and `kind`.
    pub fn to_value(&self) -> crate::Result<serde_json::Value> {
        Ok(match self {
            Object::ConfigMap(o) => serde_json::to_value(o)?,
            Object::PersistentVolumeClaim(o) => serde_json::to_value(o)?,
            Object::Deployment(o) => serde_json::to_value(o)?,
            Object::Service(o) => serde_json::to_value(o)?,
            Object::Ingress(o) => serde_json::to_value(o)?,
            Object::CronJob(o) => serde_json::to_value(o)?,
            Object::Job(o) => serde_json::to_value(o)?,
            Object::ScaledObject(o) => serde_json::to_value(o)?,
            Object::TriggerAuthentication(o) => serde_json::to_value(o)?,
            Object::HTTPScaledObject(o) => serde_json::to_value(o)?,
            Object::Middleware(o) => serde_json::to_value(o)?,
        })
    }
}
