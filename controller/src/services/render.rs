//! The objects of a service: the Secret `<svc>-credentials`, the Service `<svc>` (cluster DNS
//! `<svc>.<ns>.svc.cluster.local`), the StatefulSet `<svc>` (one replica, one volume claim
//! template `data`) and, for MySQL, the ConfigMap `<svc>-init` of its grant script.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec, ResourceRequirements,
    SeccompProfile, Secret, Service, ServicePort, ServiceSpec as CoreSpec, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Credentials, RESOURCE_TYPE, SERVICE_LABEL, ServiceKind, ServiceSpec, profile};
use crate::facts::{SERVICE_TYPE_LABEL, credentials_secret, keys};
use crate::render::{ENVIRONMENT_LABEL, PROJECT_LABEL};

/// Name of the data volume claim template; the PVC is `data-<svc>-0`.
pub const DATA_VOLUME: &str = "data";

/// The PVC the StatefulSet's only replica gets.
pub fn data_claim_name(service: &str) -> String {
    format!("{DATA_VOLUME}-{service}-0")
}

/// The pod of a service (one replica).
pub fn pod_name(service: &str) -> String {
    format!("{service}-0")
}

/// The ConfigMap of MySQL's initialisation script.
pub fn init_config_map_name(service: &str) -> String {
    format!("{service}-init")
}

/// Labels of every object of a service; [`selector`] is the subset pods are selected by.
pub fn labels(spec: &ServiceSpec) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([
        ("app".to_owned(), spec.name.clone()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "kipper".to_owned(),
        ),
        (
            "kipper.run/resource-type".to_owned(),
            RESOURCE_TYPE.to_owned(),
        ),
        (SERVICE_LABEL.to_owned(), spec.name.clone()),
        (SERVICE_TYPE_LABEL.to_owned(), spec.kind.as_str().to_owned()),
        (PROJECT_LABEL.to_owned(), spec.project.clone()),
    ]);
    if let Some(env) = &spec.environment {
        l.insert(ENVIRONMENT_LABEL.to_owned(), env.clone());
    }
    l
}

/// The pod selector: the service label alone (`app=<name>` could also match a function's or
/// an app's pods of the same name).
pub fn selector(service: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(SERVICE_LABEL.to_owned(), service.to_owned())])
}

/// Every object of one service, typed.
#[derive(Clone, Debug)]
pub struct ServiceObjects {
    /// `<svc>-credentials`.
    pub secret: Secret,
    /// `<svc>-init` (MySQL only).
    pub config_map: Option<ConfigMap>,
    /// `<svc>`.
    pub service: Service,
    /// `<svc>`.
    pub stateful_set: StatefulSet,
}

impl ServiceObjects {
    /// Every object as JSON, in apply order (the Secret before the pods that read it).
    pub fn to_values(&self) -> crate::Result<Vec<serde_json::Value>> {
        let mut v = vec![serde_json::to_value(&self.secret)?];
        if let Some(cm) = &self.config_map {
            v.push(serde_json::to_value(cm)?);
        }
        v.push(serde_json::to_value(&self.service)?);
        v.push(serde_json::to_value(&self.stateful_set)?);
        Ok(v)
    }
}

fn meta(spec: &ServiceSpec, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(spec.namespace()),
        labels: Some(labels(spec)),
        ..Default::default()
    }
}

/// The in-cluster DNS name of a service.
pub fn host(service: &str, namespace: &str) -> String {
    format!("{service}.{namespace}.svc.cluster.local")
}

/// The credentials Secret: keys `username`, `password`, `database`, `host`, `port`.
pub fn secret(spec: &ServiceSpec, credentials: &Credentials) -> Secret {
    let data = BTreeMap::from([
        (keys::USERNAME, credentials.username.clone()),
        (keys::PASSWORD, credentials.password.clone()),
        (keys::DATABASE, credentials.database.clone()),
        (keys::HOST, host(&spec.name, &spec.namespace())),
        (keys::PORT, spec.kind.default_port().to_string()),
    ]);
    Secret {
        metadata: meta(spec, credentials_secret(&spec.name)),
        type_: Some("Opaque".to_owned()),
        data: Some(
            data.into_iter()
                .map(|(k, v)| (k.to_owned(), ByteString(v.into_bytes())))
                .collect(),
        ),
        ..Default::default()
    }
}

