//! Where objects live: a resource (`/apis/apps/v1` + `deployments`), an object's location
//! (whose URL path is its key in the store), and what a request path names. Core `/api/v1/...`
//! and `/apis/<group>/<version>/...`; namespaced `.../namespaces/<ns>/<plural>[/<name>[/<sub>]]`;
//! cluster-scoped `.../<plural>[/<name>]`, Namespaces at `/api/v1/namespaces/<name>`; a
//! namespaced kind's cluster-wide list at `.../<plural>`.

use serde_json::Value;

/// A kind of object as the URL names it: `/apis/apps/v1` + `deployments`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Resource {
    /// `/api/v1` or `/apis/<group>/<version>`.
    pub(super) prefix: String,
    pub(super) plural: String,
}

impl Resource {
    pub(super) fn namespaces() -> Self {
        Self {
            prefix: "/api/v1".to_owned(),
            plural: "namespaces".to_owned(),
        }
    }

    /// `apps`, or the empty string for the core group.
    pub(super) fn group(&self) -> &str {
        self.prefix
            .strip_prefix("/apis/")
            .and_then(|gv| gv.split('/').next())
            .unwrap_or("")
    }

    /// `apps/v1` or `v1`.
    pub(super) fn api_version(&self) -> &str {
        self.prefix
            .strip_prefix("/apis/")
            .or_else(|| self.prefix.strip_prefix("/api/"))
            .unwrap_or(&self.prefix)
    }

    /// `deployments.apps`, `configmaps`: how messages name a resource.
    pub(super) fn qualified(&self) -> String {
        match self.group() {
            "" => self.plural.clone(),
            group => format!("{}.{group}", self.plural),
        }
    }
}

/// The plural resource name of a kind: `Ingress` -> `ingresses`, `Policy` -> `policies`.
pub(super) fn plural_of(kind: &str) -> String {
    let lower = kind.to_lowercase();
    let consonant_y = lower
        .strip_suffix('y')
        .is_some_and(|stem| stem.chars().last().is_some_and(|c| !"aeiou".contains(c)));
    if lower == "endpoints" {
        lower
    } else if lower.ends_with('s') || lower.ends_with('x') || lower.ends_with("ch") {
        format!("{lower}es")
    } else if consonant_y {
        format!("{}ies", &lower[..lower.len() - 1])
    } else {
        format!("{lower}s")
    }
}

/// Where one object lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Location {
    pub(super) resource: Resource,
    /// `None` for cluster-scoped objects (Namespaces among them).
    pub(super) namespace: Option<String>,
    pub(super) name: String,
}

impl Location {
    /// The location an object names by its apiVersion, kind and metadata (no namespace:
    /// cluster-scoped).
    pub(super) fn of_object(object: &Value) -> Option<Self> {
        let api_version = object["apiVersion"].as_str()?;
        let prefix = if api_version.contains('/') {
            format!("/apis/{api_version}")
        } else {
            format!("/api/{api_version}")
        };
        Some(Self {
            resource: Resource {
                prefix,
                plural: plural_of(object["kind"].as_str()?),
            },
            namespace: object["metadata"]["namespace"].as_str().map(str::to_owned),
            name: object["metadata"]["name"].as_str()?.to_owned(),
        })
    }

    pub(super) fn namespace_object(name: &str) -> Self {
        Self {
            resource: Resource::namespaces(),
            namespace: None,
            name: name.to_owned(),
        }
    }

    /// The object's URL path, which is also its key in the store.
    pub(super) fn key(&self) -> String {
        let Resource { prefix, plural } = &self.resource;
        match &self.namespace {
            Some(ns) => format!("{prefix}/namespaces/{ns}/{plural}/{}", self.name),
            None => format!("{prefix}/{plural}/{}", self.name),
        }
    }
}

/// What a request path names.
pub(super) enum Target {
    Collection {
        resource: Resource,
        namespace: Option<String>,
    },
    Object {
        location: Location,
        subresource: Option<String>,
    },
}

impl Target {
    /// `/api/v1/namespaces/ns/pods/p/log`, `/apis/g/v/plural`, ...; `None` when the path names
    /// no resource.
    pub(super) fn parse(path: &str) -> Option<Self> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (prefix, rest) = match segments.as_slice() {
            ["api", version, rest @ ..] => (format!("/api/{version}"), rest),
            ["apis", group, version, rest @ ..] => (format!("/apis/{group}/{version}"), rest),
            _ => return None,
        };
        let resource = |plural: &str| Resource {
            prefix: prefix.clone(),
            plural: plural.to_owned(),
        };
        let object = |plural: &str, namespace: Option<&str>, name: &str, sub: Option<&str>| {
            Some(Target::Object {
                location: Location {
                    resource: resource(plural),
                    namespace: namespace.map(str::to_owned),
                    name: name.to_owned(),
                },
                subresource: sub.map(str::to_owned),
            })
        };
        match rest {
            [plural] => Some(Target::Collection {
                resource: resource(plural),
                namespace: None,
            }),
            ["namespaces", name] => object("namespaces", None, name, None),
            ["namespaces", name, sub @ ("status" | "finalize")] => {
                object("namespaces", None, name, Some(sub))
            }
            ["namespaces", ns, plural] => Some(Target::Collection {
                resource: resource(plural),
                namespace: Some((*ns).to_owned()),
            }),
            ["namespaces", ns, plural, name] => object(plural, Some(ns), name, None),
            ["namespaces", ns, plural, name, sub] => object(plural, Some(ns), name, Some(sub)),
            [plural, name] => object(plural, None, name, None),
            [plural, name, sub] => object(plural, None, name, Some(sub)),
            _ => None,
        }
    }
}
