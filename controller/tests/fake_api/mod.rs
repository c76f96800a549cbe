//! A fake Kubernetes API server behind `tower_test::mock::pair` (as kube-rs's controller-rs
//! tests do), but answering from an in-memory store instead of a fixed script, so a test says
//! what the cluster holds and checks what the controller wrote, not the order of its calls.
//!
//! Supports GET, list (with `labelSelector`, namespaced or cluster-wide), server-side apply
//! and merge PATCH (including `/status`), POST and DELETE; failures can be injected.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

/// One request as the fake saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub query: String,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Value>,
    log: Vec<Seen>,
    failures: Vec<(Method, String, u16)>,
}

/// The fake server; clone freely.
#[derive(Clone, Default)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

/// `/api/v1/namespaces/ns/secrets/name` style path of an object.
pub fn path_of(obj: &Value) -> String {
    let api_version = obj["apiVersion"].as_str().unwrap();
    let kind = obj["kind"].as_str().unwrap();
    let ns = obj["metadata"]["namespace"].as_str().unwrap();
    let name = obj["metadata"]["name"].as_str().unwrap();
    let prefix = if api_version.contains('/') {
        format!("/apis/{api_version}")
    } else {
        format!("/api/{api_version}")
    };
    let plural = match kind {
        "Ingress" => "ingresses".to_owned(),
        "HTTPScaledObject" => "httpscaledobjects".to_owned(),
        k => format!("{}s", k.to_lowercase()),
    };
    format!("{prefix}/namespaces/{ns}/{plural}/{name}")
}

fn labels_match(obj: &Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|pair| {
        let (k, v) = pair.split_once('=').unwrap();
        obj["metadata"]["labels"][k].as_str() == Some(v)
    })
}