fn service(spec: &ServiceSpec) -> Service {
    let ports = profile::ports(spec.kind)
        .into_iter()
        .map(|p| ServicePort {
            name: Some(p.name.to_owned()),
            port: i32::from(p.port),
            target_port: Some(IntOrString::String(p.name.to_owned())),
            protocol: Some("TCP".to_owned()),
            ..Default::default()
        })
        .collect();
    Service {
        metadata: meta(spec, spec.name.clone()),
        spec: Some(CoreSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(selector(&spec.name)),
            ports: Some(ports),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn quantities(cpu: &str, memory: &str) -> BTreeMap<String, Quantity> {
    BTreeMap::from([
        ("cpu".to_owned(), Quantity(cpu.to_owned())),
        ("memory".to_owned(), Quantity(memory.to_owned())),
    ])
}

fn container(spec: &ServiceSpec) -> Container {
    let kind = spec.kind;
    let r = &spec.resources;
    let mut mounts = vec![VolumeMount {
        name: DATA_VOLUME.to_owned(),
        mount_path: profile::data_path(kind).to_owned(),
        ..Default::default()
    }];
    if kind == ServiceKind::Mysql {
        mounts.push(VolumeMount {
            name: "init".to_owned(),
            mount_path: "/docker-entrypoint-initdb.d".to_owned(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    Container {
        name: kind.as_str().to_owned(),
        image: Some(profile::image(kind).to_owned()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        args: profile::args(kind),
        env: Some(profile::env(kind, &credentials_secret(&spec.name))),
        ports: Some(
            profile::ports(kind)
                .into_iter()
                .map(|p| ContainerPort {
                    name: Some(p.name.to_owned()),
                    container_port: i32::from(p.port),
                    protocol: Some("TCP".to_owned()),
                    ..Default::default()
                })
                .collect(),
        ),
        readiness_probe: Some(profile::readiness(kind)),
        liveness_probe: Some(profile::liveness(kind)),
        resources: Some(ResourceRequirements {
            requests: Some(quantities(&r.cpu_request, &r.memory_request)),
            limits: Some(quantities(&r.cpu_limit, &r.memory_limit)),
            ..Default::default()
        }),
        volume_mounts: Some(mounts),
        ..Default::default()
    }
}

fn stateful_set(spec: &ServiceSpec) -> StatefulSet {
    let volumes = (spec.kind == ServiceKind::Mysql).then(|| {
        vec![Volume {
            name: "init".to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: init_config_map_name(&spec.name),
                ..Default::default()
            }),
            ..Default::default()
        }]
    });
    let mut pod_labels = labels(spec);
    pod_labels.extend(selector(&spec.name));
    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(DATA_VOLUME.to_owned()),
            labels: Some(labels(spec)),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            storage_class_name: spec.storage_class.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity(spec.storage.clone()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    StatefulSet {
        metadata: meta(spec, spec.name.clone()),
        spec: StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(spec.name.clone()),
            selector: LabelSelector {
                match_labels: Some(selector(&spec.name)),
                ..Default::default()
            },
            // A database pod must be gone before its replacement mounts the same volume.
            pod_management_policy: Some("OrderedReady".to_owned()),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container(spec)],
                    volumes,
                    // Databases flush on SIGTERM; give them time to.
                    termination_grace_period_seconds: Some(60),
                    automount_service_account_token: Some(false),
                    // Service links would add e.g. REDIS_PORT=tcp://... to the environment,
                    // which some images read as their own settings.
                    enable_service_links: Some(false),
                    security_context: Some(PodSecurityContext {
                        fs_group: profile::fs_group(spec.kind),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_owned(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            },
            volume_claim_templates: Some(vec![claim]),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn init_config_map(spec: &ServiceSpec) -> ConfigMap {
    ConfigMap {
        metadata: meta(spec, init_config_map_name(&spec.name)),
        data: Some(BTreeMap::from([(
            "10-kipper-grants.sql".to_owned(),
            profile::MYSQL_INIT_SQL.to_owned(),
        )])),
        ..Default::default()
    }
}

/// Renders every object of a service. Pure: same spec and credentials, same objects.
pub fn render(spec: &ServiceSpec, credentials: &Credentials) -> ServiceObjects {
    ServiceObjects {
        secret: secret(spec, credentials),
        config_map: (spec.kind == ServiceKind::Mysql).then(|| init_config_map(spec)),
        service: service(spec),
        stateful_set: stateful_set(spec),
    }
}
