//! Objects of HTTP functions: Service `<fn>`, HTTPScaledObject `<fn>`, the route through the
//! KEDA interceptor (Service `<fn>-proxy` + Ingress `<fn>`) and Middleware `fn-<fn>-security`.
//!
//! The interceptor lives in the `keda` namespace and an Ingress can only name Services of its
//! own, so `<fn>-proxy` is an ExternalName Service pointing at it (Traefik's Kubernetes
//! Ingress provider needs `allowExternalNameServices: true`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Ctx, Object, function_host};
use crate::addons::http_addon::{
    HTTPScaledObject, HTTPScaledObjectSpec, HttpScaleTargetRef, ReplicaStruct,
};
use crate::addons::traefik::{Middleware, MiddlewareHeaders, MiddlewareSpec};

/// Most replicas KEDA may run (seed: "up to 10").
pub(crate) const MAX_REPLICAS: i32 = 10;

/// Name of the security-headers Middleware.
pub(crate) fn middleware_name(function: &str) -> String {
    format!("fn-{function}-security")
}

/// Every object of an HTTP function except the Deployment.
pub(crate) fn objects(ctx: &Ctx<'_>) -> Vec<Object> {
    let spec = &ctx.function.spec;
    let host = function_host(&ctx.name, ctx.settings);
    let mut out = vec![
        Object::Service(service(ctx)),
        Object::Service(proxy_service(ctx)),
        Object::HTTPScaledObject(scaled_object(ctx, &host)),
    ];
    if !spec.no_security_headers {
        out.push(Object::Middleware(middleware(ctx)));
    }
    out.push(Object::Ingress(ingress(ctx, &host)));
    out
}

fn service(ctx: &Ctx<'_>) -> Service {
    let port = ctx.function.spec.port;
    Service {
        metadata: ctx.meta(ctx.name.clone(), "http"),
        spec: Some(ServiceSpec {
            selector: Some(BTreeMap::from([("app".to_owned(), ctx.name.clone())])),
            ports: Some(vec![ServicePort {
                name: Some("http".to_owned()),
                port,
                target_port: Some(IntOrString::String("http".to_owned())),
                protocol: Some("TCP".to_owned()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn proxy_service(ctx: &Ctx<'_>) -> Service {
    Service {
        metadata: ctx.meta(format!("{}-proxy", ctx.name), "http"),
        spec: Some(ServiceSpec {
            type_: Some("ExternalName".to_owned()),
            external_name: Some(ctx.settings.interceptor_host.clone()),
            ports: Some(vec![ServicePort {
                name: Some("http".to_owned()),
                port: ctx.settings.interceptor_port,
                protocol: Some("TCP".to_owned()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn scaled_object(ctx: &Ctx<'_>, host: &str) -> HTTPScaledObject {
    let spec = &ctx.function.spec;
    let mut obj = HTTPScaledObject::new(
        &ctx.name,
        HTTPScaledObjectSpec {
            hosts: vec![host.to_owned()],
            scale_target_ref: HttpScaleTargetRef {
                name: Some(ctx.name.clone()),
                kind: Some("Deployment".to_owned()),
                api_version: Some("apps/v1".to_owned()),
                service: ctx.name.clone(),
                port: Some(spec.port),
            },
            replicas: Some(ReplicaStruct {
                min: Some(0),
                max: Some(MAX_REPLICAS),
            }),
            scaledown_period: Some(spec.idle_timeout()),
        },
    );
    obj.metadata = ctx.meta(ctx.name.clone(), "http");
    obj
}

/// The Content-Security-Policy: same-origin by default, plus the allowlisted origins.
pub(crate) fn content_security_policy(allow: &[String]) -> String {
    let extra: String = allow.iter().map(|o| format!(" {o}")).collect();
    format!(
        "default-src 'self'{extra}; script-src 'self'{extra}; style-src 'self' 'unsafe-inline'{extra}; \
         img-src 'self' data:{extra}; connect-src 'self'{extra}; font-src 'self'{extra}; \
         frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
    )
}

fn middleware(ctx: &Ctx<'_>) -> Middleware {
    let mut obj = Middleware::new(
        &middleware_name(&ctx.name),
        MiddlewareSpec {
            headers: Some(MiddlewareHeaders {
                frame_deny: Some(true),
                content_type_nosniff: Some(true),
                browser_xss_filter: Some(true),
                referrer_policy: Some("strict-origin-when-cross-origin".to_owned()),
                sts_seconds: Some(31_536_000),
                sts_include_subdomains: Some(true),
                content_security_policy: Some(content_security_policy(
                    &ctx.function.spec.csp_allowlist,
                )),
                permissions_policy: Some("camera=(), microphone=(), geolocation=()".to_owned()),
                custom_response_headers: BTreeMap::new(),
            }),
        },
    );
    obj.metadata = ctx.meta(middleware_name(&ctx.name), "http");
    obj
}

fn ingress(ctx: &Ctx<'_>, host: &str) -> Ingress {
    let mut metadata = ctx.meta(ctx.name.clone(), "http");
    if !ctx.function.spec.no_security_headers {
        metadata.annotations = Some(BTreeMap::from([(
            "traefik.ingress.kubernetes.io/router.middlewares".to_owned(),
            format!(
                "{}-{}@kubernetescrd",
                ctx.namespace,
                middleware_name(&ctx.name)
            ),
        )]));
    }
    Ingress {
        metadata,
        spec: Some(IngressSpec {
            ingress_class_name: Some(ctx.settings.ingress_class.clone()),
            // No secretName: Traefik serves its default (cluster wildcard) certificate.
            tls: Some(vec![IngressTLS {
                hosts: Some(vec![host.to_owned()]),
                secret_name: None,
            }]),
            rules: Some(vec![IngressRule {
                host: Some(host.to_owned()),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some("/".to_owned()),
                        path_type: "Prefix".to_owned(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: format!("{}-proxy", ctx.name),
                                port: Some(ServiceBackendPort {
                                    number: Some(ctx.settings.interceptor_port),
                                    name: None,
                                }),
                            }),
                            resource: None,
                        },
                    }],
                }),
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}