fn decode(s: &str) -> String {
    let mut out = Vec::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn query_param(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| decode(v))
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

impl FakeApi {
    /// Starts the fake and returns a client talking to it.
    pub fn start() -> (Self, Client) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let fake = FakeApi::default();
        let server = fake.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let response = server.answer(request).await;
                send.send_response(response);
            }
        });
        (fake, Client::new(service, "default"))
    }

    /// Puts an object in the store (as if it already existed in the cluster).
    pub fn insert(&self, obj: Value) {
        let path = path_of(&obj);
        self.state.lock().unwrap().objects.insert(path, obj);
    }

    /// The stored object at `path`, if any.
    pub fn get(&self, path: &str) -> Option<Value> {
        self.state.lock().unwrap().objects.get(path).cloned()
    }

    /// Paths of every stored object.
    pub fn paths(&self) -> Vec<String> {
        self.state.lock().unwrap().objects.keys().cloned().collect()
    }

    /// Every request so far.
    pub fn log(&self) -> Vec<Seen> {
        self.state.lock().unwrap().log.clone()
    }

    /// Forgets the request log.
    pub fn clear_log(&self) {
        self.state.lock().unwrap().log.clear();
    }

    /// Makes requests of `method` whose path contains `fragment` fail with `code`.
    pub fn fail(&self, method: Method, fragment: &str, code: u16) {
        self.state
            .lock()
            .unwrap()
            .failures
            .push((method, fragment.to_owned(), code));
    }

    async fn answer(&self, request: Request<Body>) -> Response<Body> {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let query = request.uri().query().unwrap_or_default().to_owned();
        let body = request.into_body().collect_bytes().await.unwrap();
        if method == Method::GET && path.ends_with("/log") {
            // Pod logs are plain text.
            self.state.lock().unwrap().log.push(Seen {
                method: method.clone(),
                path: path.clone(),
                query: query.clone(),
            });
            let pod = path.rsplit('/').nth(1).unwrap_or_default();
            return Response::builder()
                .status(200)
                .body(Body::from(format!("hello from {pod}\nbye\n").into_bytes()))
                .unwrap();
        }
        let (code, value) = self.handle(&method, &path, &query, &body);
        Response::builder()
            .status(StatusCode::from_u16(code).unwrap())
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&value).unwrap()))
            .unwrap()
    }

    fn handle(&self, method: &Method, path: &str, query: &str, body: &[u8]) -> (u16, Value) {
        let mut st = self.state.lock().unwrap();
        st.log.push(Seen {
            method: method.clone(),
            path: path.to_owned(),
            query: query.to_owned(),
        });
        if let Some((_, _, code)) = st
            .failures
            .iter()
            .find(|(m, frag, _)| m == method && path.contains(frag.as_str()))
        {
            return (*code, status(*code, "InternalError", "injected failure"));
        }
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        // A collection path has an even number of segments after the group/version prefix.
        let prefix_len = if segments[0] == "api" { 2 } else { 3 };
        let rest = &segments[prefix_len..];
        let is_collection = match rest.len() {
            1 => true,  // cluster-wide list: /apis/g/v/ingresses
            3 => true,  // /namespaces/ns/plural
            _ => false, // /namespaces/ns/plural/name[/status]
        };
        match *method {
            Method::GET if is_collection => {
                let selector = query_param(query, "labelSelector").unwrap_or_default();
                let plural = rest.last().unwrap();
                let group_prefix = segments[..prefix_len].join("/");
                let items: Vec<Value> = st
                    .objects
                    .iter()
                    .filter(|(p, obj)| {
                        let ps: Vec<&str> = p.trim_start_matches('/').split('/').collect();
                        let same_collection = if rest.len() == 1 {
                            ps[..prefix_len].join("/") == group_prefix
                                && ps.get(prefix_len + 2) == Some(plural)
                        } else {
                            p.starts_with(&format!("{path}/")) && ps.len() == segments.len() + 1
                        };
                        same_collection && labels_match(obj, &selector)
                    })
                    .map(|(_, o)| o.clone())
                    .collect();
                (
                    200,
                    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items}),
                )
            }
            Method::GET => match st.objects.get(path) {
                Some(obj) => (200, obj.clone()),
                None => (404, status(404, "NotFound", "not found")),
            },
            Method::PATCH if path.ends_with("/status") => {
                let target = path.trim_end_matches("/status");
                let patch: Value = serde_json::from_slice(body).unwrap();
                match st.objects.get_mut(target) {
                    Some(obj) => {
                        merge(obj, &patch);
                        (200, obj.clone())
                    }
                    None => (404, status(404, "NotFound", "not found")),
                }
            }
            Method::PATCH => {
                let patch: Value = serde_json::from_slice(body).unwrap();
                let apply = query.contains("fieldManager=");
                let entry = st.objects.entry(path.to_owned());
                let obj = match entry {
                    std::collections::btree_map::Entry::Occupied(mut o) => {
                        if apply {
                            // Server-side apply: the applied object is the new state of the
                            // fields this manager owns; `status` and `spec.replicas` (KEDA's)
                            // belong to other managers and survive.
                            let mut fresh = patch.clone();
                            if let Some(status) = o.get().get("status") {
                                fresh["status"] = status.clone();
                            }
                            let replicas = &o.get()["spec"]["replicas"];
                            if !replicas.is_null() && fresh["spec"]["replicas"].is_null() {
                                fresh["spec"]["replicas"] = replicas.clone();
                            }
                            *o.get_mut() = fresh;
                        } else {
                            merge(o.get_mut(), &patch);
                        }
                        o.get().clone()
                    }
                    std::collections::btree_map::Entry::Vacant(v) if apply => {
                        v.insert(patch).clone()
                    }
                    std::collections::btree_map::Entry::Vacant(_) => {
                        return (404, status(404, "NotFound", "not found"));
                    }
                };
                (200, obj)
            }
            Method::POST => {
                let mut obj: Value = serde_json::from_slice(body).unwrap();
                if obj["metadata"]["namespace"].is_null() {
                    obj["metadata"]["namespace"] = json!(rest[1]);
                }
                // The API server assigns the uid (owner references need it).
                if obj["metadata"]["uid"].is_null() {
                    obj["metadata"]["uid"] = json!(format!("uid-{}", st.objects.len()));
                }
                let p = path_of(&obj);
                if st.objects.contains_key(&p) {
                    return (409, status(409, "AlreadyExists", "already exists"));
                }
                st.objects.insert(p, obj.clone());
                (201, obj)
            }
            Method::DELETE => match st.objects.remove(path) {
                Some(obj) => (200, obj),
                None => (404, status(404, "NotFound", "not found")),
            },
            Method::PUT => {
                let obj: Value = serde_json::from_slice(body).unwrap();
                st.objects.insert(path.to_owned(), obj.clone());
                (200, obj)
            }
            _ => (405, status(405, "MethodNotAllowed", "unsupported")),
        }
    }
}
